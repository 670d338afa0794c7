"""Loading a study's data, and refusing the sizes it cannot give, before anything is written."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from robustcli.api.progress import Progress
    from robustcli.session import StudySession

__all__ = ["load_checked_data", "loading_data"]


def loading_data(session: StudySession, progress: Progress | None = None) -> AbstractContextManager[object]:
    """The context in which the session's data loads: a status line (the first run may generate it)."""
    from robustcli.api.progress import Silent

    return (progress or Silent()).working(f"loading the data of {session.settings.task} (the first run may generate it)")


def load_checked_data(session: StudySession, progress: Progress | None = None) -> None:
    """Load the session's data and refuse the sizes it cannot give, before anything is written
    (:meth:`StudySession.validate_sizes`)."""
    with loading_data(session, progress):
        session.validate_sizes()
