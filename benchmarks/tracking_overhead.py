"""Tracking overhead: the share of a quick study's wall time the coordinator spends logging to MLflow.

Target: under 5 %. A real study (`StudySession` on the built-in `synthetic` task, the default
in-process stacked executor, exactly 75 epochs per instance, so 150 epoch metrics per run) is
trained three times in this process, each into its own fresh sqlite MLflow store in a temporary
folder:

* ``none``: nothing written (the store's writes stubbed out): the training alone;
* ``naive``: the way runs were written before (a verbatim copy below: create_run, log_batch of
  params + tags, log_batch of metrics, set_terminated, synchronously through MlflowClient);
* ``client3``: the store's synchronous way (``ROBUST_TRACKING_WRITE=sync``, what a server store
  gets): MlflowClient in three calls per run (create_run with the tags, one log_batch, set_terminated);
* ``rows-sync``: the store's rows, one transaction per run, but synchronously (flushed after each);
* ``current``: the store as it is (rows in one transaction per batch, from a background thread,
  journaled first; see robustcli/tracking/writer.py).

For each: wall time of ``session.train``, the time the coordinating process spent inside the
store's write calls or waiting on them (log_instance, candidate_run, flush, creating the
experiment), per instance; for ``current`` also what the writer thread did (wall and CPU, which
competes with training for the cores). The logging share is coordinator time / wall time; the
``wall - none`` difference is printed too (noisy: same-run timings only). Last line:
``ratio=<share of current>``.

Run: .venv/bin/python benchmarks/tracking_overhead.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EPOCHS = 75  # train_loss + epoch_test_loss per epoch: 150 epoch metrics per run
MODES = ("none", "naive", "client3", "rows-sync", "current")


# -- the old way, verbatim (robustcli/tracking/mlflow_store.py before the background writer) ------
def naive_candidate_run(store, exp_id, task, candidate):
    found = store.search(exp_id, f"tags.`robust.kind` = 'candidate' and tags.`robust.candidate_id` = '{candidate.id}'")
    if found:
        return found[0].info.run_id
    from mlflow.entities import Param

    tags = {
        "robust.kind": "candidate",
        "robust.task": task,
        "robust.candidate_id": candidate.id,
        "robust.candidate_json": candidate.to_json(),
        "mlflow.runName": candidate.name or candidate.id,
    }
    if candidate.name:
        tags["robust.candidate_name"] = candidate.name
    run = store.client.create_run(exp_id, tags=tags, run_name=candidate.name or candidate.id)
    params = [Param(k, str(v)[:6000]) for k, v in sorted(candidate.params.items())]
    store.client.log_batch(run.info.run_id, params=params)
    store.client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def naive_log_instance(store, exp_id, parent_run_id, *, candidate, result, fingerprint, settings_json, provenance,
                       extra_tags=None):
    from mlflow.entities import Metric, Param, RunTag

    spec = result.spec
    name = f"{candidate.name or candidate.id}/{spec.index}"
    tags = {
        "mlflow.parentRunId": parent_run_id,
        "robust.kind": "instance",
        "robust.candidate_id": candidate.id,
        "robust.instance_index": str(spec.index),
        "robust.fingerprint": fingerprint,
        "robust.status": result.status,
        "robust.stop_reason": result.stop_reason,
        "robust.spiked": str(bool(result.spiked)).lower(),
        "robust.engine": result.engine,
        "robust.stack": ",".join(map(str, result.stack)),
        "robust.settings_json": settings_json,
        "robust.candidate_json": candidate.to_json(),
        **provenance,
        **(extra_tags or {}),
    }
    if result.failure:
        tags["robust.failure"] = result.failure[:5000]
    run = store.client.create_run(exp_id, tags={"mlflow.parentRunId": parent_run_id}, run_name=name)
    run_id = run.info.run_id
    try:
        params = [
            Param("init_seed", str(spec.init_seed)),
            Param("data_seed", str(spec.data_seed)),
            Param("train_size", str(spec.train_size)),
            Param("test_size", str(spec.test_size) if spec.test_size else "all"),
            Param("instance_index", str(spec.index)),
        ]
        ts = int(time.time() * 1000)
        metrics = [Metric("train_loss", v, ts, i + 1) for i, v in enumerate(result.train_curve) if math.isfinite(v)] + [
            Metric("epoch_test_loss", v, ts, i + 1) for i, v in enumerate(result.test_curve) if math.isfinite(v)
        ]
        final = {"epochs": result.epochs, "seconds": result.seconds, "spiked": float(result.spiked)}
        if not result.failed:
            final["test_loss"] = result.test_loss
        metrics += [Metric(k, float(v), ts, 0) for k, v in final.items()]
        store.client.log_batch(run_id, params=params, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        for lo in range(0, len(metrics), 900):
            store.client.log_batch(run_id, metrics=metrics[lo : lo + 900])
    except BaseException:
        store.client.delete_run(run_id)
        raise
    store.client.set_terminated(run_id, "FAILED" if result.failed else "FINISHED")
    return run_id


# -- one study ------------------------------------------------------------------------------------
def run_study(mode: str, folder: Path, template: Path, candidates: int, instances: int) -> dict:
    from robustcli.config import EarlyStoppingSettings, StudySettings, TrainingSettings
    from robustcli.execution.session import StudySession

    db = folder / mode / "mlflow.db"
    db.parent.mkdir(parents=True)
    shutil.copy(template, db)
    es = EarlyStoppingSettings(min_epochs=EPOCHS, window=10, max_epochs=EPOCHS)
    settings = StudySettings(task="synthetic", study=f"overhead-{mode}", training=TrainingSettings(early_stopping=es))
    session = StudySession(settings, f"sqlite:///{db}")
    session.data  # noqa: B018 - data and the store's connection are not what is measured
    if mode == "client3":
        os.environ["ROBUST_TRACKING_WRITE"] = "sync"
    try:
        session.store.client  # noqa: B018 - decides the way of writing
    finally:
        os.environ.pop("ROBUST_TRACKING_WRITE", None)
    store = session.store
    spent = [0.0]

    def timed(fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[0] += time.perf_counter() - t

        return wrapper

    if mode == "none":
        store.log_instance = lambda *a, **k: uuid.uuid4().hex
        store.candidate_run = lambda *a, **k: uuid.uuid4().hex
    elif mode == "naive":
        store.log_instance = timed(lambda *a, **k: naive_log_instance(store, *a, **k))
        store.candidate_run = timed(lambda *a, **k: naive_candidate_run(store, *a, **k))
    elif mode == "rows-sync":
        log_instance, candidate_run = store.log_instance, store.candidate_run

        def synced(fn):
            def wrapper(*a, **k):
                out = fn(*a, **k)
                store.flush()
                return out

            return wrapper

        store.log_instance = timed(synced(log_instance))
        store.candidate_run = timed(synced(candidate_run))
    else:
        store.log_instance = timed(store.log_instance)
        store.candidate_run = timed(store.candidate_run)
    store.flush = timed(store.flush)
    store.ensure_experiment = timed(store.ensure_experiment)
    store.find_experiment = timed(store.find_experiment)

    space = list(session.space)
    requests = [(c, i) for c in space[:candidates] for i in range(instances)]
    start = time.perf_counter()
    records = list(session.train(requests))
    wall = time.perf_counter() - start
    stats = store.writer_stats
    if mode != "none":  # everything trained is in MLflow, finished, once train() returned
        known = session.known()
        got = sum(len(v) for v in known.values())
        assert got == len(records), (got, len(records))
        assert not list((db.parent / "robust-journal").glob("*.jsonl")) or all(
            p.stat().st_size == 0 for p in (db.parent / "robust-journal").glob("*.jsonl")
        )
    store.close()
    return {"mode": mode, "wall": wall, "log": spent[0], "n": len(records), "writer": stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 candidates x 8 instances, once (under a minute)")
    parser.add_argument("--repeats", type=int, default=None, help="rounds of all the ways (default 1 quick, 2)")
    args = parser.parse_args()
    candidates, instances = (4, 8) if args.quick else (8, 16)
    repeats = args.repeats or (1 if args.quick else 2)

    from mlflow.tracking import MlflowClient

    import logging

    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        template = folder / "template.db"
        MlflowClient(f"sqlite:///{template}").search_experiments()  # migrate once
        # warm up torch and the stacked engine on a throwaway study
        run_study("none", folder / "warmup", template, 1, 2)
        results: dict[str, list[dict]] = {m: [] for m in MODES}
        for r in range(repeats):
            for mode in MODES:
                results[mode].append(run_study(mode, folder / f"round{r}", template, candidates, instances))

    load = os.getloadavg()
    print(f"study: synthetic, {candidates} candidates x {instances} instances, {EPOCHS} epochs "
          f"({2 * EPOCHS} epoch metrics per run), stacked in-process executor, sqlite store, {repeats} round(s)")
    print(f"load average (1/5/15 min) before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} cpus")
    share = {}
    none_wall = min(x["wall"] for x in results["none"])
    for mode in MODES:
        best = min(results[mode], key=lambda x: x["wall"])
        walls = ", ".join(f"{x['wall']:.2f}" for x in results[mode])
        n = best["n"]
        line = f"{mode:<9} wall {best['wall']:6.2f} s (rounds: {walls})"
        if mode != "none":
            share[mode] = best["log"] / best["wall"]
            line += (f"  coordinator in MLflow writes {best['log']:6.3f} s = {best['log'] / n * 1000:6.1f} ms/instance"
                     f"  share {share[mode]:.3f}  wall - none {(best['wall'] - none_wall) / best['wall']:+.3f}")
        print(line)
        w = best["writer"]
        if w and mode == "current":
            print(f"         writer thread: {w['runs']} runs in {w['transactions']} transactions, "
                  f"{w['seconds'] / max(w['runs'], 1) * 1000:.1f} ms wall and {w['cpu'] / max(w['runs'], 1) * 1000:.1f} ms CPU "
                  f"per run (off the coordinator)")
    print(f"instances per study {results['current'][0]['n']}, epochs per instance {EPOCHS}")
    verdict = "ok" if share["current"] < 0.05 else "MISSED (target < 0.05)"
    print(f"logging share: naive {share['naive']:.3f}, client3 {share['client3']:.3f}, rows-sync {share['rows-sync']:.3f} "
          f"-> current {share['current']:.3f}  [{verdict}]")
    print(f"ratio={share['current']:.3f}")


if __name__ == "__main__":
    main()
