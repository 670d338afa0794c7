"""Entry-point discovery: list plugins without importing them, load one with a clear failure.

Two groups:

* ``robustcli.tasks``: one :class:`~robustcli.task.Task` subclass per entry point, named by the
  task's name.
* ``robustcli.commands``: a ``typer.Typer`` per entry point, added to the CLI under the entry
  point's name (e.g. ``robust data ...``). Keep those modules light: they load at start-up.

``ROBUST_DISABLE_PLUGINS=name1,name2`` hides entry points by name (like pytest's ``-p no:``).

One name, one plugin. A distribution registering a name that another one already holds never
replaces it: the built-in entry points (distribution ``robustcli``) always keep their names;
between two plugins, the one found first on ``sys.path`` keeps it. The other is returned by
``discover(group, include_shadowed=True)`` with ``shadowed_by`` set, so that ``robust tasks`` lists
it as broken, naming both distributions. A loaded plugin that fails in any way (an exception,
``sys.exit()`` at import) is a :class:`~robustcli.errors.PluginLoadError`, never the CLI's end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from robustcli.errors import InputError, PluginLoadError, RobustError, TaskError, UnknownNameError, first_line

if TYPE_CHECKING:
    from robustcli.task import Task

__all__ = [
    "PluginInfo", "discover", "entry_point_infos", "entry_points_of", "build_task", "load_task", "load_task_class",
    "load_task_data", "name_mismatch", "task_or_none", "task_summaries",
]

TASK_GROUP = "robustcli.tasks"
COMMAND_GROUP = "robustcli.commands"
#: the distribution whose entry points are built in: no plugin takes their names
BUILTIN_DISTRIBUTION = "robustcli"


@dataclass(frozen=True)
class PluginInfo:
    """An entry point as found, before anything is imported."""

    name: str
    value: str
    distribution: str
    version: str
    entry_point: EntryPoint
    #: the entry point of another distribution that holds this name (this one is then ignored)
    shadowed_by: PluginInfo | None = None

    @property
    def conflict(self) -> str | None:
        """Why this entry point is ignored, in one line naming both distributions; None if it is not."""
        other = self.shadowed_by
        if other is None:
            return None
        kept = "the built-in one stays" if other.distribution == BUILTIN_DISTRIBUTION else "that one is used"
        return (
            f"name {self.name!r} of {self.distribution} {self.version} ({self.value}) is already taken by "
            f"{other.distribution} {other.version} ({other.value}); {kept} and this one is ignored: "
            f"rename its entry point or uninstall {self.distribution}"
        )

    def load(self) -> Any:
        try:
            return self.entry_point.load()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: BLE001 - a plugin may fail in any way, sys.exit() at import
            # included: report it, never let it stop the CLI
            raise PluginLoadError(
                f"failed to load plugin {self.name!r} from {self.distribution} {self.version} "
                f"({self.value}) due to {type(exc).__name__}: {exc}"
            ) from None


def _disabled() -> set[str]:
    return {n.strip() for n in os.environ.get("ROBUST_DISABLE_PLUGINS", "").split(",") if n.strip()}


def entry_point_infos(group: str) -> list[PluginInfo]:
    """Every entry point of ``group`` as found, in order, minus ``ROBUST_DISABLE_PLUGINS``; nothing imported."""
    disabled = _disabled()
    out = []
    for ep in entry_points(group=group):
        if ep.name in disabled:
            continue
        dist = ep.dist
        out.append(PluginInfo(
            name=ep.name,
            value=ep.value,
            distribution=dist.metadata["Name"] if dist is not None else "?",
            version=dist.version if dist is not None else "?",
            entry_point=ep,
        ))  # fmt: skip
    return out


def discover(group: str = TASK_GROUP, include_shadowed: bool = False) -> list[PluginInfo]:
    """Every entry point of ``group``, sorted by name, without importing any plugin.

    A name registered by two distributions is kept by the built-in one, else by the first found;
    the others are left out, or with ``include_shadowed`` returned after it with ``shadowed_by``."""
    found: dict[str, PluginInfo] = {}
    shadowed: list[PluginInfo] = []
    for info in entry_point_infos(group):
        held = found.get(info.name)
        if held is None:
            found[info.name] = info
        elif held.distribution == info.distribution and held.value == info.value:
            continue  # one distribution seen twice (installed and on the path)
        elif info.distribution == BUILTIN_DISTRIBUTION and held.distribution != BUILTIN_DISTRIBUTION:
            found[info.name] = info
            shadowed.append(held)
        else:
            shadowed.append(info)
    out = [found[name] for name in sorted(found)]
    if include_shadowed:
        extra = [replace(info, shadowed_by=found[info.name]) for info in shadowed]
        out = sorted(out + extra, key=lambda p: (p.name, p.shadowed_by is not None))
    return out


def entry_points_of(cls: type, group: str = TASK_GROUP) -> list[PluginInfo]:
    """The entry points of ``group`` that register ``cls`` (e.g. to check that their names are the
    task's name). Those naming its module and class are found without importing anything; one
    naming the class through another module (a re-export) is loaded to compare."""
    out = []
    for info in discover(group, include_shadowed=True):
        ep = info.entry_point
        if (ep.module, ep.attr) == (cls.__module__, cls.__qualname__):
            out.append(info)
        elif ep.attr and ep.attr.rsplit(".", 1)[-1] == cls.__name__:
            try:
                if info.load() is cls:
                    out.append(info)
            except PluginLoadError:
                continue
    return out


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
    lacking = sorted(getattr(cls, "__abstractmethods__", ()))
    if lacking:  # else it loads and fails when built, as a bad [task_options]
        raise PluginLoadError(
            f"plugin {name!r} ({info.value}) does not implement {', '.join(lacking)}: "
            f"robustcli.task.Task's abstract method{'s' if len(lacking) > 1 else ''} it lacks"
        )
    problems = [attr for attr in ("name", "description") if not getattr(cls, attr, "")]
    if problems:
        raise PluginLoadError(f"plugin {name!r} ({info.value}) leaves {', '.join(problems)} empty")
    return cls, info


def load_task(name: str, options: dict[str, Any] | None = None, where: str = "--task") -> Task:
    """An instance of task ``name`` configured with ``options`` (the study's [task_options])."""
    cls, info = load_task_class(name, where)
    return build_task(cls, info, options)


def build_task(cls: type[Task], info: PluginInfo, options: dict[str, Any] | None = None) -> Task:
    """``cls(**options)``: options it refuses are bad input; a constructor that exits is a broken plugin."""
    try:
        return cls(**(options or {}))
    except TypeError as exc:
        raise InputError(f"bad [task_options] for task {info.name!r}: {exc}") from None
    except SystemExit as exc:  # a plugin's constructor must never end the CLI
        raise PluginLoadError(f"task {info.name!r} ({info.value}) called sys.exit({exc.code!r}) when built") from None
    except RobustError:  # the task's own refusal (a bad option value), worded by it
        raise
    except Exception as exc:  # noqa: BLE001 - a broken plugin: named, one line
        raise PluginLoadError(
            f"task {info.name!r} ({info.value}) failed when built: {type(exc).__name__}: {first_line(exc)}"
        ) from None


def _data_hint(exc: BaseException, name: str) -> str:
    """What to look at when loading failed: the cache folder when the failure is in it."""
    cache = os.environ.get("ROBUST_CACHE_DIR")
    filename = getattr(exc, "filename", None)
    if cache and isinstance(filename, str) and filename.startswith(cache):
        return f"$ROBUST_CACHE_DIR={cache!r} must be a folder this user can write"
    return f"robust check {name} runs the task's checks"


def load_task_data(task: Any, name: str) -> Any:
    """``task.load_data()``, checked: a plugin whose loading fails, returns something else than a
    TaskData, or gives data with NaN or infinite values (which would train to NaN losses and pick
    a winner by ``inf``) is a :class:`~robustcli.errors.TaskError` naming it, as `robust check` finds."""
    import torch

    from robustcli.task import TaskData

    try:
        data = task.load_data()
    except RobustError:  # the task's own refusal (a missing data file it names)
        raise
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - a broken plugin: named, one line
        raise TaskError(f"task {name!r} could not load its data: load_data() raised {type(exc).__name__}: "
                        f"{first_line(exc)} ({_data_hint(exc, name)})") from None
    if not isinstance(data, TaskData):
        raise TaskError(f"task {name!r}: load_data() returned {type(data).__name__}, not a TaskData")
    for field in ("pool_x", "pool_y", "test_x", "test_y"):
        value = getattr(data, field)
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            bad = _non_finite(value)
            if bad:
                raise TaskError(f"task {name!r}: its data's {field} holds {bad:,} NaN or infinite values of "
                                f"{value.numel():,}; no instance can train or be scored on them "
                                f"(robust check {name} runs the task's checks)")
    return data


def _non_finite(value: Any, chunk: int = 1 << 22) -> int:
    """How many NaN or infinite values ``value`` holds. A finite sum proves there are none (NaN and
    inf propagate through it) in a fraction of the time of a mask; otherwise (or on an overflow)
    they are counted in slices of ``chunk`` values, without a mask as large as the data."""
    import torch

    if bool(torch.isfinite(value.sum())):
        return 0
    flat = value.reshape(-1)
    return sum(int((~torch.isfinite(flat[i : i + chunk])).sum()) for i in range(0, flat.numel(), chunk))


def task_or_none(name: str, options: dict[str, Any] | None = None) -> Any | None:
    """Task ``name`` with ``options``, to describe candidates read back from a store; None when it
    cannot be loaded (not installed here, broken, refusing the options)."""
    try:
        return load_task(name, options)
    except Exception:  # noqa: BLE001 - a description is never worth an error
        return None


def task_summaries() -> list[dict[str, Any]]:
    """One row per installed task (``robust tasks``, ``robustcli.api.list_tasks``): name,
    distribution, version, entry point, status (``ok`` or ``broken``), description, search-space
    size, and a warning or error. A broken plugin is a row, never an exception."""
    return [_summary(p) for p in discover(include_shadowed=True)]


def _summary(info: PluginInfo) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": info.name,
        "distribution": info.distribution,
        "version": info.version,
        "entry_point": info.value,
        "status": "ok",
        "description": "",
        "candidates": None,
        "warning": None,
        "error": None,
    }
    if info.conflict:  # another distribution holds the name: this one is never loaded
        row.update(status="broken", error=info.conflict)
        return row
    try:
        cls, _ = load_task_class(info.name)
        task = cls()
        row.update(description=cls.description, candidates=len(task.search_space()))
        if cls.name != info.name:
            row["warning"] = name_mismatch(info, cls)
    except KeyboardInterrupt:
        raise
    except (Exception, SystemExit) as exc:  # a broken plugin is listed, never fatal
        row.update(status="broken", error=str(exc) or type(exc).__name__)
    return row


def name_mismatch(info: PluginInfo, cls: type) -> str:
    """The warning for an entry point named otherwise than its task (the conformance kit refuses it)."""
    return (
        f"entry point {info.name!r} of {info.distribution} registers a task named {cls.name!r} "  # type: ignore[attr-defined]
        f"({info.value}); --task takes {info.name!r}: give both one name"
    )
