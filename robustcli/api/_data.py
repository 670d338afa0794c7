"""Loading a study's data, and refusing the sizes it cannot give, before anything is written."""

from __future__ import annotations

from typing import Any

__all__ = ["load_checked_data"]


def load_checked_data(session: Any, progress: Any = None) -> None:
    """Load the session's data (the first run may generate it: a status line says so) and refuse
    the sizes it cannot give, before anything is written (:meth:`StudySession.validate_sizes`)."""
    from robustcli.api.progress import Silent

    with (progress or Silent()).working(f"loading the data of {session.settings.task} (the first run may generate it)"):
        session.validate_sizes()
