"""How `robust select` shows a finished selection (the result comes from :mod:`robustcli.api`)."""

from __future__ import annotations

import math
from typing import Any

from robustcli.cli._common import console

__all__ = ["render_confidence", "render_selection"]


def render_confidence(report: dict[str, Any], label: Any = None, top: int = 10) -> None:
    """How sure the pick is: P(best) of the likeliest contenders, which the data cannot tell from
    the pick, and (several survivors left) how many more instances would separate them."""
    from rich.table import Table

    from robustcli.reporting.confidence import confidence_rows

    level = report.get("confidence_level")
    if level is None:
        return
    pick = report["selected"]
    indist = set(report["indistinguishable"])
    name = label or (lambda cid: cid)
    rows = confidence_rows(report["p_best"], indist, report.get("more_instances", {}), pick)
    method = report.get("confidence_method") or "paired bootstrap over instances"
    table = Table(title=f"How sure is the pick? ({method}, {report.get('steps', '?')} instances of the "
                        f"{len(report.get('contenders', []))} candidates of the last step)")
    table.add_column("candidate", overflow="fold")
    table.add_column("P(best)", justify="right")
    table.add_column(f"indistinguishable at {level:.0%}", justify="center")
    table.add_column("more instances to separate", justify="right")
    for cid, p, tied, sep in rows[:top]:
        table.add_row(("* " if cid == pick else "  ") + name(cid), f"{p:.1%}", "yes" if tied else "no", sep)
    if len(rows) > top:
        table.caption = f"{len(rows) - top} more with P(best) > 0 not shown"
    console.print(table)
    others = sorted(indist - {pick})
    if others:
        console.print(f"{len(others)} other candidate(s) cannot be told from the pick at {level:.0%} confidence: "
                      + ", ".join(name(c) for c in others[:5]) + (" ..." if len(others) > 5 else ""), soft_wrap=True)
    else:
        console.print(f"no other candidate of the last step is indistinguishable from the pick at {level:.0%} confidence")


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
    labels = report.get("contender_labels", {})
    render_confidence(report, label=lambda cid: f"{labels[cid]} ({cid})" if cid in labels and labels[cid] != cid else cid)
    console.print(f"history in MLflow: {report['tracking_uri']} (experiment {report['study']!r}, run selection-*)")
    if report["mlflow_ui"]:
        serve = "" if report["tracking_uri"].startswith("http") else f" (start it: mlflow ui --backend-store-uri {report['tracking_uri']})"
        console.print(f"compare the candidates in MLflow's UI: {report['mlflow_ui']}{serve}", soft_wrap=True)
