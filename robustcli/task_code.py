"""A task given to the API as a class or an object (defined in a notebook or a script, not
installed): its plugin record and the identity of its code in the study's fingerprint.

Why a hash of the code rather than a ``version`` the task sets: a notebook user edits a cell and
re-runs it; a version number relies on them remembering to bump it, which is exactly how edited
tasks silently reused old instances. The hash covers every attribute the task's classes define
themselves (methods by their source, other values by their ``repr``), from the class itself up to,
not including, :class:`robustcli.task.Task`. A ``version = "..."`` class attribute is one of those
values, so setting it is the way to mark a change the hash cannot see (a helper function defined
outside the class, a data file read by ``load_data``). Installed tasks keep their entry-point
identity (their distribution's version is a tag of every run): their fingerprints are unchanged.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robustcli.plugins import PluginInfo
    from robustcli.task import Task

__all__ = ["inline_task", "task_code"]

#: attributes every class has, or that Python sets from where the class was defined
_IGNORED = {"__dict__", "__weakref__", "__module__", "__qualname__", "__doc__", "__firstlineno__",
            "__static_attributes__", "__abstractmethods__", "_abc_impl", "__parameters__", "__orig_bases__"}  # fmt: skip


def _code_text(value: Any) -> str:
    """A method by its source (its bytecode where no source is kept); another value by its repr,
    without the memory addresses that change from process to process."""
    func = value
    if isinstance(value, (staticmethod, classmethod)):
        func = value.__func__
    elif isinstance(value, property):
        return "property:" + "|".join(_code_text(f) for f in (value.fget, value.fset, value.fdel) if f is not None)
    if inspect.isfunction(func):
        try:
            return inspect.getsource(func)
        except (OSError, TypeError):  # defined through exec without a file: its code object
            return _bytecode(func.__code__)
    return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))


def _bytecode(code: Any) -> str:
    """A code object without where it was defined (file, line): nested code by its own bytecode."""
    consts = [_bytecode(c) if inspect.iscode(c) else repr(c) for c in code.co_consts]
    return repr((code.co_code, consts, code.co_names))


def task_code(cls: type) -> str:
    """A short hash of the code of task class ``cls`` (see the module's docstring)."""
    from robustcli.task import Task

    parts = []
    for klass in cls.__mro__:
        if klass is Task or not issubclass(klass, Task):
            break
        for key in sorted(vars(klass)):
            if key not in _IGNORED:
                parts.append(f"{klass.__qualname__}.{key}={_code_text(vars(klass)[key])}")
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=6).hexdigest()


def inline_task(task: type[Task] | Task, options: dict[str, Any] | None = None) -> tuple[Task, PluginInfo, str]:
    """``task`` (a Task subclass or an instance of one) as the session uses it: the built task,
    its plugin record and its code's hash. Options build a class; an instance is used as it is."""
    from robustcli.errors import InputError
    from robustcli.plugins import PluginInfo, build_task
    from robustcli.task import Task

    cls = task if isinstance(task, type) else type(task)
    if not issubclass(cls, Task):
        raise InputError(
            f"task={task!r}: expected a task's name (a str), a robustcli.task.Task subclass or an instance of one"
        )
    missing = [attr for attr in ("name", "description") if not getattr(cls, attr, "")]
    if missing:
        raise InputError(f"task {cls.__qualname__} leaves {' and '.join(missing)} empty: set them as class attributes")
    code = task_code(cls)
    info = PluginInfo(name=cls.name, value=f"{cls.__module__}:{cls.__qualname__}",
                      distribution=f"inline ({cls.__module__})", version=code, entry_point=None)  # type: ignore[arg-type]  # fmt: skip
    if isinstance(task, type):
        return build_task(cls, info, options), info, code
    if options:
        raise InputError(
            f"task_options={options!r} with a task object: options build a task, so pass the class "
            f"({cls.__qualname__}) with them, or build the object with them yourself"
        )
    return task, info, code
