"""How an error line names a setting: ``--instances 0`` to a command-line user, ``instances=0`` to
a Python user. The code that refuses a value is shared; only its words differ.

The library speaks Python by default; the CLI switches to its flags for the time of a command
(:func:`cli_wording`, entered by the CLI's root callback). One ``ContextVar`` holds the choice,
so a thread (or a test) that never entered the CLI keeps Python's words.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

__all__ = ["cli_wording", "is_cli", "no_task", "opt", "how_to_fit_baselines"]

_CLI: ContextVar[bool] = ContextVar("robustcli_cli_wording", default=False)
_UNSET: Any = object()

#: a command-line flag whose Python keyword is not the flag with underscores
_KEYWORD_OF_FLAG = {"candidate": "candidate", "task-option": "task_options", "address": "ray_address",
                    "stop-mode": "stop_mode", "config": "config", "study": "name"}  # fmt: skip


def is_cli() -> bool:
    """Whether messages now speak the command line's flags."""
    return _CLI.get()


@contextlib.contextmanager
def cli_wording() -> Iterator[None]:
    """Messages name ``--flags`` inside this block (the CLI's commands)."""
    token = _CLI.set(True)
    try:
        yield
    finally:
        _CLI.reset(token)


def opt(flag: str, value: Any = _UNSET, quoted: bool = False) -> str:
    """A setting as the user wrote it: ``opt("train-size", 50)`` is ``--train-size 50`` under the
    CLI and ``train_size=50`` in Python (``repr`` of a str value: ``vary='x'``; ``quoted``: the
    CLI's too)."""
    flag = flag.lstrip("-").replace("_", "-")
    if is_cli():
        return f"--{flag}" if value is _UNSET else f"--{flag} {value!r}" if quoted else f"--{flag} {value}"
    keyword = _KEYWORD_OF_FLAG.get(flag, flag.replace("-", "_"))
    return keyword if value is _UNSET else f"{keyword}={value!r}"


def no_task() -> str:
    if is_cli():
        return "no task given: pass --task NAME or set task in the study file (see `robust tasks`)"
    return "no task given: Study('synthetic') or Study(task=MyTask) (see robustcli.api.list_tasks())"


def how_to_fit_baselines(task: str, study: str, train_size: int) -> str:
    """What to run so that a selection finds a baseline to cut at."""
    if is_cli():
        return (f"log them first: robust baseline --task {task} --study {study} --train-size {train_size} "
                "(with this selection's --seed, --test-size, --sampling and -o)")  # fmt: skip
    return "log them first: study.fit_baselines() on this study (the same seed, sizes and sampling)"
