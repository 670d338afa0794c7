"""`robust baseline`: the task's non-deep references on the same training samples as instances."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from robustcli.cli._common import (
    ConfigFile,
    JsonFlag,
    Sampling,
    Seed,
    StudyName,
    TaskName,
    TaskOptions,
    TestSize,
    TrackingUri,
    TrainSize,
    console,
    load_checked_data,
    handle_errors,
    print_json,
    training_overrides,
)


@handle_errors
def baseline(
    task: TaskName = None,
    instances: Annotated[int, typer.Option("--instances", "-n", help="Training samples to fit each baseline on.")] = 5,
    train_size: TrainSize = None,
    test_size: TestSize = None,
    sampling: Sampling = None,
    seed: Seed = None,
    study: StudyName = None,
    config: ConfigFile = None,
    tracking_uri: TrackingUri = None,
    task_option: TaskOptions = None,
    json_output: JsonFlag = False,
) -> None:
    """Fit every baseline of a task on the training samples of instances 0..N-1 (the same draws
    the networks get), print each one's test loss and its spread, and log them to MLflow, where
    `robust select --rule paper` finds the best one.

    Example: robust baseline --task calo-energy --instances 5 --train-size 2000
    """
    from robustcli.config import load_settings
    from robustcli.errors import InputError

    if instances <= 0:
        raise InputError(f"--instances must be a positive count, got {instances}")
    settings = load_settings(
        config,
        **training_overrides(
            task=task, study=study, seed=seed, train_size=train_size, test_size=test_size, sampling=sampling,
            device=None, min_epochs=None, window=None, threshold=None, stop_mode=None, max_epochs=None,
            task_options=task_option,
        ),
    )
    from robustcli.execution.session import StudySession

    session = StudySession(settings, tracking_uri)
    baselines = session.task.baselines()
    if not baselines:
        raise InputError(f"task {settings.task!r} defines no baselines")
    load_checked_data(session)
    session.store.client  # noqa: B018 - fail on an unreachable store before the work
    rows = [_run_baseline(session, name, b, instances) for name, b in baselines.items()]
    if json_output:
        print_json({"task": settings.task, "study": settings.study_name, "train_size": session.train_size, "baselines": rows})
        return
    from rich.table import Table

    table = Table(title=f"{settings.task}: baselines over {instances} training samples of {session.train_size}")
    for col in ("baseline", "mean", "std", "min", "max"):
        table.add_column(col, justify="left" if col == "baseline" else "right", no_wrap=True)
    for r in rows:
        table.add_row(r["name"], *(f"{r[k]:.5g}" for k in ("mean", "std", "min", "max")))
    console.print(table)
    for r in rows:
        console.print(f"{r['name']}: {r['description']}", soft_wrap=True)


def _run_baseline(session: Any, name: str, base: Any, instances: int) -> dict[str, Any]:
    import numpy as np
    import torch

    from robustcli.training.instance import sample_indices

    import time

    data = session.data
    losses = []
    started = int(time.time() * 1000)
    replace = session.settings.training.sampling == "bootstrap"
    from robustcli.training.instance import InstanceSpec
    from robustcli.training.seeds import derive_seeds

    for i in range(instances):
        # the study's common draws, never a candidate-mixed stream
        seeds = derive_seeds(session.settings.seed, i)
        spec = InstanceSpec(i, seeds.init_seed, seeds.data_seed, session.train_size, session.test_size)
        idx, t_idx = sample_indices(data, spec, replace)
        tx, ty = (data.test_x, data.test_y) if t_idx is None else (data.test_x[t_idx], data.test_y[t_idx])
        with torch.no_grad():
            pred = base.fit_predict(data.pool_x[idx], data.pool_y[idx], tx, seed=spec.init_seed)
            losses.append(float(session.task.test_loss(torch.as_tensor(pred).reshape(ty.shape), ty)))
    a = np.asarray(losses)
    row = {
        "name": name,
        "description": base.description,
        "losses": losses,
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if a.size > 1 else math.nan,
        "min": float(a.min()),
        "max": float(a.max()),
        "median": float(np.median(a)),
    }
    _log(session, row, started)
    return row


def _log(session: Any, row: dict[str, Any], started: int) -> None:
    """A baseline's run: its losses per instance and, under the names a candidate's run uses
    (mean, std...), its statistics, so that `mlflow ui` sorts baselines among the candidates."""
    import time

    from mlflow.entities import Metric, RunTag

    client = session.store.client
    exp_id = session.experiment()
    now = int(time.time() * 1000)
    run = client.create_run(exp_id, run_name=f"baseline/{row['name']}", start_time=started,
                            tags=session.store.context_tags)
    metrics = [Metric("test_loss", v, now, i) for i, v in enumerate(row["losses"])]
    stats = {k: row[k] for k in ("mean", "std", "min", "max", "median")}
    metrics += [Metric(f"loss_{k}", v, now, 0) for k, v in stats.items() if k != "median" and math.isfinite(v)]
    metrics += [Metric(k, v, now, len(row["losses"])) for k, v in stats.items() if math.isfinite(v)]
    metrics.append(Metric("instances", float(len(row["losses"])), now, len(row["losses"])))
    tags = {
        "robust.kind": "baseline",
        "robust.baseline": row["name"],
        "robust.task": str(session.settings.task),
        "robust.data_fingerprint": session.settings.data_fingerprint(),
        "robust.instances": str(len(row["losses"])),
    }
    client.log_batch(run.info.run_id, metrics=metrics, tags=[RunTag(k, v) for k, v in tags.items()])
    client.set_terminated(run.info.run_id, "FINISHED", end_time=now)
