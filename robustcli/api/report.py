"""A study read back from MLflow: its best candidates' losses and summaries, the selection's path,
where the spread comes from, the analyses' sections; drawn as an offline HTML page (or a PNG)."""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustcli.api._args import checked, count, out_path, text
from robustcli.api.results import CandidateSummary, StudyReport
from robustcli.errors import InputError, UnknownNameError
from robustcli.tracking import tags as T

if TYPE_CHECKING:
    from robustcli.api.progress import Progress
    from robustcli.robustness.decomposition import SpreadBySource

__all__ = ["artifact_bars", "build_report", "finished_instance_runs", "open_study_experiment", "study_and_store"]


def study_and_store(study: Any, tracking_uri: str | None) -> tuple[str, str | None]:
    """A study given by name or as a Study: its name, and its store unless one is given."""
    from robustcli.api._handle import StudyHandle

    if isinstance(study, StudyHandle):
        return study.name, tracking_uri or study.tracking_uri
    return text("study", study, none=False), text("tracking_uri", tracking_uri)


def open_study_experiment(study: str, tracking_uri: str | None = None) -> tuple[Any, str]:
    """The store and the experiment id of ``study`` (refused in one line, with the known studies, if absent)."""
    from robustcli.tracking.mlflow_store import MlflowStore, resolve_tracking_uri

    store = MlflowStore(resolve_tracking_uri(tracking_uri))
    exp_id = store.find_experiment(study)
    if exp_id is None:
        raise UnknownNameError("study", study, [e.name for e in store.list_experiments() if T.TASK in e.tags], "--study")
    return store, exp_id


def finished_instance_runs(store: Any, exp_id: str, study: str) -> list[Any]:
    """The study's instance runs that ended (finished or failed); refused if there are none."""
    runs = [r for r in store.find_runs(exp_id, T.INSTANCE) if r.info.status in ("FINISHED", "FAILED")]
    if not runs:
        raise InputError(f"study {study!r} holds no finished instances yet")
    return runs


@contextlib.contextmanager
def artifact_bars(shown: bool) -> Iterator[None]:
    """MLflow's "Downloading artifacts" bars only where progress is shown: off inside this block
    otherwise (MLflow reads the variable at each download)."""
    if shown:
        yield
        return
    before = os.environ.get(_BARS)
    os.environ[_BARS] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(_BARS, None)
        else:
            os.environ[_BARS] = before


_BARS = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


@checked
def build_report(study: str | Any, out: str | Path | None = None, *, top: int = 12, tracking_uri: str | None = None,
                 progress: bool | Progress = False) -> StudyReport:  # fmt: skip
    """Read ``study`` (its name, or a :class:`~robustcli.api.Study`) back from MLflow and write its
    report to ``out`` (``STUDY.html`` by default; a ``.png`` writes the figure alone). The page is
    also logged to the study's selection run. MLflow's download bars show only with ``progress``.

    Example: ``build_report(study, out="report.html").summary[0].quote()``"""
    from robustcli.api.progress import Silent, progress_of
    from robustcli.outputs import check_output_file

    study, tracking_uri = study_and_store(study, tracking_uri)
    count("top", top)
    out = out_path("out", out, (".html", ".png")) or Path(f"{study}.html")
    check_output_file(out)  # before reading the store: a report that cannot be written is refused first
    with artifact_bars(not isinstance(progress_of(progress), Silent)):
        return _build_report(study, out, top, tracking_uri)


def _build_report(study: str, out: Path, top: int, tracking_uri: str | None) -> StudyReport:
    from robustcli.outputs import write_failed
    from robustcli.reporting.plots import study_figure
    from robustcli.tracking.mlflow_store import InstanceRecord

    store, exp_id = open_study_experiment(study, tracking_uri)
    runs = finished_instance_runs(store, exp_id, study)
    # one figure compares like with like: the settings (fingerprint) with the most instances,
    # among the settings where both seeds vary (the --vary init/data ones feed the decomposition)
    varied = [r for r in runs if _vary(r) == "both"] or runs
    fingerprint, _ = Counter(r.data.tags[T.FINGERPRINT] for r in varied).most_common(1)[0]
    by_cand: dict[str, list[Any]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for run in sorted(runs, key=lambda r: r.info.start_time):
        key = (run.data.tags[T.CANDIDATE_ID], run.data.tags[T.INSTANCE_INDEX])
        if run.data.tags[T.FINGERPRINT] == fingerprint and key not in seen:
            seen.add(key)  # an instance logged twice (two racing processes) counts once: the first
            by_cand[key[0]].append(run)
    record = {r.info.run_id: InstanceRecord.from_run(r) for rs in by_cand.values() for r in rs}

    def mean_loss(cid: str) -> float:
        finite = [x for x in (record[r.info.run_id].loss for r in by_cand[cid]) if math.isfinite(x)]
        return sum(finite) / len(finite) if finite and len(finite) == len(by_cand[cid]) else math.inf

    ranked = sorted(by_cand, key=lambda c: (-len(by_cand[c]), mean_loss(c), c))[:top]
    ranked.sort(key=lambda c: (mean_loss(c), c))
    losses = {c: [record[r.info.run_id].loss for r in sorted(by_cand[c], key=lambda r: record[r.info.run_id].index)]
              for c in ranked}  # fmt: skip
    best = ranked[0]
    curves = [_history(store, r.info.run_id, "epoch_test_loss") for r in by_cand[best][:50]]
    selections = store.find_runs(exp_id, T.SELECTION)
    path = leader = None
    if selections:
        path = [int(v) for v in _history(store, selections[0].info.run_id, "survivors")] or None
        leader = _history(store, selections[0].info.run_id, "best_criterion") or None
    confidence = _selection_confidence(selections[0].data.tags) if selections else None
    baselines = store.find_runs(exp_id, T.BASELINE)
    base = min((b.data.metrics["loss_mean"] for b in baselines if "loss_mean" in b.data.metrics), default=None)
    task = runs[0].data.tags.get(T.TASK, "")
    png = out if out.suffix.lower() == ".png" else out.with_suffix(".png")
    main_run = next(r for rs in by_cand.values() for r in rs)
    label, logged = _labeller(store, exp_id, task, main_run)
    try:
        study_figure(
            png,
            title=f"{study} ({task}), settings {fingerprint}",
            losses=losses,
            survivors_per_step=path,
            best_per_step=leader,
            curves=curves,
            curves_label=f"{label(best)}\n({best})",
            baseline=base,
            labels={c: f"{label(c)}\n({c})" for c in losses},
        )
    except OSError as exc:  # checked before, yet the disk may fill meanwhile
        raise write_failed(png, exc) from None
    seed = int(json.loads(main_run.data.tags.get(T.SETTINGS_JSON, "{}")).get("seed", 0))  # the fingerprint's
    loss_name = runs[0].data.tags.get(T.LOSS_NAME, "loss")
    # as everywhere: the name (None for an unnamed candidate) beside the description of its parameters
    describe = _labeller(store, exp_id, task, main_run, params=True)[0] if any(c.name for c in logged.values()) else label
    summary = [_summary(c, logged[c].name if c in logged else None, describe(c), losses[c], loss_name, seed) for c in ranked[:5]]
    decomposition = [replace(row, description=label(row.candidate)) for row in _decomposition(ranked[:5], losses, runs, main_run)]
    from robustcli.reporting.analyses import add_analysis_sections, analysis_sections
    from robustcli.tracking.nas_runs import logged_searches

    analyses = analysis_sections(store, exp_id)  # robust study sample-size / variance: a section each
    searches = logged_searches(store, exp_id)
    if out.suffix.lower() == ".html":
        from robustcli.reporting.html import study_page

        page = study_page(
            title=f"{study} ({task})",
            png=png.read_bytes(),
            summary=[{**s.as_dict(), **s.headline(), "description": s.name or s.description} for s in summary],
            baselines={b.data.tags.get(T.BASELINE_NAME, "?"): b.data.metrics for b in baselines},
            selection=selections[0].data.tags if selections else None,
            selected=label(selections[0].data.tags[T.SELECTED])
            if selections and T.SELECTED in selections[0].data.tags else None,
            survivors_per_step=path,
            fingerprint=fingerprint,
            decomposition=decomposition,
            searches=searches,
            confidence=confidence,
            label=label,
        )
        try:
            out.write_text(add_analysis_sections(page, analyses))
        except OSError as exc:
            raise write_failed(out, exc) from None
        finally:
            png.unlink(missing_ok=True)
        if selections:  # the page belongs with the study's own run
            store.log_artifact(selections[0].info.run_id, out)
    return StudyReport(study, task, str(out), ranked, fingerprint, summary, decomposition, analyses, searches,
                       selection_confidence=confidence)


def _selection_confidence(tags: Mapping[str, str]) -> dict[str, Any] | None:
    """The pick's confidence the selection run holds (``robust.confidence``), or None (an older
    or unfinished selection)."""
    text = tags.get(T.CONFIDENCE)
    if not text:
        return None
    try:
        payload = json.loads(text)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _history(store: Any, run_id: str, metric: str) -> list[float]:
    return [m.value for m in sorted(store.metric_history(run_id, metric), key=lambda m: m.step)]


def _summary(cid: str, name: str | None, description: str, losses: list[float], loss_name: str, seed: int) -> CandidateSummary:
    from robustcli.robustness import summarize_instances

    return CandidateSummary(cid, name, description, summarize_instances(losses, seed=seed), losses, loss_name)


def _labeller(store: Any, exp_id: str, task: str, main_run: Any, params: bool = False) -> tuple[Any, dict[str, Any]]:
    """candidate id -> its readable description (name, or the task's description of its logged
    parameters; the id where the store holds no parent run for it; ``params``: never the name);
    and the logged candidates."""
    from robustcli.plugins import task_or_none
    from robustcli.task import candidate_label

    cands = store.logged_candidates(exp_id)
    options = json.loads(main_run.data.tags.get(T.SETTINGS_JSON, "{}")).get("task_options") or {}
    described = task_or_none(task, options) if cands else None
    label = lambda cid: candidate_label(described, cands[cid], with_id=False, use_name=not params) if cid in cands else cid  # noqa: E731
    return label, cands


def _vary(run: Any) -> str:
    """What varied between the instances of the run's study (``vary`` in its settings; both if absent)."""
    return json.loads(run.data.tags.get(T.SETTINGS_JSON, "{}")).get("vary", "both")


def _decomposition(cands: list[str], losses: dict[str, list[float]], runs: list[Any], main_run: Any) -> list[SpreadBySource]:
    """Per candidate, the spread of its loss with both seeds varying (the report's study), with only
    the initialisation varying and with only the training sample varying (``robust assess --vary``
    under otherwise equal settings); only candidates that have at least one of the latter two."""
    from robustcli.config import StudySettings
    from robustcli.robustness.decomposition import Spread, SpreadBySource

    settings = StudySettings.model_validate(json.loads(main_run.data.tags[T.SETTINGS_JSON]))
    prints = {v: settings.model_copy(update={"vary": v}).fingerprint() for v in ("init", "data")}
    found: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for run in sorted(runs, key=lambda r: r.info.start_time):
        tags = run.data.tags
        for v, fp in prints.items():
            if tags.get(T.FINGERPRINT) == fp and run.info.status == "FINISHED":
                found[(tags[T.CANDIDATE_ID], v)].setdefault(tags[T.INSTANCE_INDEX], run.data.metrics.get("test_loss", math.nan))

    rows = []
    for cid in cands:
        if not any((cid, v) in found for v in prints):
            continue
        init, data = (Spread.of(list(found.get((cid, v), {}).values())) for v in ("init", "data"))
        rows.append(SpreadBySource(cid, Spread.of(losses[cid]), init, data))
    return rows
