"""Executors: one process with T threads against W worker processes with one thread each, in one run.

Every executor trains the same instances (same seeds, samples and data) for a fixed number of
epochs (``min_epochs = max_epochs``), so the figure is instance-epochs per second; ratios are
against the in-process plain loop with one thread, measured in the same run. The pool is warmed up
first (its start-up, the workers importing torch, is printed apart, not counted). The rows are
timed interleaved, ``inprocess plain 1 thr, row 2, row 3, ..., inprocess plain 1 thr, ...``
(``--repeat`` rounds; ``benchmarks/tools/interleave.py``): each ratio is the median over the
rounds, each round's row against the plain timings either side of it, with its spread.

Rows: ``inprocess`` (this process, ``--threads`` torch threads), ``local`` (the local pool,
``--workers`` processes x 1 thread), each with the ``plain`` or ``stacked`` engine inside;
``ray`` rows with ``--ray`` (a local Ray of ``--workers`` CPUs).

    .venv/bin/python benchmarks/executors.py                 # ~2-3 minutes on 2 cores
    .venv/bin/python benchmarks/executors.py --quick         # under a minute
    .venv/bin/python benchmarks/executors.py --models synthetic --ray

Measured the earlier way (each row the fastest of 2, one row after the other) on the 2-core
development VM (torch 2.13 CPU, ``--ray``), while other
sessions kept the load average at 5-6, i.e. each of our processes got well under one core: read
the ratios as "under contention", not as an idle machine's. inst-epochs/s (ratio vs in-process
plain, 1 thread):

  synthetic MLP, ``small`` (batch 32), train 256, 32 instances x 20 epochs
    inprocess plain    1 proc x 1 thr   321  (1.00x)     1 proc x 2 thr   115  (0.36x)
    inprocess stacked  1 proc x 1 thr  1382  (4.31x)     1 proc x 2 thr    31  (0.10x)
    local     plain    2 proc x 1 thr   306  (0.95x)     ray  plain       302  (0.94x)
    local     stacked  2 proc x 1 thr   962  (3.00x)     ray  stacked    1360  (4.24x)

  calo-energy Model 2 (batch 32), events 4000, train 1000, 8 instances x 2 epochs
    inprocess plain    1 proc x 1 thr   3.3  (1.00x)     1 proc x 2 thr   1.4  (0.42x)
    inprocess stacked  1 proc x 1 thr   7.9  (2.35x)     1 proc x 2 thr   3.8  (1.15x)
    local     plain    2 proc x 1 thr   4.2  (1.25x)     ray  plain       4.7  (1.41x)
    local     stacked  2 proc x 1 thr   7.0  (2.11x)     ray  stacked     9.8  (2.94x)

Processes x 1 thread beat 1 process x 2 threads every time (2-4x for plain; for the stacked MLP
the second thread is a 10x loss: its small ops pay the threads' synchronisation and, on a loaded
machine, their spinning). Two processes over one process with one thread: 0.95-1.4x here, because
the second core was not free; expect up to ~2x on an idle machine. Stacking matters more than
processes; the pool splits a lone stack in two to use both workers, which costs the MLP some of
stacking's gain (3.0x against 4.3x for one stack of 32). Pool start-up (the fork server importing
torch) is ~3-4 s once per session, not counted above.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.tools.interleave import interleave, ratios, spread  # noqa: E402


def jobs_for(space: Any, key: str, count: int, train_size: int) -> list[tuple[Any, Any]]:
    from robustcli.training.instance import InstanceSpec
    from robustcli.training.seeds import derive_seeds

    candidate = space.get(key)
    out = []
    for index in range(count):
        seeds = derive_seeds(0, index, None)
        out.append((candidate, InstanceSpec(index, seeds.init_seed, seeds.data_seed, train_size, None)))
    return out


def timed(executor: Any, task: Any, data: Any, jobs: list, settings: Any) -> tuple[float, int, list[float]]:
    start = time.perf_counter()
    results = list(executor.run(task, data, jobs, settings))
    seconds = time.perf_counter() - start
    epochs = sum(r.epochs for _, r in results)
    assert len(results) == len(jobs)
    return seconds, epochs, [r.test_loss for _, r in sorted(results, key=lambda p: p[1].spec.index)]


def bench(
    name: str, task: Any, key: str, count: int, train_size: int, epochs: int, args: argparse.Namespace
) -> dict[str, float]:
    """Prints one table; returns each row's ratio against the first (in-process plain, 1 thread)."""
    import torch

    from robustcli.config import EarlyStoppingSettings, TrainingSettings
    from robustcli.execution.inprocess import InProcessExecutor
    from robustcli.execution.pool import LocalPoolExecutor
    from robustcli.execution.stacked import StackedExecutor

    data = task.load_data()
    space = task.search_space()
    jobs = jobs_for(space, key, count, train_size)
    es = EarlyStoppingSettings(min_epochs=epochs, window=max(2, min(epochs, 4)), max_epochs=epochs)
    settings = TrainingSettings(train_size=train_size, early_stopping=es)
    batch = space.get(key).params.get("batch_size")
    print(f"\n{name} (load {os.getloadavg()[0]:.1f}): candidate {key} (batch {batch}), train {train_size}, {count} instances x {epochs} epochs")
    print(f"  {'executor':<34} {'inst-epochs/s':>13} {'ratio vs the first [min..max]':>36} {'seconds':>8}")

    def pool(engine: str) -> Any:
        executor = LocalPoolExecutor(args.workers, engine)
        start = time.perf_counter()
        list(executor.run(task, data, jobs[: args.workers], settings))  # start and warm the workers
        print(f"  (local pool {engine}: workers up and warm in {time.perf_counter() - start:.1f} s, not counted)")
        return executor

    def ray(engine: str) -> Any:
        import ray as ray_module

        from robustcli.execution.ray_executor import RayExecutor

        if not ray_module.is_initialized():
            ray_module.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        executor = RayExecutor(engine=engine)
        list(executor.run(task, data, jobs[: args.workers], settings))  # warm the workers
        return executor

    # (label, a function making the executor, torch threads here): made just before its timing
    rows: list[tuple[str, Any, int]] = []
    for threads in sorted({1, args.threads}):
        rows.append((f"inprocess plain   1 proc x {threads} thr", InProcessExecutor, threads))
    for threads in sorted({1, args.threads}):
        rows.append((f"inprocess stacked 1 proc x {threads} thr", StackedExecutor, threads))
    for engine in ("plain", "stacked"):
        rows.append((f"local {engine:<7} {args.workers} proc x 1 thr", lambda engine=engine: pool(engine), 1))
    if args.ray:
        for engine in ("plain", "stacked"):
            rows.append((f"ray   {engine:<7} {args.workers} task x 1 thr", lambda engine=engine: ray(engine), 1))

    # all executors made (pools started and warm) first, then timed interleaved: the in-process
    # plain loop with one thread, then every other row, per round, and the plain loop once more
    # (benchmarks/tools/interleave.py): each row's ratio is against the plain timings either side
    made = [(label, make(), threads) for label, make, threads in rows]
    losses: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}

    def rate(label: str, executor: Any, threads: int):
        def once() -> float:
            torch.set_num_threads(threads)
            took, done, lost = timed(executor, task, data, jobs, settings)
            losses.setdefault(label, lost)
            seconds.setdefault(label, []).append(took)
            return done / took

        return once

    try:
        base, rates = interleave(rate(*made[0]), {label: rate(label, ex, t) for label, ex, t in made[1:]}, args.repeat)
    finally:
        for _, executor, _ in made:
            if hasattr(executor, "close"):
                executor.close()
    ref = losses[made[0][0]]
    out: dict[str, float] = {}
    for label, _, _ in made:
        r = spread([1.0] * len(base)) if label == made[0][0] else ratios(base, rates[label])
        ips = spread(base if label == made[0][0] else rates[label])
        drift = max(abs(a - b) for a, b in zip(losses[label], ref, strict=True))
        print(f"  {label:<34} {ips.median:>13.1f} {r.text():>36} {spread(seconds[label]).median:>8.1f}   "
              f"max|dloss| vs plain {drift:.1e}")  # fmt: skip
        out[label] = r.median
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="threads of the in-process rows besides 1")
    parser.add_argument("--models", default="synthetic,model2")
    parser.add_argument("--instances", type=int, default=32)
    parser.add_argument("--calo-instances", type=int, default=8)
    parser.add_argument("--calo-epochs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds (every row once per round)")
    parser.add_argument("--ray", action="store_true", help="add Ray rows (a local Ray)")
    parser.add_argument("--quick", action="store_true", help="16 MLP and 4 Model 2 instances (2 epochs), 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.instances, args.calo_instances, args.calo_epochs, args.repeat = 16, 4, 2, 2

    models = args.models.split(",")
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (others' load skews every row)")
    ratios: dict[str, float] = {}
    if "synthetic" in models:
        from robustcli.builtin.synthetic import SyntheticTask

        ratios = bench("synthetic MLP", SyntheticTask(), "small", args.instances, 256, 20, args)
    if "model2" in models:
        try:
            from robust_calo.task import CaloEnergyTask
        except ImportError:
            print("\nmodel2: skipped (robust_calo is not installed)")
        else:
            ratios = bench("calo-energy Model 2", CaloEnergyTask(events=4000), "model2", args.calo_instances, 1000, args.calo_epochs, args)
    # headline: the local pool with the stacked engine inside against the in-process plain loop
    # (1 thread), for the last model timed (Model 2 when installed)
    head = next((v for k, v in ratios.items() if k.startswith("local stacked")), None)
    if head is not None:
        print(f"\nheadline: local pool ({args.workers} proc x 1 thr, stacked) vs in-process plain (1 thr): {head:.2f}x")
        print(f"ratio={head:.3f}")


if __name__ == "__main__":
    main()
