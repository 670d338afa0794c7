"""A task's baselines fitted on the training samples of a study's instances, and logged to MLflow.

Baseline j is fitted on the training sample of instance j (the study's common draws, never a
candidate-mixed stream) and scored on that instance's test sample, so networks and baselines are
compared on the same data. Each fit of N samples is one run (tag ``robust.kind = "baseline"``)
keyed by the settings that decide the samples (``robust.data_fingerprint``); a later study that
needs at most N of them reads them back instead of fitting again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robustcli.session import StudySession

__all__ = ["BaselineFit", "baseline_losses", "baseline_row", "baseline_scores", "fit_baseline", "logged_baseline_losses"]


@dataclass(frozen=True)
class BaselineFit:
    """A baseline's test losses on the samples of instances 0..N-1, and their statistics."""

    name: str
    description: str
    losses: list[float]
    mean: float
    std: float  # NaN for one sample
    min: float
    max: float
    median: float
    #: fitted by this call (False: read back from MLflow)
    fitted_now: bool = False


def baseline_scores(name: str, pred: Any, y: Any) -> Any:
    """A baseline's predictions as the task's ``test_loss`` takes a model's output: float32 and
    shaped like the model's output. For regression that is ``y``'s shape (a prediction of as
    many values, ``(n,)`` for a ``(n, 1)`` ``y``, is reshaped to it); for classification it is
    ``(n, n_classes)`` scores (what the model returns: logits, or log-probabilities if that is
    what ``test_loss`` takes), one row per example, kept as they are. Anything else is refused
    naming the baseline and both shapes."""
    import torch

    from robustcli.errors import TrainingError

    pred = torch.as_tensor(pred)
    if not pred.is_floating_point():
        pred = pred.float()
    n = y.shape[0]
    if pred.numel() == y.numel() and (y.is_floating_point() or pred.ndim <= 1):
        return pred.reshape(y.shape)
    if not y.is_floating_point() and pred.ndim == 2 and pred.shape[0] == n:
        return pred  # class scores for integer labels
    raise TrainingError(
        f"baseline {name!r} returned predictions of shape {tuple(pred.shape)} for {n} test examples (y of shape "
        f"{tuple(y.shape)}): return values shaped like y for regression, or (n, n_classes) scores for classification"
    )


def fit_baseline(session: StudySession, name: str, base: Any, instances: int) -> BaselineFit:
    """Fit ``base`` on the training samples of instances 0..N-1, log the run, return its row."""
    import torch

    from robustcli.training.instance import InstanceSpec, sample_indices
    from robustcli.training.seeds import derive_seeds

    data = session.data
    losses = []
    started = int(time.time() * 1000)
    replace = session.settings.training.sampling == "bootstrap"
    for i in range(instances):
        seeds = derive_seeds(session.settings.seed, i)
        spec = InstanceSpec(i, seeds.init_seed, seeds.data_seed, session.train_size, session.test_size)
        idx, t_idx = sample_indices(data, spec, replace)
        tx, ty = (data.test_x, data.test_y) if t_idx is None else (data.test_x[t_idx], data.test_y[t_idx])
        # fitted with autograd on (a baseline may fit by gradient descent), scored without it
        pred = base.fit_predict(data.pool_x[idx], data.pool_y[idx], tx, seed=spec.init_seed)
        with torch.no_grad():
            losses.append(float(session.task.test_loss(baseline_scores(name, pred.detach() if hasattr(pred, "detach") else pred, ty), ty)))
    row = _row(name, base, losses, fitted_now=True)
    _log(session, row, started)
    return row


def _row(name: str, base: Any, losses: list[float], fitted_now: bool) -> BaselineFit:
    import numpy as np

    a = np.asarray(losses)
    return BaselineFit(
        name=name,
        description=base.description,
        losses=losses,
        mean=float(a.mean()),
        std=float(a.std(ddof=1)) if a.size > 1 else math.nan,
        min=float(a.min()),
        max=float(a.max()),
        median=float(np.median(a)),
        fitted_now=fitted_now,
    )


def baseline_row(session: StudySession, name: str, base: Any, instances: int) -> BaselineFit:
    """Baseline ``name`` on instances 0..N-1 as :func:`fit_baseline` returns it, read back when a
    run under the session's data settings holds them (as ``assess`` reads instances back), with
    ``fitted_now`` saying which."""
    losses, fitted_now = baseline_losses(session, name, base, instances)  # under its lock: fitted once
    return _row(name, base, losses, fitted_now=fitted_now)


def logged_baseline_losses(session: StudySession, name: str, instances: int) -> list[float] | None:
    """The losses of the first ``instances`` samples of baseline ``name`` under the session's data
    settings, from a run that holds at least that many; None if none does."""
    from robustcli.tracking import tags as T

    exp_id = session.existing_experiment()
    if exp_id is None:
        return None
    runs = session.store.find_runs(
        exp_id, T.BASELINE, {T.BASELINE_NAME: name, T.DATA_FINGERPRINT: session.settings.data_fingerprint()}
    )
    for run in runs:
        if run.info.status != "FINISHED" or int(run.data.tags.get(T.INSTANCES, 0)) < instances:
            continue
        history = session.store.metric_history(run.info.run_id, "test_loss")
        by_step = {m.step: m.value for m in history}
        if all(i in by_step for i in range(instances)):
            return [by_step[i] for i in range(instances)]
    return None


def baseline_losses(session: StudySession, name: str, base: Any, instances: int) -> tuple[list[float], bool]:
    """The losses of baseline ``name`` on instances 0..N-1: read back if logged, else fitted and
    logged. Returns the losses and whether they were fitted now."""
    logged = logged_baseline_losses(session, name, instances)
    if logged is not None:
        return logged, False
    # claimed as instances are (a lock the kernel drops with its process): two studies at once on
    # one store fit it once, the second waits and reads the first's run
    locks = session.store.locks
    key = f"baseline:{session.settings.study_name}:{session.settings.data_fingerprint()}:{name}"
    locks.lock(key)
    try:
        logged = logged_baseline_losses(session, name, instances)
        if logged is not None:
            return logged, False
        return fit_baseline(session, name, base, instances).losses, True
    finally:
        locks.unlock(key)


def _log(session: StudySession, row: BaselineFit, started: int) -> None:
    """A baseline's run: its losses per instance and, under the names a candidate's run uses
    (mean, std...), its statistics, so that `mlflow ui` sorts baselines among the candidates.
    Written whole through the store's journal: a kill while it is written loses no fit."""
    from robustcli.tracking import tags as T

    now = int(time.time() * 1000)
    n = len(row.losses)
    metrics = [("test_loss", v, now, i) for i, v in enumerate(row.losses)]
    stats = {k: getattr(row, k) for k in ("mean", "std", "min", "max", "median")}
    metrics += [(f"loss_{k}", v, now, 0) for k, v in stats.items() if k != "median" and math.isfinite(v)]
    metrics += [(k, v, now, n) for k, v in stats.items() if math.isfinite(v)]
    metrics.append(("instances", float(n), now, n))
    tags = {
        T.KIND: T.BASELINE,
        T.BASELINE_NAME: row.name,
        T.TASK: str(session.settings.task),
        T.DATA_FINGERPRINT: session.settings.data_fingerprint(),
        T.INSTANCES: str(n),
    }
    session.store.write_journaled(session.experiment(), f"baseline/{row.name} {session.settings_label()}", tags,
                                  metrics=metrics, start=started, end=now)
