"""`robust candidates`: a task's candidates, each with its id, name, readable description and parameters."""

from __future__ import annotations

from typing import Annotated

import typer

from robustcli.cli._common import JsonOption, TaskOptionsOption, console, handle_errors, parse_task_options, print_json


@handle_errors
def candidates(
    task: Annotated[str, typer.Option("--task", "-t", help="Task name (see `robust tasks`).", show_default=False)],
    where: Annotated[
        list[str] | None,
        typer.Option("--where", metavar="KEY=VALUE", help="Only candidates whose parameter KEY equals VALUE "
                     "(repeatable), as `robust select --where` takes it.", show_default=False),
    ] = None,
    task_option: TaskOptionsOption = None,
    json_output: JsonOption = False,
) -> None:
    """List a task's candidates: id, name, readable description and parameters.

    Named candidates come first, then the search space in its order. The description (the task's
    describe_candidate) is what `robust select`, `assess`, `report` and `studies` show beside the
    id of a candidate without a name.

    Example: robust candidates --task synthetic --where optimizer=adam --where hidden=16
    """
    from robustcli.api import list_candidates

    rows = [c.as_dict() for c in list_candidates(task, where=where, task_options=parse_task_options(task_option))]
    if json_output:
        print_json({"task": task, "where": where or [], "candidates": rows})
        return
    from rich.table import Table

    title = f"{task}: {len(rows):,} candidates" + (f" with {' '.join(where)}" if where else "")
    table = Table(title=title)
    table.add_column("id", no_wrap=True)
    table.add_column("name")
    table.add_column("description", overflow="fold")
    table.add_column("parameters", overflow="fold")
    for r in rows:
        table.add_row(r["id"], r["name"] or "", r["description"], ", ".join(f"{k}={v}" for k, v in r["params"].items()))
    console.print(table)
