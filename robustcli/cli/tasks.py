"""`robust tasks`: installed task plugins, and one task in detail."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from robustcli.cli._common import JsonOption, console, handle_errors, print_json

app = typer.Typer(
    help="List installed tasks, or show one.\n\nExample: robust tasks; robust tasks show synthetic", no_args_is_help=False
)


@app.callback(invoke_without_command=True)
@handle_errors
def list_tasks(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List installed tasks with their distribution, version and search-space size.

    Example: robust tasks
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"json": json_output}  # `robust tasks --json show X` means `robust tasks show X --json`
        return
    from robustcli.api.tasks import list_tasks

    # a row says warning or error only where there is one
    rows = [{k: v for k, v in t.as_dict().items() if k not in ("warning", "error") or v is not None} for t in list_tasks()]
    if json_output:
        print_json(rows)
        return
    table = Table(title="Installed tasks")
    for col in ("task", "distribution", "version", "candidates", "description"):
        table.add_column(col, overflow="fold")
    for r in rows:
        if r["status"] == "ok":
            warning = f"\n[yellow]warning:[/yellow] {escape(r['warning'])}" if r.get("warning") else ""
            table.add_row(r["name"], r["distribution"], r["version"], f"{r['candidates']:,}", escape(r["description"]) + warning)
        else:
            table.add_row(r["name"], r["distribution"], r["version"], "-", f"[red]broken:[/red] {escape(r['error'])}")
    console.print(table)


@app.command("show")
@handle_errors
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Task name, as `robust tasks` lists it.")],
    json_output: JsonOption = False,
) -> None:
    """Show one task: its loss, search space, named candidates and baselines.

    Example: robust tasks show synthetic --json
    """
    from robustcli.api.tasks import describe_task

    json_output = json_output or bool((ctx.obj or {}).get("json"))
    task = describe_task(name, where="robust tasks show")
    if json_output:
        print_json(task.as_dict())
        return
    # every text below is the task's own: escaped, or rich would read `[label]` in a formula as markup
    loss = task.loss
    console.print(f"[bold]{escape(name)}[/bold]: {escape(task.description)}  ({escape(task.distribution)})")
    console.print(escape(f"loss: {loss['name']} = {loss['formula']} ({'lower' if loss['lower_is_better'] else 'higher'} is better)"))
    console.print(f"search space: {task.candidates:,} candidates; default train size {task.default_train_size}")
    if task.named:
        table = Table(title="Named candidates")
        table.add_column("name")
        table.add_column("id")
        table.add_column("parameters", overflow="fold")
        for n, cid, params in task.named:
            table.add_row(escape(n), cid, escape(", ".join(f"{k}={v}" for k, v in params.items())))
        console.print(table)
    if task.baselines:
        console.print(escape("baselines: " + "; ".join(f"{k} ({v})" for k, v in task.baselines.items())))
    for key, value in task.details.items():
        console.print(escape(f"{key}: {value}"))
