"""`robust tasks`: installed task plugins, and one task in detail."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from robustcli.cli._common import JsonFlag, console, handle_errors, print_json

app = typer.Typer(
    help="List installed tasks, or show one.\n\nExample: robust tasks; robust tasks show synthetic", no_args_is_help=False
)


def _summary(info: Any) -> dict[str, Any]:
    from robustcli.errors import RobustError
    from robustcli.plugins import load_task_class

    row: dict[str, Any] = {
        "name": info.name,
        "distribution": info.distribution,
        "version": info.version,
        "entry_point": info.value,
    }
    if info.conflict:  # another distribution holds the name: this one is never loaded
        row.update(status="broken", description="", candidates=None, error=info.conflict)
        return row
    try:
        cls, _ = load_task_class(info.name)
        task = cls()
        row.update(status="ok", description=cls.description, candidates=len(task.search_space()))
        if cls.name != info.name:
            row["warning"] = name_mismatch(info, cls)
    except KeyboardInterrupt:
        raise
    except (RobustError, Exception, SystemExit) as exc:  # a broken plugin is listed, never fatal
        row.update(status="broken", description="", candidates=None, error=str(exc) or type(exc).__name__)
    return row


def name_mismatch(info: Any, cls: type) -> str:
    """The warning for an entry point named otherwise than its task (the conformance kit refuses it)."""
    return (
        f"entry point {info.name!r} of {info.distribution} registers a task named {cls.name!r} "  # type: ignore[attr-defined]
        f"({info.value}); --task takes {info.name!r}: give both one name"
    )


@app.callback(invoke_without_command=True)
@handle_errors
def list_tasks(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List installed tasks with their distribution, version and search-space size.

    Example: robust tasks
    """
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"json": json_output}  # `robust tasks --json show X` means `robust tasks show X --json`
        return
    from robustcli.plugins import discover

    rows = [_summary(p) for p in discover(include_shadowed=True)]
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
    json_output: JsonFlag = False,
) -> None:
    """Show one task: its loss, search space, named candidates and baselines.

    Example: robust tasks show synthetic --json
    """
    from robustcli.plugins import build_task, load_task_class

    json_output = json_output or bool((ctx.obj or {}).get("json"))

    cls, info = load_task_class(name, where="robust tasks show")
    task = build_task(cls, info)
    space = task.search_space()
    doc = {
        "name": name,
        "description": cls.description,
        "distribution": f"{info.distribution} {info.version}",
        "loss": {"name": cls.loss.name, "formula": cls.loss.formula, "lower_is_better": cls.loss.lower_is_better},
        "candidates": len(space),
        "default_train_size": cls.default_train_size,
        "named_candidates": {n: {"id": c.id, **c.params} for n, c in space.named.items()},
        "baselines": {n: b.description for n, b in task.baselines().items()},
        "tags": vars(cls.tags) if hasattr(cls.tags, "__dict__") else {},
        **task.describe(),
    }
    if json_output:
        print_json(doc)
        return
    console.print(f"[bold]{name}[/bold]: {cls.description}  ({doc['distribution']})")
    console.print(f"loss: {cls.loss.name} = {cls.loss.formula} ({'lower' if cls.loss.lower_is_better else 'higher'} is better)")
    console.print(f"search space: {len(space):,} candidates; default train size {cls.default_train_size}")
    if space.named:
        table = Table(title="Named candidates")
        table.add_column("name")
        table.add_column("id")
        table.add_column("parameters", overflow="fold")
        for n, c in space.named.items():
            table.add_row(n, c.id, ", ".join(f"{k}={v}" for k, v in c.params.items()))
        console.print(table)
    if doc["baselines"]:
        console.print("baselines: " + "; ".join(f"{k} ({v})" for k, v in doc["baselines"].items()))
    for key, value in task.describe().items():
        console.print(f"{key}: {value}")
