"""`robust check TASK`: the conformance kit (robustcli.testing, through robustcli.api.tasks) on an installed task,
no pytest file needed."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from robustcli.cli._common import JsonOption, TaskOptionsOption, console, err_console, handle_errors, parse_task_options, print_json

#: how each status shows in the table
_STYLE = {"passed": "green", "failed": "bold red", "skipped": "yellow", "xfail": "yellow", "xpass": "yellow"}


@handle_errors
def check(
    task: Annotated[str, typer.Argument(help="Task name, as `robust tasks` lists it.", show_default=False)],
    sample: Annotated[
        int, typer.Option("--sample", min=0, max=1000, help="Grid candidates the model checks draw, besides the named ones.")
    ] = 3,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of that draw and of the training checks.")] = 0,
    task_option: TaskOptionsOption = None,
    json_output: JsonOption = False,
) -> None:
    """Run the conformance kit on an installed task and show each check: passed, failed or skipped, and why.

    The checks are robustcli.testing's (documentation, candidate ids, data, a model forward and
    backward, seeded training, stacking, pickling), as a plugin's own tests run them. Exit code 0
    when every check passes or is skipped, 1 when one fails, 2 for an unknown or broken task.

    Example: robust check synthetic

    Example: robust check calo-energy -o dataset=B --sample 5 --json
    """
    from robustcli.api.tasks import check_task
    from robustcli.plugins import load_task, load_task_class

    _, info = load_task_class(task, where="robust check")
    instance = load_task(task, parse_task_options(task_option), where="robust check")
    with err_console.status(f"checking task {task} ({info.distribution} {info.version})", spinner="dots") as status:
        if json_output:
            status.stop()
        results = check_task(instance, sample=sample, seed=seed)
    failed = [r for r in results if r.failed]
    if json_output:
        print_json(
            {
                "task": task,
                "distribution": f"{info.distribution} {info.version}",
                "passed": not failed,
                "checks": [
                    {"check": r.check, "status": r.status, "message": r.message, "seconds": round(r.seconds, 3)}
                    for r in results
                ],
            }
        )
    else:
        _render(task, info, results)
    if failed:
        raise typer.Exit(1)


def _render(task: str, info: Any, results: list[Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"Conformance of task {task} ({info.distribution} {info.version})")
    table.add_column("check", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("s", justify="right", no_wrap=True)
    table.add_column("cause / note", overflow="fold")
    for r in results:
        style = _STYLE.get(r.status, "")
        seconds = f"{r.seconds:.1f}" if r.status != "skipped" else "-"
        table.add_row(r.check, f"[{style}]{r.status}[/{style}]", seconds, escape(r.message))
    console.print(table)
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    verdict = "[bold red]fails[/bold red]" if counts.get("failed") else "[green]conforms[/green]"
    console.print(f"task {task} {verdict}: {summary}")
