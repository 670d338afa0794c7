"""`robust report`: a study's figure, read back from MLflow."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from robustcli.cli._common import JsonOption, TrackingUriOption, console, handle_errors, print_json

if TYPE_CHECKING:
    from robustcli.api.results import Spread


@handle_errors
def report(
    study: Annotated[str, typer.Option("--study", help="Study (experiment) name.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="FILE.html (a page with the figure and tables, also logged to MLflow) or "
                     "FILE.png (the figure alone). Default: STUDY.html.", show_default=False),
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Candidates shown, best mean first.")] = 12,
    tracking_uri: TrackingUriOption = None,
    json_output: JsonOption = False,
) -> None:
    """Report a study: loss box plots of its best candidates, the selection's path, the
    loss-versus-epoch curves of the best candidate's instances, and each top candidate's
    systematic-uncertainty summary, as an offline HTML page (or a PNG).

    Example: robust report --study calo-energy --out energy.html
    """
    from robustcli.api import build_report

    result = build_report(study, out=out, top=top, tracking_uri=tracking_uri)
    if json_output:
        print_json(result)
        return
    summary = result.as_dict()["summary"]
    decomposition, analyses, out = result.decomposition, result.analyses, result.out
    from rich.table import Table

    table = Table(title=f"{study}: best candidates, spread over instances (systematic uncertainty)")
    table.add_column("candidate", overflow="fold", min_width=14)  # a long description wraps; the numbers never do
    for col in ("n", "mean [95% CI]", "std", "Q90-Q10"):  # (the interval wraps at its space)
        table.add_column(col, no_wrap=col != "mean [95% CI]", min_width=10 if col.startswith("mean") else None)
    for row in summary:
        one = row["instances"] - row["failed"] < 2  # no spread from a single instance
        spread = ["-" if one or not math.isfinite(row[k]) else f"{row[k]:.3g}" for k in ("std", "q90_q10")]
        table.add_row(f"{row['description']} ({row['candidate']})", str(row["instances"]), row["mean_ci"], *spread)
    console.print(table)
    for row in summary:
        console.print(f"{row['description']} ({row['candidate']}): {row['quote']}", soft_wrap=True)
    if decomposition:
        table = Table(title="where the spread comes from (std of the loss over instances)")
        table.add_column("candidate", overflow="fold", min_width=14)
        for col in ("both vary", "init only", "sample only"):
            table.add_column(col, no_wrap=True)
        for row in decomposition:
            table.add_row(f"{row.description} ({row.candidate})", *map(_std_cell, row.by_source()))
        console.print(table)
    for section in analyses:
        console.print("\n".join(section.lines), highlight=False)
    console.print(f"wrote {out}")


def _std_cell(cell: Spread) -> str:
    return "-" if cell.std is None else f"{cell.std:.3g} ({cell.instances})"
