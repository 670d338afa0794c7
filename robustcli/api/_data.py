"""Loading a study's data, and refusing the sizes it cannot give, before anything is written."""

from __future__ import annotations

from typing import Any

from robustcli.errors import InputError

__all__ = ["load_checked_data"]


def load_checked_data(session: Any, progress: Any = None) -> None:
    """Load the session's data (the first run may generate it: a status line says so) and refuse
    the sizes it cannot give, before anything is written: also a bootstrap sample larger than the pool."""
    from robustcli.api.progress import Silent

    with (progress or Silent()).working(f"loading the data of {session.settings.task} (the first run may generate it)"):
        session.validate_sizes()
    pool = session.data.pool_size
    if session.train_size > pool:
        raise InputError(
            f"--train-size {session.train_size} exceeds the training pool of {pool} examples of task "
            f"{session.settings.task!r}: a bootstrap sample larger than the pool repeats examples without adding any; "
            f"choose at most {pool}"
        )
