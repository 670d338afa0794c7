"""rich bars on stderr for :class:`robustcli.api.progress.Progress` (the CLI's, and a notebook's
``progress=True``)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # rich loads with the first bar
    from rich.console import Console
    from rich.progress import TaskID

__all__ = ["RichProgress"]


class RichProgress:
    """One bar per key (elapsed time, count, the last instance's message); lines above them."""

    def __init__(self, console: Console | None = None, disable: bool = False) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = console or Console(stderr=True)
        self.disable = disable
        self.bars = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), TextColumn("{task.fields[last]}"), console=self.console, disable=disable,
        )  # fmt: skip
        self.ids: dict[str, TaskID] = {}

    def start(self, key: str, description: str, total: int) -> None:
        if key in self.ids:
            self.bars.remove_task(self.ids.pop(key))
        self.ids[key] = self.bars.add_task(description, total=total, last="")

    def update(self, key: str, *, advance: int = 0, completed: int | None = None, message: str = "",
               description: str | None = None, total: int | None = None) -> None:
        if key not in self.ids:
            self.start(key, description or key, total or 0)
        fields: dict[str, Any] = {"advance": advance, "last": message}
        if completed is not None:
            fields["completed"] = completed
        if description is not None:
            fields["description"] = description
        if total is not None:
            fields["total"] = total
        self.bars.update(self.ids[key], **fields)

    def line(self, text: str) -> None:
        if not self.disable:
            self.bars.console.print(text, highlight=False, soft_wrap=True)

    def working(self, text: str) -> AbstractContextManager[object]:
        """A spinner with ``text`` while something without steps runs (loading data)."""
        from contextlib import nullcontext

        return nullcontext() if self.disable else self.console.status(text)

    def note(self, text: str) -> None:
        import sys

        print(f"note: {text}", file=sys.stderr)  # plain: one unwrapped line, also under --json

    def __enter__(self) -> RichProgress:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.__exit__(*exc)
