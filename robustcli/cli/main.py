"""`robust`: the command-line entry point. Commands import their heavy parts lazily."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from robustcli.cli import assess, baseline, candidates, nas, report, reproduce, studies, study, tasks
from robustcli.cli._common import err_console

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
    for group, found in ((TASK_GROUP, discover(TASK_GROUP)), (COMMAND_GROUP, command_entry_points())):
        for p in found:
            print(f"  {group}: {p.name} = {p.value} ({p.distribution} {p.version})")
    raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print versions and plugins, then exit.")
    ] = False,
) -> None:
    """Find deep-learning models that are accurate and robust to sample and initialisation."""


app.add_typer(tasks.app, name="tasks")
app.command("candidates")(candidates.candidates)
app.command("assess")(assess.assess)
app.command("baseline")(baseline.baseline)
app.command("nas")(nas.nas)
app.command("reproduce")(reproduce.reproduce)
app.command("studies")(studies.studies)
app.command("export")(studies.export)
app.command("report")(report.report)
app.add_typer(study.app, name="study")


def _add_optional_commands() -> None:
    # the selection commands live in their own modules; they are registered when present
    try:
        from robustcli.cli import select
    except ImportError:
        return
    app.command("select")(select.select)


def _add_plugin_commands() -> None:
    # plugins registering the same name (e.g. `data`) share one group (see _plugin_commands)
    from robustcli.cli._plugin_commands import add_plugin_commands

    add_plugin_commands(app, err_console)


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
