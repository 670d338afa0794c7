"""`robust studies` (what the store holds) and `robust export` (a study's losses as a table)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from robustcli.cli._common import JsonOption, TrackingUriOption, console, handle_errors, print_json


@handle_errors
def studies(tracking_uri: TrackingUriOption = None, json_output: JsonOption = False) -> None:
    """List the studies in the store: task, candidates, instances, selections and their state.

    Example: robust studies --tracking-uri sqlite:///mlruns/mlflow.db
    """
    from robustcli.api.store import list_studies, store_uri

    uri = store_uri(tracking_uri)
    rows = [r.as_dict() for r in list_studies(uri)]
    if json_output:
        print_json({"tracking_uri": uri, "studies": rows})
        return
    from rich.table import Table

    table = Table(title=f"Studies in {uri}", caption="cands: candidates; insts: instances; bases: baselines")
    table.add_column("study", overflow="fold", min_width=8)
    table.add_column("task", overflow="fold", min_width=8)
    for col in ("cands", "insts", "failed", "bases"):  # short headers: the counts are never cut
        table.add_column(col, justify="right", no_wrap=True)
    table.add_column("selections", overflow="fold", min_width=16)  # one a line; a long one wraps
    for r in rows:
        table.add_row(
            r["study"], r["task"], str(r["candidates"]), str(r["instances"]), str(r["failed"]), str(r["baselines"]),
            "\n".join(r["selections"]) or "-",
        )
    console.print(table)


@handle_errors
def export(
    out: Annotated[Path, typer.Argument(help="CSV file to write (candidate,instance,loss + details).")],
    study: Annotated[str, typer.Option("--study", help="Study (experiment) name.")],
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Write every instance loss of a study as a table that `robust select --replay` reads.

    Example: robust export --study calo-energy losses.csv
    """
    from robustcli.api import export_losses

    rows = export_losses(study, out, tracking_uri=tracking_uri)
    console.print(f"wrote {len(rows)} instance losses of {len({r['candidate'] for r in rows})} candidates to {out}")
