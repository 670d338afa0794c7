"""What a store holds: its studies, and a study's losses as a table `select --replay` reads."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from robustcli.api.results import StudyInfo

__all__ = ["export_losses", "list_studies"]


def list_studies(tracking_uri: str | None = None) -> list[StudyInfo]:
    """Every study in the store: its task, candidates, instances, baselines and selections' state.

    Example: ``[(s.study, s.instances) for s in list_studies("sqlite:///mlruns/mlflow.db")]``"""
    import json

    from robustcli.plugins import task_or_none
    from robustcli.task import labelled
    from robustcli.tracking.mlflow_store import MlflowStore, candidates_of_runs, resolve_tracking_uri

    store = MlflowStore(resolve_tracking_uri(tracking_uri))
    rows = []
    for exp in store.list_experiments():
        if "robust.task" not in exp.tags:
            continue
        runs = store.search(exp.experiment_id, "tags.`robust.kind` != ''")
        kinds = Counter(r.data.tags.get("robust.kind") for r in runs)
        selections = [r for r in runs if r.data.tags.get("robust.kind") == "selection"]
        label: Any = str
        if any("robust.selected" in r.data.tags for r in selections):
            cands = candidates_of_runs(runs)
            settings = next((r.data.tags["robust.settings_json"] for r in runs if "robust.settings_json" in r.data.tags), "{}")
            described = task_or_none(exp.tags["robust.task"], json.loads(settings).get("task_options") or {})
            label = lambda cid: labelled(described, cands[cid]) if cid in cands else cid  # noqa: E731
        states = [
            r.data.tags.get("robust.state", r.info.status.lower())
            + (f" -> {label(r.data.tags['robust.selected'])}" if "robust.selected" in r.data.tags else "")
            for r in selections
        ]
        instances = [r for r in runs if r.data.tags.get("robust.kind") == "instance"]
        rows.append(StudyInfo(exp.name, exp.tags["robust.task"], kinds.get("candidate", 0), len(instances),
                              sum(r.info.status == "FAILED" for r in instances), kinds.get("baseline", 0), states))  # fmt: skip
    return rows


def export_losses(study: str, out: str | Path, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Write every instance loss of ``study`` to the CSV ``out`` (candidate, instance, loss and
    details); returns the rows written. A study whose instances were trained under several
    settings is refused: a loss table compares like with like.

    Example: ``export_losses("calo-energy", "losses.csv")``, then ``replay_selection(..., "losses.csv")``"""
    from robustcli.api.report import finished_instance_runs, open_study_experiment
    from robustcli.errors import InputError
    from robustcli.outputs import check_output_file, write_failed
    from robustcli.selection import write_loss_table
    from robustcli.tracking.mlflow_store import InstanceRecord

    check_output_file(out, "the output file")  # before reading the store
    store, exp_id = open_study_experiment(study, tracking_uri)
    rows: list[dict[str, Any]] = []
    for run in finished_instance_runs(store, exp_id, study):
        rec = InstanceRecord.from_run(run)
        rows.append({"candidate": rec.candidate_id, "instance": rec.index, "loss": rec.loss,
                     "fingerprint": run.data.tags.get("robust.fingerprint", ""), "stop_reason": rec.stop_reason,
                     "epochs": rec.epochs, "seconds": round(rec.seconds, 3), "init_seed": rec.init_seed,
                     "data_seed": rec.data_seed})  # fmt: skip
    fingerprints = {r["fingerprint"] for r in rows}
    if len(fingerprints) > 1:
        raise InputError(
            f"study {study!r} mixes instances trained under {len(fingerprints)} different settings "
            f"(fingerprints {', '.join(sorted(fingerprints))}); a loss table needs one"
        )
    rows.sort(key=lambda r: (r["candidate"], r["instance"]))
    try:
        write_loss_table(Path(out), rows)
    except OSError as exc:
        raise write_failed(out, exc, "the output file") from None
    return rows
