"""Tracking overhead: the share of a realistic study's wall time that goes to logging to MLflow.

Target (issue 12): logging under 2 % of the wall time of a study whose instances train for at
least a second. The study: the ``calo-energy`` task's Model 2 (``model2``) in the profile of the
tool's main job (``make demo``: samples of 2,000 showers, at least 20 epochs), several instances
through :meth:`StudySession.train` with the default in-process stacked executor, a fixed number of
epochs (20, early stopping with ``min_epochs = max_epochs`` so that both sides train the same),
bootstrap samples of 2,000 showers scored on 2,000 (the task's default ``test_size = train``) out
of 4,000 simulated showers (made
once into the calo cache, ``$ROBUST_CACHE_DIR/calo``, on first use). Each study goes into a fresh
sqlite MLflow store in a temporary folder (a copy of one store migrated beforehand).

Two ways, run as interleaved pairs, A B A B ... (so that the load of a shared machine drifts
over both alike):

* ``store`` (A): the store as it is (robustcli/tracking/mlflow_store.py and writer.py: each
  finished run journaled and handed to a background thread that writes it with MLflow's public
  client; ``train`` flushes, then logs each touched candidate's statistics as metrics);
* ``none`` (B): the store's reads and writes stubbed out (no experiment, no runs): the training
  and the session's own bookkeeping alone.

Set-up is excluded from every timing: the session, the data (loaded once and shared), the store's
connection (schema and replay) and the executor (one, shared, probed in a warm-up study). Timed:
``session.train(...)`` to its end, which includes the final flush and the statistics update.

Measured directly, in each A study, on the coordinating thread:

* the time inside store calls (the outermost call only, so nothing is counted twice): finding and
  creating the experiment, the candidate's run (``candidate_run``), ``log_instance``, ``flush``
  (waiting for the writer thread), the statistics update (reading the instances back and
  ``log_candidate_statistics``), the instance claims (record locks);
* the time inside the executor (training) and the rest of ``train`` (session bookkeeping);
* the writer thread: its wall and CPU per run (``store.writer_stats``), and its CPU clock read
  (``pthread_getcpuclockid``) at the start and end of every store call, which splits its CPU into
  what ran while the coordinator waited in a store call and what ran beside the training.

Headline ``ratio`` = (coordinator time in store calls + writer-thread CPU beside the training) /
wall time of ``train``, the median over the A studies. Why this definition: on 2 cores the
writer thread competes with training for the CPU, so its CPU counts as cost even when it overlaps
training; but the CPU it spends while the coordinator is blocked waiting for it (in ``flush``) is
already inside the coordinator's waiting time and would be counted twice. Also printed:
coordinator-only share, and the upper bound coordinator + all writer CPU.

Measured end to end: the paired differences of wall time, A - B, their median and spread (min,
max over the pairs), absolute and relative to B. On a loaded shared machine these differences are
mostly noise (whole seconds either way) against a logging cost of a fraction of a second: that is
why the direct figure is the headline, and the end-to-end one is printed beside it as a check
that nothing large escapes the direct measurement.

Note on the stacked executor: a stack's instances (here all of them, one stack of ``--instances``,
as with ``robust assess``) stop together at the fixed epoch count, so every run is handed to the
writer at the end of the stack and the coordinator waits for all of them in ``flush``: the
background thread overlaps training only when a study trains several stacks (several
architectures, or ``--max-stack`` below the number of instances).

Torch threads: 1 by default (``--threads``). On the shared 2-core machines here, with a load of
7-10, PyTorch's default 2 threads trained this study 3-5x slower (OpenMP threads spinning against
other processes) and its times varied far more; one thread keeps the instances near a few seconds.
The ratio scales with 1 / instance length, and on a loaded machine logging slows down as much as
training does (both compete for the same cores; the writer also waits on sqlite's disk syncs):
the per-instance logging ms and instance seconds are printed so that the ratio can be rescaled.

    .venv/bin/python benchmarks/tracking_overhead.py            # 16 instances x 10 epochs, 4 pairs (18 min at load 15)
    .venv/bin/python benchmarks/tracking_overhead.py --quick    # 4 instances x 20 epochs, 2 pairs (about 2-3 min at load 2-3)

Last line: ``ratio=<median logging share of the A studies>``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robustcli.session import StudySession
    from robustcli.tracking.mlflow_store import MlflowStore

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET = 0.02
#: store methods the session calls, by what the report calls them
STORE_CALLS = {
    "find_experiment": "experiment",
    "ensure_experiment": "experiment",
    "candidate_run": "candidate run",
    "log_instance": "log_instance",
    "flush": "flush (wait for writer)",
    "instances": "statistics: read back",
    "log_candidate_statistics": "statistics: log metrics",
    "search": "other reads",
    "get_run": "other reads",
    "set_tags": "other writes",
}
LOCK_CALLS = ("try_lock", "lock", "unlock")
ORDER = ("experiment", "candidate run", "log_instance", "flush (wait for writer)", "statistics: read back",
         "statistics: log metrics", "instance claims (locks)", "other reads", "other writes")


# -- measuring ------------------------------------------------------------------------------------
class Meter:
    """Times the coordinator's outermost store calls and splits the writer thread's CPU."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.depth = 0
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.writer_cpu_inside = 0.0  # writer CPU while the coordinator was in a store call

    def writer_cpu(self) -> float:
        """The writer thread's CPU clock now (0 before it exists)."""
        writer = getattr(self.store, "_writer", None)
        thread = getattr(writer, "_thread", None)
        if thread is None or thread.ident is None or not thread.is_alive():
            return 0.0
        try:
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        except (OSError, AttributeError):
            return 0.0

    def wrap(self, obj: Any, name: str, label: str) -> None:
        fn = getattr(obj, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.depth:  # nested (e.g. a read that waits for the writer): counted by the outer call
                return fn(*args, **kwargs)
            self.depth = 1
            cpu0, t0 = self.writer_cpu(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - t0
                self.calls[label] += 1
                self.writer_cpu_inside += max(0.0, self.writer_cpu() - cpu0)
                self.depth = 0

        setattr(obj, name, timed)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


class TimedExecutor:
    """The shared executor, with the time spent inside it (training) counted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def run(self, *args: Any, **kwargs: Any):
        it = iter(self.inner.run(*args, **kwargs))
        while True:
            t0 = time.perf_counter()
            try:
                item = next(it)
            except StopIteration:
                self.seconds += time.perf_counter() - t0
                return
            self.seconds += time.perf_counter() - t0
            yield item


def stub_store(store: Any) -> None:
    """``none``: no experiment, no runs, no reads; everything else of the session unchanged."""
    store.find_experiment = lambda name: None
    store.ensure_experiment = lambda name, tags=None: "0"
    store.candidate_run = lambda exp_id, **kwargs: uuid.uuid4().hex
    store.log_instance = lambda *args, **kwargs: uuid.uuid4().hex
    store.log_candidate_statistics = lambda *args, **kwargs: None
    store.instances = lambda *args, **kwargs: {}


# -- one study ------------------------------------------------------------------------------------
def run_study(mode: str, folder: Path, template: Path, settings: Any, candidates: list[str], instances: int,
              executor: Any, data: Any) -> dict[str, Any]:
    from robustcli.session import StudySession

    folder.mkdir(parents=True)
    db = folder / "mlflow.db"
    shutil.copy(template, db)
    session = StudySession(settings, f"sqlite:///{db}")
    session._data = data  # loaded once for all studies: not what is measured
    store = session.store
    store.connect()  # the store's schema check and journal replay: set-up, not measured
    if mode == "none":
        stub_store(store)
    meter = Meter(store)
    for name, label in STORE_CALLS.items():
        meter.wrap(store, name, label)
    locks = store.locks
    for name in LOCK_CALLS:
        meter.wrap(locks, name, "instance claims (locks)")
    timed = TimedExecutor(executor)
    requests = [(session.candidate(c), i) for c in candidates for i in range(instances)]
    gc.collect()
    start = time.perf_counter()
    records = list(session.train(requests, executor=timed))
    wall = time.perf_counter() - start
    writer_cpu = meter.writer_cpu()
    stats = dict(store.writer_stats)
    out = {
        "mode": mode, "wall": wall, "training": timed.seconds, "store": meter.total, "n": len(records),
        "by_call": dict(meter.seconds), "calls": dict(meter.calls), "writer": stats,
        "writer_cpu": writer_cpu or stats.get("cpu", 0.0), "writer_cpu_inside": meter.writer_cpu_inside,
        "instance_seconds": [rec.seconds for _, rec in records],
    }
    if mode == "store":
        check_logged(session, store, candidates, instances, len(records))
    store.close()
    for name in LOCK_CALLS:  # the lock file is shared by the process: unwrap it
        locks.__dict__.pop(name, None)
    return out


def check_logged(session: StudySession, store: MlflowStore, candidates: list[str], instances: int, n: int) -> None:
    """Everything trained is in MLflow once train() returned: instances finished, parents' statistics."""
    known = session.known()
    got = sum(len(v) for v in known.values())
    assert got == n == len(candidates) * instances, (got, n)
    exp_id = session.existing_experiment()
    parents = store.search(exp_id, "tags.`robust.kind` = 'candidate'")
    assert len(parents) == len(candidates), len(parents)
    for run in parents:
        assert run.data.metrics.get("instances") == instances, run.data.metrics
        assert "mean" in run.data.metrics, run.data.metrics
    journals = list((store._journal_dir()).glob("*.jsonl"))
    assert all(p.stat().st_size == 0 for p in journals), journals


# -- the report -----------------------------------------------------------------------------------
def _spread(values: list[float], fmt: str = "{:+.2f}") -> str:
    return f"median {fmt.format(statistics.median(values))} (min {fmt.format(min(values))}, max {fmt.format(max(values))})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="8 instances, 2 pairs (A B A B): 4-6 min at a load of 9-17 on 2 cores")
    parser.add_argument("--instances", type=int, default=None, help="instances per candidate (default 16, quick 4)")
    parser.add_argument("--pairs", type=int, default=None, help="A B pairs (default 4, quick 2)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs per instance (min_epochs = max_epochs; the demo's minimum)")
    parser.add_argument("--train-size", type=int, default=2000, help="showers per bootstrap sample (and scored; the demo's)")
    parser.add_argument("--events", type=int, default=4000, help="simulated showers (half pool, half test set)")
    parser.add_argument("--candidates", default="model2", help="comma list of the task's candidates (default model2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see above)")
    parser.add_argument("--max-stack", type=int, default=64, help="the executor's largest stack (default 64)")
    args = parser.parse_args()
    instances = args.instances or (4 if args.quick else 16)
    pairs = args.pairs or (2 if args.quick else 4)
    candidates = [c.strip() for c in args.candidates.split(",") if c.strip()]

    import torch

    torch.set_num_threads(args.threads)
    for name in ("alembic", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)

    from robustcli.config import EarlyStoppingSettings, StudySettings, TrainingSettings
    from robustcli.execution.factory import make_executor
    from robustcli.session import StudySession
    from robustcli.tracking.mlflow_store import MlflowStore

    def settings_for(epochs: int) -> StudySettings:
        es = EarlyStoppingSettings(min_epochs=epochs, window=2, max_epochs=epochs)
        training = TrainingSettings(train_size=args.train_size, early_stopping=es, max_stack=args.max_stack, executor="inprocess")
        return StudySettings(task="calo-energy", study="tracking-overhead", task_options={"events": args.events},
                             training=training)

    settings = settings_for(args.epochs)
    load_before = os.getloadavg()
    t_setup = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="robust-tracking-overhead-") as tmp:
        folder = Path(tmp)
        template = folder / "template" / "mlflow.db"
        MlflowStore(f"sqlite:///{template}").connect()  # created and migrated once, copied for each study
        data = StudySession(settings, f"sqlite:///{template}").data  # simulated into the cache on first use
        executor = make_executor(settings)
        # warm-up (torch, the executor's probe of the candidates, MLflow's first writes): not reported
        warm = run_study("store", folder / "warmup", template, settings_for(1), candidates, min(instances, 8),
                         executor, data)
        setup = time.perf_counter() - t_setup
        results: dict[str, list[dict[str, Any]]] = {"store": [], "none": []}
        for p in range(pairs):
            for mode in ("store", "none"):
                r = run_study(mode, folder / f"{mode}{p}", template, settings, candidates, instances, executor, data)
                results[mode].append(r)
                print(f"  pair {p + 1} {mode:<5} wall {r['wall']:6.2f} s  training {r['training']:6.2f} s  "
                      f"store calls {r['store']:6.3f} s  load {os.getloadavg()[0]:.1f}", flush=True)
    load = os.getloadavg()

    A, B = results["store"], results["none"]
    n = A[0]["n"]
    decisions = sorted({(d[1], d[2], d[3]) for d in executor.decisions[-len(candidates):]})
    inst_secs = [s for r in A + B for s in r["instance_seconds"]]
    print(f"\nstudy: calo-energy {', '.join(candidates)}, {instances} instances each x {args.epochs} epochs "
          f"(min_epochs = max_epochs), train {args.train_size} / test {args.train_size} showers of {args.events} "
          f"simulated; in-process executor {', '.join(f'{e} x{c} (stacks of <= {k})' for e, c, k in decisions)}; "
          f"{args.threads} torch thread(s); a fresh sqlite store per study; {pairs} pairs A B (store, none); "
          f"set-up {setup:.1f} s excluded (warm-up study {warm['wall']:.1f} s)")
    print(f"machine: {os.cpu_count()} cpus; load average (1/5/15 min) before {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f}, after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"instance seconds (each instance's share of its stack's wall time): {_spread(inst_secs, '{:.2f}')}")

    # -- direct
    def med(key_fn) -> float:
        return statistics.median(key_fn(r) for r in A)

    shares = [(r["store"] + max(0.0, r["writer_cpu"] - r["writer_cpu_inside"])) / r["wall"] for r in A]
    coord = [r["store"] / r["wall"] for r in A]
    upper = [(r["store"] + r["writer_cpu"]) / r["wall"] for r in A]
    print(f"\ndirect, store (A) studies, median over {len(A)}:")
    print(f"  wall of train {med(lambda r: r['wall']):.2f} s: training (inside the executor) "
          f"{med(lambda r: r['training']):.2f} s, outside it {med(lambda r: r['wall'] - r['training']):.3f} s, "
          f"of which store calls {med(lambda r: r['store']):.3f} s")
    per_instance = med(lambda r: r["store"]) / n
    print(f"  coordinator in store calls: {per_instance * 1000:.1f} ms per instance ({n} instances per study; "
          f"at this cost, logging stays under {TARGET:.0%} for instances of {per_instance / TARGET:.1f} s or more)")
    for label in ORDER:
        vals = [r["by_call"].get(label, 0.0) for r in A]
        if any(vals):
            calls = statistics.median(r["calls"].get(label, 0) for r in A)
            print(f"    {label:<26} {statistics.median(vals) * 1000:8.1f} ms per study "
                  f"{statistics.median(vals) * 1000 / n:7.2f} ms per instance  ({calls:g} calls)")
    runs = [r["writer"].get("runs", 0) for r in A]
    w_wall = [r["writer"].get("seconds", 0.0) / max(r["writer"].get("runs", 0), 1) for r in A]
    w_cpu = [r["writer"].get("cpu", 0.0) / max(r["writer"].get("runs", 0), 1) for r in A]
    print(f"  writer thread: {statistics.median(runs):g} runs per study, {statistics.median(w_wall) * 1000:.1f} ms wall "
          f"and {statistics.median(w_cpu) * 1000:.1f} ms CPU per run; its CPU {med(lambda r: r['writer_cpu']):.3f} s "
          f"per study, of which {med(lambda r: max(0.0, r['writer_cpu'] - r['writer_cpu_inside'])):.3f} s beside "
          f"the training (the rest while the coordinator waited for it)")
    print(f"  share of wall: coordinator only {_spread(coord, '{:.4f}')}; + writer CPU beside training "
          f"{_spread(shares, '{:.4f}')}; upper bound (+ all writer CPU) {_spread(upper, '{:.4f}')}")

    # -- end to end
    diffs = [a["wall"] - b["wall"] for a, b in zip(A, B)]
    rel = [(a["wall"] - b["wall"]) / b["wall"] for a, b in zip(A, B)]
    print(f"\nend to end, paired A - B wall (store - none) over {len(diffs)} pairs: {_spread(diffs)} s, "
          f"relative to B {_spread(rel, '{:+.4f}')}")
    walls_a = ", ".join(f"{r['wall']:.2f}" for r in A)
    walls_b = ", ".join(f"{r['wall']:.2f}" for r in B)
    print(f"  walls A: {walls_a}; B: {walls_b}")
    print(f"  (direct store cost per study {med(lambda r: r['store']):.3f} s against these differences: the "
          f"end-to-end figure is the noisier one)")

    ratio = statistics.median(shares)
    verdict = "ok" if ratio < TARGET else f"MISSED (target < {TARGET})"
    print(f"\nlogging share (coordinator in store calls + writer CPU beside training) / wall: {ratio:.4f} [{verdict}]")
    print(f"ratio={ratio:.4f}")


if __name__ == "__main__":
    main()
