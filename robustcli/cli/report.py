"""`robust report`: a study's figure, read back from MLflow."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Annotated, Any

import typer

from robustcli.cli._common import JsonFlag, TrackingUri, console, handle_errors, print_json


@handle_errors
def report(
    study: Annotated[str, typer.Option("--study", help="Study (experiment) name.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="FILE.html (a page with the figure and tables, also logged to MLflow) or "
                     "FILE.png (the figure alone). Default: STUDY.html.", show_default=False),
    ] = None,
    top: Annotated[int, typer.Option("--top", help="Candidates shown, best mean first.")] = 12,
    tracking_uri: TrackingUri = None,
    json_output: JsonFlag = False,
) -> None:
    """Report a study: loss box plots of its best candidates, the selection's path, the
    loss-versus-epoch curves of the best candidate's instances, and each top candidate's
    systematic-uncertainty summary, as an offline HTML page (or a PNG).

    Example: robust report --study calo-energy --out energy.html
    """
    from robustcli.errors import InputError, UnknownNameError
    from robustcli.reporting.plots import study_figure
    from robustcli.tracking.mlflow_store import InstanceRecord, MlflowStore, resolve_tracking_uri

    if top < 1:
        raise InputError(f"--top must be at least 1, got {top}")
    if out is not None and out.suffix.lower() not in (".html", ".png"):
        raise InputError(f"--out {out}: write a .html page or a .png figure")
    store = MlflowStore(resolve_tracking_uri(tracking_uri))
    exp_id = store.find_experiment(study)
    if exp_id is None:
        raise UnknownNameError("study", study, [e.name for e in store.list_experiments() if "robust.task" in e.tags], "--study")
    runs = [r for r in store.search(exp_id, "tags.`robust.kind` = 'instance'") if r.info.status in ("FINISHED", "FAILED")]
    if not runs:
        raise InputError(f"study {study!r} holds no finished instances yet")
    # one figure compares like with like: the settings (fingerprint) with the most instances,
    # among the studies where both seeds vary (the --vary init/data ones feed the decomposition)
    varied = [r for r in runs if _vary(r) == "both"] or runs
    fingerprint, _ = Counter(r.data.tags["robust.fingerprint"] for r in varied).most_common(1)[0]
    by_cand: dict[str, list[Any]] = defaultdict(list)
    seen: set[tuple[str, str]] = set()
    for run in sorted(runs, key=lambda r: r.info.start_time):
        key = (run.data.tags["robust.candidate_id"], run.data.tags["robust.instance_index"])
        if run.data.tags["robust.fingerprint"] == fingerprint and key not in seen:
            seen.add(key)  # an instance logged twice (two racing processes) counts once: the first
            by_cand[key[0]].append(run)

    loss_of = {r.info.run_id: InstanceRecord.from_run(r) for rs in by_cand.values() for r in rs}

    def mean_loss(cid: str) -> float:
        finite = [x for x in (loss_of[r.info.run_id].loss for r in by_cand[cid]) if math.isfinite(x)]
        return sum(finite) / len(finite) if finite and len(finite) == len(by_cand[cid]) else math.inf

    ranked = sorted(by_cand, key=lambda c: (-len(by_cand[c]), mean_loss(c), c))[:top]
    ranked.sort(key=lambda c: (mean_loss(c), c))
    losses = {
        c: [loss_of[r.info.run_id].loss for r in sorted(by_cand[c], key=lambda r: loss_of[r.info.run_id].index)]
        for c in ranked
    }
    best = ranked[0]
    curves = [
        [m.value for m in sorted(store.client.get_metric_history(r.info.run_id, "epoch_test_loss"), key=lambda m: m.step)]
        for r in by_cand[best][:50]
    ]
    selections = store.search(exp_id, "tags.`robust.kind` = 'selection'")
    path = leader = None
    if selections:
        run_id = selections[0].info.run_id
        hist = store.client.get_metric_history(run_id, "survivors")
        path = [int(m.value) for m in sorted(hist, key=lambda m: m.step)] or None
        lead = store.client.get_metric_history(run_id, "best_criterion")
        leader = [m.value for m in sorted(lead, key=lambda m: m.step)] or None
    baselines = store.search(exp_id, "tags.`robust.kind` = 'baseline'")
    base = min((b.data.metrics["loss_mean"] for b in baselines if "loss_mean" in b.data.metrics), default=None)
    task = runs[0].data.tags.get("robust.task", "")
    out = out or Path(f"{study}.html")
    png = out if out.suffix.lower() == ".png" else out.with_suffix(".png")
    main_run = next(r for rs in by_cand.values() for r in rs)
    label = _labeller(store, exp_id, task, main_run)
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
    seed = int(json.loads(main_run.data.tags.get("robust.settings_json", "{}")).get("seed", 0))  # the fingerprint's
    summary = _summaries(ranked[:5], losses, runs[0].data.tags.get("robust.loss_name", "loss"), seed)
    decomposition = _decomposition(ranked[:5], losses, runs, main_run)
    for row in (*summary, *decomposition):
        row["description"] = label(row["candidate"])
    from robustcli.reporting.studies import add_study_sections, study_sections

    studies = study_sections(store, exp_id)  # robust study sample-size / variance: a section each
    from robustcli.studies.nas import logged_searches

    searches = logged_searches(store, exp_id)
    if out.suffix.lower() == ".html":
        from robustcli.reporting.html import study_page

        out.write_text(add_study_sections(
            study_page(
                title=f"{study} ({task})",
                png=png.read_bytes(),
                summary=summary,
                baselines={b.data.tags.get("robust.baseline", "?"): b.data.metrics for b in baselines},
                selection=selections[0].data.tags if selections else None,
                selected=label(selections[0].data.tags["robust.selected"])
                if selections and "robust.selected" in selections[0].data.tags else None,
                survivors_per_step=path,
                fingerprint=fingerprint,
                decomposition=decomposition,
                searches=searches,
            ), studies,
        ))
        png.unlink()
        if selections:  # the page belongs with the study's own run
            store.client.log_artifact(selections[0].info.run_id, str(out))
    if json_output:
        print_json(
            {"study": study, "out": str(out), "candidates": ranked, "fingerprint": fingerprint, "summary": summary,
             "decomposition": decomposition,
             "studies": [{k: v for k, v in st.items() if k != "png"} for st in studies],
             "nas": [{k: v for k, v in s.items() if k != "png"} for s in searches]}
        )  # fmt: skip
        return
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
            table.add_row(f"{row['description']} ({row['candidate']})", *(_std_cell(row[k]) for k in ("both", "init", "data")))
        console.print(table)
    for st in studies:
        console.print("\n".join(st["lines"]), highlight=False)
    console.print(f"wrote {out}")


def _labeller(store: Any, exp_id: str, task: str, main_run: Any) -> Any:
    """candidate id -> its readable description (name, or the task's description of its logged
    parameters; the id where the store holds no parent run for it)."""
    from robustcli.cli._common import candidates_of_runs
    from robustcli.plugins import task_or_none
    from robustcli.task import readable_name

    cands = candidates_of_runs(store.search(exp_id, "tags.`robust.kind` = 'candidate'"))
    options = json.loads(main_run.data.tags.get("robust.settings_json", "{}")).get("task_options") or {}
    described = task_or_none(task, options) if cands else None
    return lambda cid: readable_name(described, cands[cid]) if cid in cands else cid


def _summaries(cands: list[str], losses: dict[str, list[float]], loss_name: str, seed: int = 0) -> list[dict[str, Any]]:
    """Per candidate, the summary every command shows (its study's ``seed`` draws the intervals)."""
    from robustcli.robustness import summarize_instances

    rows = []
    for cid in cands:
        summary = summarize_instances(losses[cid], seed=seed)
        s, finished = summary.statistics, summary.instances - summary.failed
        mean, std = s["mean"], s["std"].value
        ci = "" if math.isnan(mean.low) else f" [{mean.low:.4g}, {mean.high:.4g}]"
        rows.append(
            {
                "candidate": cid,
                **summary.as_dict(),
                "mean": mean.value,
                "mean_ci": f"{mean.value:.4g}{ci}",
                "std": std,
                "q90_q10": s["q90_q10"].value,
                # the line a physicist quotes: the instance-to-instance spread as a training systematic
                "quote": (
                    f"{loss_name} = {mean.value:.4g} +- {std:.2g} (training syst., {finished} instances)"
                    if finished > 1
                    else f"{loss_name} = {mean.value:.4g} ({finished} finished instance: no spread yet)"
                ),
            }
        )
    return rows


def _vary(run: Any) -> str:
    """What varied between the instances of the run's study (``vary`` in its settings; both if absent)."""
    return json.loads(run.data.tags.get("robust.settings_json", "{}")).get("vary", "both")


def _decomposition(
    cands: list[str], losses: dict[str, list[float]], runs: list[Any], main_run: Any
) -> list[dict[str, Any]]:
    """Per candidate, the spread of its loss with both seeds varying (the report's study), with only
    the initialisation varying and with only the training sample varying (``robust assess --vary``
    under otherwise equal settings); only candidates that have at least one of the latter two."""
    import statistics

    from robustcli.config import StudySettings

    settings = StudySettings.model_validate(json.loads(main_run.data.tags["robust.settings_json"]))
    prints = {v: settings.model_copy(update={"vary": v}).fingerprint() for v in ("init", "data")}
    found: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for run in sorted(runs, key=lambda r: r.info.start_time):
        tags = run.data.tags
        for v, fp in prints.items():
            if tags.get("robust.fingerprint") == fp and run.info.status == "FINISHED":
                found[(tags["robust.candidate_id"], v)].setdefault(tags["robust.instance_index"], run.data.metrics.get("test_loss", math.nan))

    def spread(values: list[float]) -> dict[str, Any]:
        finite = [x for x in values if math.isfinite(x)]
        return {"instances": len(finite), "std": statistics.stdev(finite) if len(finite) > 1 else None}

    rows = []
    for cid in cands:
        if not any((cid, v) in found for v in prints):
            continue
        row: dict[str, Any] = {"candidate": cid, "both": spread(losses[cid])}
        for v in prints:
            row[v] = spread(list(found.get((cid, v), {}).values()))
        rows.append(row)
    return rows


def _std_cell(cell: dict[str, Any]) -> str:
    return "-" if cell["std"] is None else f"{cell['std']:.3g} ({cell['instances']})"
