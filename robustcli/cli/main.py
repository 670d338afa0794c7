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

    from robustcli.cli._plugin_commands import command_entry_points
    from robustcli.plugins import COMMAND_GROUP, TASK_GROUP, discover

    print(f"robustcli {version('robustcli')}")
    for p in discover(TASK_GROUP, include_shadowed=True):
        print(f"  {TASK_GROUP}: {p.name} = {p.value} ({p.distribution} {p.version})" + (f" [ignored: {p.conflict}]" if p.conflict else ""))
    for p in command_entry_points():  # plugins of one name share its group: all are listed
        ignored = _TAKEN.get(p.name)
        print(f"  {COMMAND_GROUP}: {p.name} = {p.value} ({p.distribution} {p.version})" + (f" [ignored: {ignored}]" if ignored else ""))
    raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print versions and plugins, then exit.")
    ] = False,
) -> None:
    """Find deep-learning models that are accurate and robust to sample and initialisation."""
    from robustcli.wording import cli_wording

    ctx.with_resource(cli_wording())  # error lines name --flags until the command ends (handle_errors too)


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
app.add_typer(study.app, name="study", short_help="The paper's analyses: sample size, sources of the spread.")

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
    # plugins registering the same name (e.g. `data`) share one group (see _plugin_commands)
    from robustcli.cli._plugin_commands import add_plugin_commands

    # a plugin never replaces a built-in command (`robust --version` says which was ignored)
    add_plugin_commands(app, taken=_builtin_command_names(), ignored=_TAKEN)


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
    """The console script: the app, guarded (:mod:`robustcli.cli._guard`): an exception no command
    handled is one line and a log file, and output that cannot be written one line."""
    from robustcli.cli._guard import finish_output, report_unexpected

    try:
        app()  # click's standalone mode: always ends in SystemExit
        code: int | str | None = 0
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        code = 130
    except Exception as exc:  # noqa: BLE001 - what escaped every command (a plugin command's bug)
        code = report_unexpected(exc)
    sys.exit(finish_output(code))
