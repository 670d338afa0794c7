"""What a store holds: its studies, and a study's losses as a table `select --replay` reads."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustcli.api._args import checked, out_path, text
from robustcli.api.results import StudyInfo, StudyRuns
from robustcli.tracking import tags as T

if TYPE_CHECKING:
    from robustcli.api.study import Study

__all__ = ["export_losses", "list_studies", "store_uri", "study_runs"]


def store_uri(tracking_uri: str | None = None) -> str:
    """The store a command reads: ``tracking_uri``, else $MLFLOW_TRACKING_URI, else the default file."""
    from robustcli.tracking.mlflow_store import resolve_tracking_uri

    return resolve_tracking_uri(tracking_uri)


@checked
def list_studies(tracking_uri: str | None = None) -> list[StudyInfo]:
    """Every study in the store: its task, candidates, instances, baselines and selections' state.

    Example: ``[(s.study, s.instances) for s in list_studies("sqlite:///mlruns/mlflow.db")]``"""
    import json

    from robustcli.plugins import task_or_none
    from robustcli.task import candidate_label
    from robustcli.tracking.mlflow_store import MlflowStore, candidates_of_runs, resolve_tracking_uri

    store = MlflowStore(resolve_tracking_uri(text("tracking_uri", tracking_uri)))
    rows = []
    for exp in store.list_experiments():
        if T.TASK not in exp.tags:
            continue
        runs = store.find_runs(exp.experiment_id, None)
        kinds = Counter(r.data.tags.get(T.KIND) for r in runs)
        selections = [r for r in runs if r.data.tags.get(T.KIND) == T.SELECTION]
        label: Callable[[str], str] = str
        if any(T.SELECTED in r.data.tags for r in selections):
            cands = candidates_of_runs(runs)
            settings = next((r.data.tags[T.SETTINGS_JSON] for r in runs if T.SETTINGS_JSON in r.data.tags), "{}")
            described = task_or_none(exp.tags[T.TASK], json.loads(settings).get("task_options") or {})
            label = lambda cid: candidate_label(described, cands[cid]) if cid in cands else cid  # noqa: E731
        states = [
            r.data.tags.get(T.STATE, r.info.status.lower())
            + (f" -> {label(r.data.tags[T.SELECTED])}" if T.SELECTED in r.data.tags else "")
            for r in selections
        ]
        instances = [r for r in runs if r.data.tags.get(T.KIND) == T.INSTANCE]
        rows.append(StudyInfo(exp.name, exp.tags[T.TASK], kinds.get(T.CANDIDATE, 0), len(instances),
                              sum(r.info.status == "FAILED" for r in instances), kinds.get("baseline", 0), states))  # fmt: skip
    return rows


@checked
def export_losses(study: str | Study, out: str | Path, *, tracking_uri: str | None = None) -> list[dict[str, Any]]:
    """Write every instance loss of ``study`` (its name, or a Study) to the CSV ``out`` (candidate,
    instance, loss and details); returns the rows written. A study whose instances were trained
    under several settings is refused: a loss table compares like with like.

    Example: ``export_losses(study, "losses.csv")``, then ``replay_selection("losses.csv", rule="halving").selected``"""
    from robustcli.api.report import finished_instance_runs, open_study_experiment, study_and_store
    from robustcli.errors import InputError
    from robustcli.outputs import check_output_file, write_failed
    from robustcli.selection import write_loss_table
    from robustcli.tracking.mlflow_store import InstanceRecord

    study, tracking_uri = study_and_store(study, tracking_uri)
    out = out_path("out", out)
    check_output_file(out, "the output file")  # before reading the store
    store, exp_id = open_study_experiment(study, tracking_uri)
    rows: list[dict[str, Any]] = []
    for run in finished_instance_runs(store, exp_id, study):
        rec = InstanceRecord.from_run(run)
        rows.append({"candidate": rec.candidate_id, "instance": rec.index, "loss": rec.loss,
                     "fingerprint": run.data.tags.get(T.FINGERPRINT, ""), "stop_reason": rec.stop_reason,
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


def study_runs(study: str, tracking_uri: str | None = None, fingerprint: str | None = None) -> StudyRuns:
    """Every instance run of ``study``, one row each: candidate (id, name), index, seeds, settings,
    loss, status, stop reason, epochs, seconds, run id; oldest first. ``current`` marks the rows
    of ``fingerprint`` (the asking Study's settings)."""
    import json

    from robustcli.api.report import open_study_experiment
    from robustcli.tracking.mlflow_store import InstanceRecord, candidates_of_runs

    store, exp_id = open_study_experiment(study, tracking_uri)
    runs = store.find_runs(exp_id, None)
    cands = candidates_of_runs(runs)
    rows = []
    task = ""
    for run in runs:
        tags, params = run.data.tags, run.data.params
        if tags.get(T.KIND) != T.INSTANCE:
            continue
        rec = InstanceRecord.from_run(run)
        task = task or tags.get(T.TASK, "")
        settings = json.loads(tags.get(T.SETTINGS_JSON, "{}"))
        cand = cands.get(rec.candidate_id)
        rows.append({
            "candidate": rec.candidate_id,
            "name": cand.name if cand is not None else None,
            "instance": rec.index,
            "init_seed": rec.init_seed,
            "data_seed": rec.data_seed,
            "train_size": int(params["train_size"]) if params.get("train_size", "").isdigit() else params.get("train_size"),
            "test_size": params.get("test_size"),
            "vary": settings.get("vary", "both"),
            "seed": settings.get("seed"),
            "fingerprint": tags.get(T.FINGERPRINT, ""),
            "current": tags.get(T.FINGERPRINT) == fingerprint if fingerprint else None,
            "loss": rec.loss,
            "status": rec.status if run.info.status != "RUNNING" else "running",
            "stop_reason": rec.stop_reason,
            "epochs": rec.epochs,
            "seconds": rec.seconds,
            "run_id": run.info.run_id,
        })  # fmt: skip
    return StudyRuns(study, task, rows, fingerprint)
