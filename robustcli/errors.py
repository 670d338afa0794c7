"""One root error for everything `robust` refuses, with exit codes for the CLI.

Messages follow one rule: name the value, say what is allowed, say where it came from.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RobustError(Exception):
    """Root of every error `robust` raises on purpose. ``exit_code`` is what the CLI exits with."""

    exit_code = 1


class InputError(RobustError):
    """Bad user input: an unknown name, a bad value, a malformed file. Exit code 2."""

    exit_code = 2


class UnknownNameError(InputError):
    """A name that is not among the valid ones; the message lists the closest first."""

    def __init__(self, kind: str, value: str, valid: Iterable[str], where: str = "") -> None:
        self.kind, self.value = kind, value
        self.valid = sorted(valid)
        super().__init__(unknown_message(kind, value, self.valid, where))


def unknown_message(kind: str, value: str, valid: Iterable[str], where: str = "", limit: int = 8) -> str:
    """'unknown task 'x' (from --task); did you mean 'y'? valid: a, b, c'."""
    valid = list(valid)
    close = difflib.get_close_matches(value, valid, n=3, cutoff=0.5)
    rest = [v for v in valid if v not in close]
    shown = close + rest[: max(0, limit - len(close))]
    more = f" (+{len(valid) - len(shown)} more)" if len(valid) > len(shown) else ""
    place = f" ({where})" if where else ""
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(shown) + more if shown else "none installed"
    return f"unknown {kind} {value!r}{place}{hint} valid: {listing}"


class PluginLoadError(RobustError):
    """A plugin's entry point could not be imported or does not satisfy the contract."""

    exit_code = 2


class StoreError(RobustError):
    """The tracking store cannot be reached or holds something unexpected."""

    exit_code = 2


class StoreWriteError(StoreError):
    """The store stopped taking runs mid-study (a server gone away): not bad input, so exit 1;
    what was not written waits in the journal for the next command."""

    exit_code = 1


class TaskError(RobustError):
    """A task plugin failed at run time: its data cannot be loaded, or holds what no training can use
    (NaN). Not the user's input, and not a bug of robust: exit code 1, naming the task."""

    exit_code = 1


class TrainingError(RobustError):
    """Training could not run at all (not a diverging instance: that is a recorded failure)."""

    exit_code = 1


def first_line(error: BaseException, limit: int = 240) -> str:
    """An exception's message as one line for an error line: its first line, cut at a word past
    ``limit`` characters (MLflow's HTTP errors run long); the exception's type if it says nothing."""
    text = str(error).strip()
    if not text:
        return type(error).__name__
    first = text.splitlines()[0]
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0] + " ..."
    return first
