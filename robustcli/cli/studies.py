"""`robust studies` (what the store holds) and `robust export` (a study's losses as a table)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from robustcli.cli._common import JsonFlag, TrackingUri, console, handle_errors, print_json


@handle_errors
def studies(tracking_uri: TrackingUri = None, json_output: JsonFlag = False) -> None:
    """List the studies in the store: task, candidates, instances, selections and their state.

    Example: robust studies --tracking-uri sqlite:///mlruns/mlflow.db
    """
    from robustcli.tracking.mlflow_store import MlflowStore, resolve_tracking_uri

    store = MlflowStore(resolve_tracking_uri(tracking_uri))
    rows = []
    for exp in store.list_experiments():
        if "robust.task" not in exp.tags:
            continue
        runs = store.search(exp.experiment_id, "tags.`robust.kind` != ''")
        kinds = Counter(r.data.tags.get("robust.kind") for r in runs)
        selections = [r for r in runs if r.data.tags.get("robust.kind") == "selection"]
        label = _labeller(exp.tags["robust.task"], runs) if any("robust.selected" in r.data.tags for r in selections) else str
        states = [
            f"{r.data.tags.get('robust.state', r.info.status.lower())}"
            + (f" -> {label(r.data.tags['robust.selected'])}" if "robust.selected" in r.data.tags else "")
            for r in selections
        ]
        rows.append(
            {
                "study": exp.name,
                "task": exp.tags["robust.task"],
                "candidates": kinds.get("candidate", 0),
                "instances": kinds.get("instance", 0),
                "failed": sum(r.info.status == "FAILED" for r in runs if r.data.tags.get("robust.kind") == "instance"),
                "baselines": kinds.get("baseline", 0),
                "selections": states,
            }
        )
    if json_output:
        print_json({"tracking_uri": store.uri, "studies": rows})
        return
    from rich.table import Table

    table = Table(title=f"Studies in {store.uri}", caption="cands: candidates; insts: instances; bases: baselines")
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


def _labeller(task: str, runs: list[Any]) -> Any:
    """candidate id -> ``description (id)`` from the study's parent runs (the id alone where none)."""
    import json

    from robustcli.cli._common import candidates_of_runs, labelled
    from robustcli.plugins import task_or_none

    cands = candidates_of_runs(runs)
    settings = next((r.data.tags["robust.settings_json"] for r in runs if "robust.settings_json" in r.data.tags), "{}")
    described = task_or_none(task, json.loads(settings).get("task_options") or {})
    return lambda cid: labelled(described, cands[cid]) if cid in cands else cid


@handle_errors
def export(
    out: Annotated[Path, typer.Argument(help="CSV file to write (candidate,instance,loss + details).")],
    study: Annotated[str, typer.Option("--study", help="Study (experiment) name.")],
    tracking_uri: TrackingUri = None,
) -> None:
    """Write every instance loss of a study as a table that `robust select --replay` reads.

    Example: robust export --study calo-energy losses.csv
    """
    from robustcli.errors import InputError
    from robustcli.selection import write_loss_table
    from robustcli.tracking.mlflow_store import InstanceRecord, MlflowStore, resolve_tracking_uri

    store = MlflowStore(resolve_tracking_uri(tracking_uri))
    exp_id = store.find_experiment(study)
    if exp_id is None:
        names = [e.name for e in store.list_experiments() if "robust.task" in e.tags]
        from robustcli.errors import UnknownNameError

        raise UnknownNameError("study", study, names, "--study")
    runs = [r for r in store.search(exp_id, "tags.`robust.kind` = 'instance'") if r.info.status in ("FINISHED", "FAILED")]
    if not runs:
        raise InputError(f"study {study!r} holds no finished instances")
    rows: list[dict[str, Any]] = []
    for run in runs:
        rec = InstanceRecord.from_run(run)
        rows.append(
            {
                "candidate": rec.candidate_id,
                "instance": rec.index,
                "loss": rec.loss,
                "fingerprint": run.data.tags.get("robust.fingerprint", ""),
                "stop_reason": rec.stop_reason,
                "epochs": rec.epochs,
                "seconds": round(rec.seconds, 3),
                "init_seed": rec.init_seed,
                "data_seed": rec.data_seed,
            }
        )
    fingerprints = {r["fingerprint"] for r in rows}
    if len(fingerprints) > 1:
        raise InputError(
            f"study {study!r} mixes instances trained under {len(fingerprints)} different settings "
            f"(fingerprints {', '.join(sorted(fingerprints))}); a loss table needs one"
        )
    rows.sort(key=lambda r: (r["candidate"], r["instance"]))
    n = write_loss_table(out, rows)
    console.print(f"wrote {n} instance losses of {len({r['candidate'] for r in rows})} candidates to {out}")
