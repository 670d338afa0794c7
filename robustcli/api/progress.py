"""How long work reports its progress: a small protocol, silent by default.

The library reports through a :class:`Progress`; the CLI passes one that draws rich bars on
stderr (:class:`robustcli.reporting.progress.RichProgress`), a notebook passes ``progress=True``
for the same bars, and the default, :class:`Silent`, sends the lines to the ``robustcli`` logger
and draws nothing.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from typing import Protocol, runtime_checkable

__all__ = ["Progress", "Silent", "progress_of"]

log = logging.getLogger("robustcli")


@runtime_checkable
class Progress(Protocol):
    """Bars keyed by a name, and lines printed above them."""

    def start(self, key: str, description: str, total: int) -> None:
        """Open (or reset) the bar ``key`` with ``total`` steps."""

    def update(self, key: str, *, advance: int = 0, completed: int | None = None, message: str = "",
               description: str | None = None, total: int | None = None) -> None:
        """Move the bar ``key`` on; ``message`` says what just finished (the last instance's loss)."""

    def line(self, text: str) -> None:
        """A line worth keeping above the bars (a selection step)."""

    def working(self, text: str) -> AbstractContextManager[object]:
        """A context while something without steps runs (loading data): a spinner, or nothing."""

    def note(self, text: str) -> None:
        """Something the user should know even when nothing else is drawn (a skipped cut)."""

    def __enter__(self) -> Progress: ...

    def __exit__(self, *exc: object) -> None: ...


class Silent:
    """No bars; lines go to the ``robustcli`` logger (INFO; notes as warnings), so a script can still see them."""

    def start(self, key: str, description: str, total: int) -> None:
        pass

    def update(self, key: str, *, advance: int = 0, completed: int | None = None, message: str = "",
               description: str | None = None, total: int | None = None) -> None:
        pass

    def line(self, text: str) -> None:
        log.info(text)

    def working(self, text: str) -> AbstractContextManager[object]:
        log.info(text)
        return nullcontext()

    def note(self, text: str) -> None:
        log.warning(text)  # with no logging set up, Python prints warnings to stderr

    def __enter__(self) -> Silent:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_of(progress: bool | Progress | None) -> Progress:
    """``True``: rich bars on stderr; ``False``/``None``: silent; a :class:`Progress`: itself."""
    if progress is True:
        from robustcli.reporting.progress import RichProgress

        return RichProgress()
    if not progress:
        return Silent()
    return progress
