"""Entry-point discovery: list plugins without importing them, load one with a clear failure.

Two groups:

* ``robustcli.tasks``: one :class:`~robustcli.task.Task` subclass per entry point, named by the
  task's name.
* ``robustcli.commands``: a ``typer.Typer`` per entry point, added to the CLI under the entry
  point's name (e.g. ``robust data ...``). Keep those modules light: they load at start-up.

``ROBUST_DISABLE_PLUGINS=name1,name2`` hides entry points by name (like pytest's ``-p no:``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from robustcli.errors import InputError, PluginLoadError, UnknownNameError

__all__ = ["PluginInfo", "discover", "load_task", "load_task_class", "command_plugins", "task_or_none"]

TASK_GROUP = "robustcli.tasks"
COMMAND_GROUP = "robustcli.commands"


@dataclass(frozen=True)
class PluginInfo:
    """An entry point as found, before anything is imported."""

    name: str
    value: str
    distribution: str
    version: str
    entry_point: EntryPoint

    def load(self) -> Any:
        try:
            return self.entry_point.load()
        except Exception as exc:  # a plugin may fail in any way; report it, never crash the CLI
            raise PluginLoadError(
                f"failed to load plugin {self.name!r} from {self.distribution} {self.version} "
                f"({self.value}) due to {type(exc).__name__}: {exc}"
            ) from exc


def _disabled() -> set[str]:
    return {n.strip() for n in os.environ.get("ROBUST_DISABLE_PLUGINS", "").split(",") if n.strip()}


def discover(group: str = TASK_GROUP) -> list[PluginInfo]:
    """Every entry point of ``group``, sorted by name, without importing any plugin."""
    disabled = _disabled()
    found: dict[str, PluginInfo] = {}
    for ep in entry_points(group=group):
        if ep.name in disabled:
            continue
        dist = ep.dist
        info = PluginInfo(
            name=ep.name,
            value=ep.value,
            distribution=dist.metadata["Name"] if dist is not None else "?",
            version=dist.version if dist is not None else "?",
            entry_point=ep,
        )
        found.setdefault(ep.name, info)  # the first installed wins; duplicates are ignored
    return [found[name] for name in sorted(found)]


def load_task_class(name: str, where: str = "--task") -> tuple[type, PluginInfo]:
    """The Task class registered as ``name``, validated against the contract."""
    from robustcli.task import Task

    plugins = {p.name: p for p in discover(TASK_GROUP)}
    if name not in plugins:
        raise UnknownNameError("task", name, plugins, where)
    info = plugins[name]
    cls = info.load()
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise PluginLoadError(f"plugin {name!r} ({info.value}) is not a robustcli.task.Task subclass")
    problems = [attr for attr in ("name", "description") if not getattr(cls, attr, "")]
    if problems:
        raise PluginLoadError(f"plugin {name!r} ({info.value}) leaves {', '.join(problems)} empty")
    return cls, info


def load_task(name: str, options: dict[str, Any] | None = None, where: str = "--task") -> Any:
    """An instance of task ``name`` configured with ``options`` (the study's [task_options])."""
    cls, _ = load_task_class(name, where)
    try:
        return cls(**(options or {}))
    except TypeError as exc:
        raise InputError(f"bad [task_options] for task {name!r}: {exc}") from None


def task_or_none(name: str, options: dict[str, Any] | None = None) -> Any | None:
    """Task ``name`` with ``options``, to describe candidates read back from a store; None when it
    cannot be loaded (not installed here, broken, refusing the options)."""
    try:
        return load_task(name, options)
    except Exception:  # noqa: BLE001 - a description is never worth an error
        return None


def command_plugins() -> list[tuple[PluginInfo, Any | None, str | None]]:
    """(info, loaded Typer or None, error or None) for each command plugin."""
    out = []
    for info in discover(COMMAND_GROUP):
        try:
            out.append((info, info.load(), None))
        except PluginLoadError as exc:
            out.append((info, None, str(exc)))
    return out
