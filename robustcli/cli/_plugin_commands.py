"""Command plugins (entry-point group ``robustcli.commands``) added to the `robust` CLI.

Each entry point is a ``typer.Typer`` added under the entry point's name. Plugins that register
the same name share one group: their commands are merged into it, so ``robust data`` holds
robust-calo's ``make-calo`` and ``show`` and robust-cifar10's ``fetch-cifar10``. In a shared
group:

* the plugins are taken in the order of their distributions' names: a command name two of them
  define stays the first one's, the other's is left out and the group's help says so;
* the group's help joins the plugins' helps (first paragraphs, then the examples);
* the plugins' group callbacks (``@app.callback()``) do not run: put options on the commands;
* a plugin that fails to load is named in the group's help; the others' commands still work.

A name with one plugin is its Typer, unchanged, or, when it fails to load, a
command that prints the error and exits 2. The modules load when `robust` starts (``--help``
included), so they import only typer and light helpers at module level.
"""

from __future__ import annotations

from typing import Any

import typer

__all__ = ["add_plugin_commands", "command_entry_points"]


def command_entry_points() -> list[Any]:
    """Every entry point of ``robustcli.commands`` as a :class:`~robustcli.plugins.PluginInfo`,
    those sharing a name included (identical ones once), minus ``ROBUST_DISABLE_PLUGINS``."""
    from robustcli.plugins import COMMAND_GROUP, entry_point_infos

    out, seen = [], set()
    for info in entry_point_infos(COMMAND_GROUP):
        if (info.name, info.value) not in seen:
            seen.add((info.name, info.value))
            out.append(info)
    return out


def add_plugin_commands(app: typer.Typer, taken: set[str] = frozenset(),
                        ignored: dict[str, str] | None = None) -> None:  # fmt: skip
    """Add every command plugin to ``app``, one group per name; a name in ``taken`` (a built-in
    command's) is left out, and why is noted in ``ignored``."""
    from robustcli.errors import PluginLoadError

    groups: dict[str, list[tuple[Any, Any, str | None]]] = {}
    for info in command_entry_points():
        if info.name in taken:
            if ignored is not None:
                ignored[info.name] = f"name {info.name!r} of {info.distribution} {info.version} is a built-in command"
            continue
        try:
            loaded, error = info.load(), None
        except PluginLoadError as exc:
            loaded, error = None, str(exc)
        groups.setdefault(info.name, []).append((info, loaded, error))
    for name in sorted(groups):
        members = sorted(groups[name], key=lambda m: (m[0].distribution.lower(), m[0].value))
        if len(members) == 1:
            info, sub_app, error = members[0]
            if sub_app is not None:
                app.add_typer(sub_app, name=name)
            else:
                app.command(name, help=f"(broken plugin: {error})", short_help="(broken plugin: run it for the error)")(
                    _broken(error or ""))
            continue
        if all(sub_app is None for _, sub_app, _ in members):
            errors = "; ".join(error or "" for _, _, error in members)
            app.command(name, help=f"(broken plugins: {errors})", short_help="(broken plugins: run it for the errors)")(
                _broken(errors))
            continue
        app.add_typer(_merged(name, members), name=name)


def _broken(error: str) -> Any:
    def broken() -> None:
        import sys

        print(f"error: {error}", file=sys.stderr)  # plain print: one unwrapped line
        raise typer.Exit(2)

    return broken


def _merged(name: str, members: list[tuple[Any, Any, str | None]]) -> typer.Typer:
    """One Typer holding the commands of several plugins' Typers registered as ``name``."""
    from typer.main import get_command_name

    summaries: list[str] = []
    details: list[str] = []
    notes: list[str] = []
    owner: dict[str, str] = {}
    group = typer.Typer(
        name=name,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    for info, sub_app, error in members:
        if sub_app is None:
            notes.append(f"(broken plugin: {error})")
            continue
        first, *rest = _help_of(sub_app).split("\n\n") or [""]
        if first.strip():
            summaries.append(" ".join(first.split()))
        details.extend(p for p in rest if p.strip())
        for info_ in sub_app.registered_commands:
            cmd = info_.name or get_command_name(info_.callback.__name__)
            if cmd in owner:
                notes.append(f"({info.distribution}'s `{name} {cmd}` is left out: {owner[cmd]} has one)")
                continue
            owner[cmd] = info.distribution
            group.registered_commands.append(info_)
        for sub in sub_app.registered_groups:
            cmd = sub.name if isinstance(sub.name, str) else None
            if cmd is not None and cmd in owner:
                notes.append(f"({info.distribution}'s `{name} {cmd}` is left out: {owner[cmd]} has one)")
                continue
            if cmd is not None:
                owner[cmd] = info.distribution
            group.registered_groups.append(sub)
    group.info.help = "\n\n".join([" ".join(summaries), *details, *notes])
    # `robust --help` lists each command on one line: the summaries if they fit, else who adds what
    loaded = [info.distribution for info, sub_app, _ in members if sub_app is not None]
    joined = " ".join(summaries)
    group.info.short_help = joined if len(joined) <= 60 else f"Commands of {len(loaded)} plugins: {', '.join(loaded)}."
    return group


def _help_of(sub_app: typer.Typer) -> str:
    import inspect

    from typer.models import DefaultPlaceholder

    text = sub_app.info.help
    if isinstance(text, DefaultPlaceholder):
        text = text.value
    if not text and sub_app.registered_callback is not None:
        cb = sub_app.registered_callback
        text = cb.help if isinstance(cb.help, str) else inspect.getdoc(cb.callback) if cb.callback else ""
    return inspect.cleandoc(text or "")
