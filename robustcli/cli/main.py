"""`robust`: the command-line entry point. Commands import their heavy parts lazily."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from robustcli.cli import assess, baseline, candidates, check, nas, report, reproduce, studies, study, tasks

app = typer.Typer(
    name="robust",
    help="Find deep-learning models that are accurate and robust to the training sample and the "
    "initialisation.\n\nExample: robust assess --task synthetic --candidate small --instances 5",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import version

    from robustcli.plugins import COMMAND_GROUP, TASK_GROUP, discover

    print(f"robustcli {version('robustcli')}")
    for group in (TASK_GROUP, COMMAND_GROUP):
        for p in discover(group, include_shadowed=True):
            ignored = p.conflict or (_TAKEN.get(p.name) if group == COMMAND_GROUP else None)
            note = f" [ignored: {ignored}]" if ignored else ""
            print(f"  {group}: {p.name} = {p.value} ({p.distribution} {p.version}){note}")
    raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print versions and plugins, then exit.")
    ] = False,
) -> None:
    """Find deep-learning models that are accurate and robust to sample and initialisation."""


# `robust --help` shows each command's short_help on one line of an 80-column terminal (the
# docstrings' first paragraphs are longer, and keep their line breaks): at most 62 characters.
app.add_typer(tasks.app, name="tasks", short_help="List installed tasks, or show one.")
app.command("check", short_help="Run the conformance kit on an installed task.")(check.check)
app.command("candidates", short_help="List a task's candidates: ids, names, parameters.")(candidates.candidates)
app.command("assess", short_help="Train N instances of a candidate; their loss statistics.")(assess.assess)
app.command("baseline", short_help="Fit a task's baselines on the instances' training samples.")(baseline.baseline)
app.command("nas", short_help="Search with Optuna, then assess the best trials' robustness.")(nas.nas)
app.command("reproduce", short_help="Retrain a logged instance; does its loss match bit for bit?")(reproduce.reproduce)
app.command("studies", short_help="List the studies in the store and their selections.")(studies.studies)
app.command("export", short_help="Write a study's losses as a table for select --replay.")(studies.export)
app.command("report", short_help="A study's report: box plots, selection path, curves (HTML).")(report.report)
app.add_typer(study.app, name="study", short_help="The paper's studies: sample size, sources of the spread.")

#: command names a plugin cannot take (a built-in holds them): name -> why its plugin is ignored
_TAKEN: dict[str, str] = {}


def _add_optional_commands() -> None:
    # the selection commands live in their own modules; they are registered when present
    try:
        from robustcli.cli import select
    except ImportError:
        return
    app.command("select", short_help="Select a robust candidate with Algorithm 1 (or replay it).")(select.select)


def _builtin_command_names() -> set[str]:
    return {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands} | {
        g.name or "" for g in app.registered_groups
    }


def _add_plugin_commands() -> None:
    from robustcli.plugins import command_plugins

    taken = _builtin_command_names()
    for info, sub_app, error in command_plugins():
        if info.name in taken:  # a plugin never replaces a built-in command (`robust --version` says so)
            _TAKEN[info.name] = f"name {info.name!r} of {info.distribution} {info.version} is a built-in command"
            continue
        if sub_app is not None:
            app.add_typer(sub_app, name=info.name)
            continue

        def broken(_error: str = error or "") -> None:
            print(f"error: {_error}", file=sys.stderr)  # plain print: one unwrapped line
            raise typer.Exit(2)

        app.command(info.name, help=f"(broken plugin: {error})", short_help="(broken plugin: run it for the error)")(broken)


_add_optional_commands()
_add_plugin_commands()


def _usage_error_in_one_line(exc: Exception) -> None:
    """Typer's presenter of click's usage errors (a boxed panel), replaced: one line on stderr.
    Typer still exits with the error's code (2)."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # `robust` alone: click has printed the help
        return
    ctx = getattr(exc, "ctx", None)
    hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
    print(f"error: {exc.format_message()}{hint}", file=sys.stderr)


try:  # Typer's own name for it since 0.12; where it is missing, Typer's box stays
    from typer import rich_utils as _rich_utils

    if hasattr(_rich_utils, "rich_format_error"):
        _rich_utils.rich_format_error = _usage_error_in_one_line
except ImportError:  # Typer without rich: click's plain lines
    pass


def main() -> None:
    app()
