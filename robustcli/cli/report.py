"""`robust report`: a study's figure, read back from MLflow."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Annotated, Any

import typer

from robustcli.cli._common import JsonFlag, TrackingUri, console, handle_errors, print_json


@handle_errors
def report(
    study: Annotated[str, typer.Option("--study", help="Study (experiment) name.")],
    out: Annotated[Path | None, typer.Option("--out", help="PNG to write. Default: STUDY.png.", show_default=False)] = None,
    top: Annotated[int, typer.Option("--top", help="Candidates shown, best mean first.")] = 12,
    tracking_uri: TrackingUri = None,
    json_output: JsonFlag = False,
) -> None:
    """Draw a study: loss box plots of its best candidates, the selection's path, and the
    loss-versus-epoch curves of the best candidate's instances.

    Example: robust report --study calo-energy --out energy.png
    """
    from robustcli.errors import InputError, UnknownNameError
    from robustcli.reporting.plots import study_figure
    from robustcli.tracking.mlflow_store import MlflowStore, _record, resolve_tracking_uri

    store = MlflowStore(resolve_tracking_uri(tracking_uri))
    exp_id = store.find_experiment(study)
    if exp_id is None:
        raise UnknownNameError("study", study, [e.name for e in store.list_experiments() if "robust.task" in e.tags], "--study")
    runs = [r for r in store.search(exp_id, "tags.`robust.kind` = 'instance'") if r.info.status in ("FINISHED", "FAILED")]
    if not runs:
        raise InputError(f"study {study!r} holds no finished instances yet")
    # one figure compares like with like: the settings (fingerprint) with the most instances
    fingerprint, _ = Counter(r.data.tags["robust.fingerprint"] for r in runs).most_common(1)[0]
    by_cand: dict[str, list[Any]] = defaultdict(list)
    for run in runs:
        if run.data.tags["robust.fingerprint"] == fingerprint:
            by_cand[run.data.tags["robust.candidate_id"]].append(run)

    def mean_loss(cid: str) -> float:
        finite = [_record(r).loss for r in by_cand[cid] if math.isfinite(_record(r).loss)]
        return sum(finite) / len(finite) if finite and len(finite) == len(by_cand[cid]) else math.inf

    ranked = sorted(by_cand, key=lambda c: (-len(by_cand[c]), mean_loss(c), c))[:top]
    ranked.sort(key=lambda c: (mean_loss(c), c))
    losses = {c: [_record(r).loss for r in sorted(by_cand[c], key=lambda r: _record(r).index)] for c in ranked}
    best = ranked[0]
    curves = [
        [m.value for m in sorted(store.client.get_metric_history(r.info.run_id, "epoch_test_loss"), key=lambda m: m.step)]
        for r in by_cand[best][:50]
    ]
    selections = store.search(exp_id, "tags.`robust.kind` = 'selection'")
    path = None
    if selections:
        hist = store.client.get_metric_history(selections[0].info.run_id, "survivors")
        path = [int(m.value) for m in sorted(hist, key=lambda m: m.step)] or None
    baselines = store.search(exp_id, "tags.`robust.kind` = 'baseline'")
    base = min((b.data.metrics["loss_mean"] for b in baselines if "loss_mean" in b.data.metrics), default=None)
    task = runs[0].data.tags.get("robust.task", "")
    out = out or Path(f"{study}.png")
    study_figure(
        out,
        title=f"{study} ({task}), settings {fingerprint}",
        losses=losses,
        survivors_per_step=path,
        curves=curves,
        curves_label=best,
        baseline=base,
    )
    if json_output:
        print_json({"study": study, "out": str(out), "candidates": ranked, "fingerprint": fingerprint})
    else:
        console.print(f"wrote {out}")
