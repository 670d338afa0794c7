"""How `robust select` shows a finished selection (the result comes from :mod:`robustcli.api`)."""

from __future__ import annotations

import math
from typing import Any

from robustcli.cli._common import console

__all__ = ["render_selection"]


def render_selection(outcome: Any) -> None:
    """The selected candidate, how many trainings it took, and the survivors' uncertainty table."""
    from rich.table import Table

    report = outcome.as_dict()
    summary = report["summary"]
    console.print(
        f"selected [bold]{report.get('selected_name') or report['selected_description']} ({report['selected']})[/bold] after {report['steps']} steps ({report['reason']}); "
        f"{report['trainings']:,} trainings versus {report['exhaustive_trainings']:,} exhaustive "
        f"({report['ratio']}x fewer); survivors per step {report['survivors_per_step']}"
    )
    table = Table(title="Systematic uncertainty of the survivors: the spread of their instance losses")
    table.add_column("candidate", overflow="fold", min_width=14)  # a long description wraps
    for col in ("n", "mean [95% CI]", "std", "std/mean", "Q90-Q10", "failed"):  # numbers are never cut: the
        table.add_column(col, justify="right", no_wrap=col != "mean [95% CI]", min_width=10 if col.startswith("mean") else None)  # interval wraps at its space
    for row in summary:
        s = row["statistics"]
        label = f"{row.get('name') or row['description']} ({row['candidate']})"
        interval = "" if math.isnan(s["mean"]["low"]) else f" [{s['mean']['low']:.4g}, {s['mean']['high']:.4g}]"
        table.add_row(
            label,
            str(row["instances"]),
            f"{s['mean']['value']:.4g}{interval}",
            f"{row['systematic_abs']:.3g}",
            f"{100 * row['systematic_rel']:.2f}%" if math.isfinite(row["systematic_rel"]) else "-",
            f"{s['q90_q10']['value']:.3g}",
            str(row["failed"]),
        )
    console.print(table)
    console.print(f"history in MLflow: {report['tracking_uri']} (experiment {report['study']!r}, run selection-*)")
    if report["mlflow_ui"]:
        serve = "" if report["tracking_uri"].startswith("http") else f" (start it: mlflow ui --backend-store-uri {report['tracking_uri']})"
        console.print(f"compare the candidates in MLflow's UI: {report['mlflow_ui']}{serve}", soft_wrap=True)
