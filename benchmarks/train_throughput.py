"""Training throughput: the plain one-instance loop against the stacked engine, in one run.

Both engines train the same instances (same seeds, same samples, same data, same epochs). The
figure is **steady-state instance-epochs per CPU-second of one thread**: torch runs with one
thread (``--threads``, first value; default 1), so all the training runs in the calling thread,
whose CPU time (``time.thread_time()``) clocks it. Every instance's first epoch and its set-up
(sampling, building and initialising the models, the first kernel calls) are left out, and
reported apart. Both engines call ``EarlyStopping.update`` once per instance after each epoch's
evaluation; those calls are the clock (:class:`EpochClock`): an instance's steady time runs from
its first update to its last. The same steady epochs are also clocked by wall time and by the
process's CPU time, and the per-wall-second rates and ratios are printed beside.

Why CPU time of one thread (issue 14): on the shared 2-vCPU machines, wall time counts the
seconds the training waited for a core that another process held, and that moves with the
neighbours from one repetition to the next (the wall ratio read 0.65x to 13.8x in one hour).
With two torch threads a neighbour on one core stalls every parallel op of the other thread,
far more often in the plain loop's many small ops than in the stacked engine's large ones. One
thread clocked by its own CPU time counts only the seconds it ran. What a neighbour still moves
is the work done per CPU-second (shared caches, memory bandwidth, context switches): single
repetitions by 5-30 %, and a process keeping one core busy lowered the plain loop's rate by
~7 %, the stacked engine's by ~15 % and their ratio by ~5 % (measured, issue 14); hence the
rounds and their median. ``--threads 1,2`` (the default run) adds the 2-thread figures as a second table,
clocked by the process's CPU time (both threads, their spin-waits included) and by wall time.

The method (``benchmarks/tools/interleave.py``): plain and stacked repetitions alternate,
``plain, stacked K..., plain, stacked K..., ..., plain``, at least ``--rounds`` times (more
within ``--budget`` seconds, up to ``--max-rounds``); each stacked repetition's ratio is taken
against the geometric mean of the plain repetitions either side of it, and the printed ratio is
the median over the rounds with its spread (min..max, width). A ``--quick`` run measures the
same quantity as the default run with fewer configurations (and 2 epochs: 1 steady).

Printed per model, batch size, torch threads and stack size K:

* ``plain`` and ``stacked`` steady instance-epochs per CPU-second and per wall-second (medians)
  and the ratios (stacked / plain) by each clock;
* set-up: CPU-seconds per plain instance and per stack spent outside the steady epochs;
* the achieved GFLOP per CPU-second of each (the convolutions and dense layers: 3x the forward
  FLOPs per training example, 1x per test example, the test set being scored every epoch)
  against the fp32 matmul peak per CPU-second at the same threads, itself timed once per round
  (median of the rounds' bests);
* fidelity: for the instances both engines trained, the largest |test loss stacked - plain|
  next to the across-seed standard deviation of the plain test losses; for Model 2 at batch 32
  also the noise floor, the same difference between the plain loop with one thread and with
  two. Short trainings on small samples stay far below the seed spread; longer
  noisy ones (e.g. ``--train-size 2000``, where the per-epoch test loss jumps by 20-50 %) are
  chaotic: ulp-level differences grow to the size of the seed spread after a few hundred Adam
  steps, for the thread count as for the engine.

Models: the synthetic task's MLP, and the paper's Model 1 and Model 2 (``robust_calo``, on
freshly simulated showers; a stand-in conv net of the same shapes if the plugin is missing).
Headline: Model 2, batch 32, K = 64, the first thread count (1 by default), median stacked /
plain steady instance-epochs per CPU-second of the training thread; the last line printed is
exactly ``ratio=<number>`` (that headline, on the last device measured; ``nan`` when the run did
not include it). ``--dump FILE`` writes every repetition's timings by every clock.

Early stopping: with Model 2 at batch 32 in a run that is not ``--quick``, one more stack of the
largest K joins the rounds, in which half the instances stop after half the epochs (the stack
is compacted when they stop). Printed: its ratio to the plain loop and the share of the full
stack's ratio it keeps (median over the rounds).

    .venv/bin/python benchmarks/train_throughput.py            # all models and batches, 1 and 2 threads: long
    .venv/bin/python benchmarks/train_throughput.py --quick    # Model 2, batch 32, K 64, 1 thread, 2 epochs, 3+ rounds (~1-3 min)
    .venv/bin/python benchmarks/train_throughput.py --full     # K up to 512, more epochs and rounds
    .venv/bin/python benchmarks/train_throughput.py --models model2 --batches 16,32,64,256 --ks 64

The plain loop's throughput does not depend on K (instances are independent), so each plain
repetition trains the first ``--plain-instances`` instances once per round.

Memory: the stacked engine keeps freed memory in the process on the CPU
(:func:`robustcli.training.cpu_memory.keep_freed_memory`, glibc ``mallopt``), which also speeds
up the plain loop (its evaluation of the whole test set in one batch: ~1.8x measured). It is
switched on here before anything is timed, so that both engines run with it and the ratio
credits the stacked engine with nothing the plain loop would not get in the same process. Set
``ROBUST_KEEP_FREED_MEMORY=0`` to time both without it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from benchmarks.tools.interleave import Spread, interleave, ratios, spread  # noqa: E402
from robustcli.config import EarlyStoppingSettings, TrainingSettings  # noqa: E402
from robustcli.task import Candidate, Loss, SearchSpace, Task, TaskData  # noqa: E402
from robustcli.training.cpu_memory import keep_freed_memory  # noqa: E402
from robustcli.training.early_stopping import EarlyStopping  # noqa: E402
from robustcli.training.instance import InstanceSpec, train_instance  # noqa: E402
from robustcli.training.seeds import derive_seeds  # noqa: E402
from robustcli.training.stacked import train_stacked  # noqa: E402


# -- a stand-in for the calorimeter task when robust_calo is not installed --------------------
class StandInCaloTask(Task):
    """Model 1 / Model 2 shapes on random 15x15 showers: Conv(1->32,3x3) -> ReLU -> MaxPool(2) ->
    Conv(32->64,3x3) -> ReLU -> MaxPool(2, stride 1) -> Linear(576, 9) -> ReLU -> Linear(9, 1)."""

    name = "stand-in-calo"
    loss = Loss("rmse_rel", "sqrt(mean(((E_pred - E_true) / E_true)^2))")

    def __init__(self, events: int = 4000) -> None:
        self.events = events

    def load_data(self) -> TaskData:
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(self.events, 1, 15, 15, generator=gen) ** 8 * 20
        y = x.sum(dim=(1, 2, 3)).unsqueeze(1) * 1.05 + 0.1
        half = self.events // 2
        return TaskData(x[:half], y[:half], x[half:], y[half:])

    def search_space(self) -> SearchSpace:
        named = {
            "model1": {"optimizer": "nadam", "lr": 1e-4, "batch_size": 64, "weight_decay": 1e-2},
            "model2": {"optimizer": "adamw", "lr": 1e-3, "batch_size": 32, "weight_decay": 1e-1},
        }
        return SearchSpace([], {k: Candidate.from_params(v, name=k) for k, v in named.items()})

    def build_model(self, candidate: Candidate) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 32, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, bias=False), nn.ReLU(), nn.MaxPool2d(2, stride=1),
            nn.Flatten(), nn.Linear(576, 9), nn.ReLU(), nn.Linear(9, 1),
        )  # fmt: skip

    def test_loss(self, pred, y):
        return (((pred - y) / y) ** 2).mean().sqrt()


def _tasks(names: list[str], events: int) -> dict[str, tuple[Task, Candidate, str]]:
    from robustcli.builtin.synthetic import SyntheticTask

    out: dict[str, tuple[Task, Candidate, str]] = {}
    if "mlp" in names:
        syn = SyntheticTask(pool_size=4000, test_size=1000)
        out["mlp"] = (syn, syn.search_space().get("small"), "synthetic MLP 6-16-1")
    calo_names = [n for n in names if n.startswith("model")]
    if calo_names:
        try:
            from robust_calo.task import CaloEnergyTask

            calo: Task = CaloEnergyTask(events=events)
            source = f"robust_calo, {events} simulated showers"
        except ImportError:
            calo = StandInCaloTask(events=events)
            source = "stand-in conv net (robust_calo not installed)"
        for n in calo_names:
            out[n] = (calo, calo.search_space().get(n), source)
    return out


# -- FLOPs ---------------------------------------------------------------------------------------
def forward_flops_per_example(task: Task, candidate: Candidate, data: TaskData) -> float:
    """2 x MACs of the convolutions and linear layers for one example (hooks on one batch)."""
    model = task.build_model(candidate)
    macs = 0

    def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            k = module.weight[0].numel()  # Cin/groups * kh * kw
            macs += output.numel() * k
        elif isinstance(module, nn.Linear):
            macs += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(data.pool_x[:8])
    for h in handles:
        h.remove()
    return 2.0 * macs / 8


def matmul_peak(device: torch.device, size: int = 2048, reps: int = 8, clock: str = "wall") -> float:
    """fp32 matmul GFLOP/s at the current torch threads, the best of ``reps``, timed by ``clock``
    (``wall``, or ``thread``/``process`` CPU time: the peak per CPU-second)."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    _sync(device)
    best = math.inf
    for _ in range(reps):
        t = CLOCKS[clock]()
        a @ b
        _sync(device)
        best = min(best, CLOCKS[clock]() - t)
    return 2 * size**3 / best / 1e9 if best > 0 else math.nan


#: the clocks every repetition is timed by: wall time, the CPU time of this (the training) thread,
#: and the CPU time of the whole process (all of torch's threads, their spin-waits included)
CLOCKS: dict[str, Callable[[], float]] = {
    "wall": time.perf_counter,
    "thread": time.thread_time,
    "process": time.process_time,
}


def cpu_clock(threads: int) -> str:
    """The CPU clock for ``threads`` torch threads: with one, all the training runs in this
    thread (``thread``); with more, their CPU time adds up in ``process``."""
    return "thread" if threads == 1 else "process"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# -- steady-state timing -------------------------------------------------------------------------
class EpochClock:
    """When each instance ends an epoch: both engines call ``EarlyStopping.update`` once per
    instance after each epoch's evaluation, and this records the time of each call, per
    ``EarlyStopping`` object (one per instance).

    ``capped``/``cap``: the first ``capped`` instances to end an epoch stop after ``cap`` epochs
    (their update answers ``epoch_cap``); a stack's rows end their first epoch in spec order."""

    def __init__(self, capped: int = 0, cap: int = 0) -> None:
        # per instance, one (wall, thread, process) reading per epoch; keyed by the object: ids could be reused
        self.marks: dict[EarlyStopping, list[tuple[float, ...]]] = {}
        self.capped, self.cap = capped, cap
        self._original = EarlyStopping.update

    def __enter__(self) -> EpochClock:
        clock, original = self, self._original

        def update(stopper: EarlyStopping, loss: float) -> str | None:
            marks = clock.marks.setdefault(stopper, [])
            marks.append(tuple(now() for now in CLOCKS.values()))
            reason = original(stopper, loss)
            if reason is None and clock.capped and len(marks) >= clock.cap and list(clock.marks).index(stopper) < clock.capped:
                return "epoch_cap"
            return reason

        EarlyStopping.update = update  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        EarlyStopping.update = self._original  # type: ignore[method-assign]

    def steady(self) -> tuple[dict[str, float], int]:
        """({clock: seconds}, instance-epochs) of the steady epochs: each instance's epochs after
        its first, timed over the union of the instances' first-to-last intervals (the plain
        loop's instances follow each other and add up; a stack's rows overlap and count once),
        by each of :data:`CLOCKS`."""
        epochs = sum(len(m) - 1 for m in self.marks.values())
        out: dict[str, float] = {}
        for c, clock in enumerate(CLOCKS):
            seconds, end = 0.0, -math.inf
            for lo, hi in sorted((m[0][c], m[-1][c]) for m in self.marks.values()):
                lo = max(lo, end)
                if hi > lo:
                    seconds += hi - lo
                    end = hi
            out[clock] = seconds
        return out, epochs


@dataclass
class Rep:
    """One timed repetition by each clock of :data:`CLOCKS`: its total, its steady part, and
    what it trained."""

    total: dict[str, float]
    steady_seconds: dict[str, float]
    steady_epochs: int
    epochs: int  # all instance-epochs, the first ones included
    units: int  # plain: instances; stacked: stacks (what the set-up is reported per)
    results: list[Any] = field(repr=False)

    def rate(self, clock: str) -> float:
        """Steady instance-epochs per second of ``clock``."""
        seconds = self.steady_seconds[clock]
        return self.steady_epochs / seconds if seconds > 0 else math.nan

    def setup(self, clock: str) -> float:
        """Seconds of ``clock`` per unit outside the steady rate: set-up and the first epochs' excess."""
        return max(0.0, self.total[clock] - self.epochs / self.rate(clock)) / self.units


def timed(run: Callable[[], list[Any]], device: torch.device, units: int, capped: int = 0, cap: int = 0) -> Rep:
    with EpochClock(capped, cap) as clock:
        _sync(device)
        start = {name: now() for name, now in CLOCKS.items()}
        results = run()
        _sync(device)
        total = {name: now() - start[name] for name, now in CLOCKS.items()}
    seconds, steady = clock.steady()
    if steady == 0:
        raise SystemExit("no steady epochs to time: --epochs must be at least 2")
    return Rep(total, seconds, steady, sum(r.epochs for r in results), units, results)


def specs_for(count: int, train_size: int) -> list[InstanceSpec]:
    out = []
    for i in range(count):
        s = derive_seeds(0, i)
        out.append(InstanceSpec(i, s.init_seed, s.data_seed, train_size))
    return out


def run_executor(task, cand, data, specs, settings) -> tuple[list[Any], str]:
    """The StackedExecutor's own plan (stack size, fallbacks) for these jobs; results in spec order."""
    from robustcli.execution.stacked import StackedExecutor

    ex = StackedExecutor()
    by_index = {r.spec.index: r for _, r in ex.run(task, data, [(cand, s) for s in specs], settings)}
    engine, k = ex.decisions[-1][1], ex.decisions[-1][3]
    return [by_index[s.index] for s in specs], f"stacked K={k}" if engine == "stacked" else engine


def _max_dloss(a: list[Any], b: list[Any]) -> float:
    both = min(len(a), len(b))
    return max(abs(x.test_loss - y.test_loss) for x, y in zip(a[:both], b[:both]))


@dataclass
class Row:
    model: str
    batch: int
    threads: int
    name: str  # K, "vmap K", "auto" or "half"
    ratio: Spread  # by the CPU clock (thread CPU time at 1 thread)
    wall: Spread  # by wall time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="K up to 512, 5 epochs, 5 rounds")
    p.add_argument("--quick", action="store_true",
                   help="Model 2, batch 32 (or --batches), K 64, 2 epochs (1 steady), 1 thread, 3 rounds and more "
                        "within --budget (150 s), no executor row")  # fmt: skip
    p.add_argument("--models", default="mlp,model1,model2", help="comma list of mlp, model1, model2")
    p.add_argument("--batches", default=None, help="batch sizes (default 16,32,64,256; --quick 32)")
    p.add_argument("--ks", default=None, help="stack sizes (default 1,8,64; with --full 1,8,64,512)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per instance, at least 2 (default 3; --full 5)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved plain/stacked rounds at least (default 3; --full 5)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds per (model, batch, threads) within which more rounds follow --rounds, up to "
                        "--max-rounds (default: none; --quick 150)")  # fmt: skip
    p.add_argument("--max-rounds", type=int, default=9)
    p.add_argument("--train-size", type=int, default=512)
    p.add_argument("--events", type=int, default=4000, help="simulated showers (half pool, half test set)")
    p.add_argument("--plain-instances", type=int, default=8, help="instances each plain repetition trains")
    p.add_argument("--threads", default=None,
                   help="torch thread counts, each measured in turn, the first giving the headline "
                        "(default 1,2; --quick 1)")  # fmt: skip
    p.add_argument("--devices", default="cpu,cuda")
    p.add_argument("--vmap-only", action="store_true", help="also time the stacked engine without its layout tricks")
    p.add_argument("--dump", type=Path, default=None, help="write every repetition's timings to this JSON file")
    args = p.parse_args(argv)
    args.dumped = []
    if args.quick:
        args.models, args.batches = "model2", args.batches or "32"
        args.ks = args.ks or "64"
        args.epochs = args.epochs or 2
        args.threads = args.threads or "1"
        args.budget = 150.0 if args.budget is None else args.budget
    kept = keep_freed_memory()  # the stacked engine would switch it on at its first stack anyway
    epochs = args.epochs or (5 if args.full else 3)
    rounds = args.rounds or (5 if args.full else 3)
    ks = [int(k) for k in (args.ks or ("1,8,64,512" if args.full else "1,8,64")).split(",")]
    batches = [int(b) for b in (args.batches or "16,32,64,256").split(",")]
    models = args.models.split(",")
    thread_counts = [int(t) for t in (args.threads or "1,2").split(",")]
    if epochs < 2:
        p.error("--epochs must be at least 2: the first epoch is left out of the steady rate")

    print(f"torch {torch.__version__}, {os.cpu_count()} cpus, threads {','.join(map(str, thread_counts))} "
          f"(the first gives the headline), load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"at the start; freed memory kept in the process: {'yes' if kept else 'no'}")  # fmt: skip
    print(f"epochs {epochs} per instance (min_epochs = max_epochs; the first left out of the rates), "
          f"train size {args.train_size}, at least {rounds} rounds plain/stacked interleaved"
          f"{f' (more, up to {args.max_rounds}, within {args.budget:.0f} s)' if args.budget else ''}, "
          f"each plain repetition {args.plain_instances} instances")  # fmt: skip
    print("rates: steady instance-epochs per CPU-second (1 thread: of the training thread; more: of the "
          "process, all threads) and per wall-second; ratios per round, stacked / plain")
    tasks = _tasks(models, args.events)
    headline = math.nan
    started = time.perf_counter()
    for device_name in args.devices.split(","):
        device = torch.device(device_name)
        if device.type == "cuda" and not torch.cuda.is_available():
            print("\nCUDA: not available here, skipped")
            continue
        if device.type == "cuda":
            torch.backends.cudnn.allow_tf32 = False
        settings = TrainingSettings(
            early_stopping=EarlyStoppingSettings(min_epochs=epochs, window=2, max_epochs=epochs), device=device_name
        )
        warm = TrainingSettings(early_stopping=EarlyStoppingSettings(min_epochs=1, window=2, max_epochs=1), device=device_name)
        loaded = {name: task.load_data() for name, (task, _, _) in tasks.items()}
        rows: list[Row] = []
        for threads in thread_counts:
            torch.set_num_threads(threads)
            print(f"\n== {device_name}, {threads} torch thread{'s' if threads > 1 else ''}")
            for name, (task, base_cand, source) in tasks.items():
                data = loaded[name]
                fwd = forward_flops_per_example(task, base_cand, data)
                # per instance-epoch: forward + backward (~3x forward) on the sample, forward on the test set
                flops = 3 * fwd * args.train_size + fwd * data.test_size
                print(f"-- {name} ({source}); {3 * fwd / 1e6:.3f} MFLOP per training example, "
                      f"{flops / 1e9:.3f} GFLOP per instance-epoch (test set {data.test_size})")  # fmt: skip
                # warm-up (lazy kernel initialisation, allocator, the thread pool) outside the timings
                train_instance(task, base_cand, data, specs_for(1, min(args.train_size, 64))[0], warm)
                train_stacked(task, base_cand, data, specs_for(2, min(args.train_size, 64)), warm)
                for batch in batches:
                    rows += measure(task, base_cand, data, name, batch, ks, settings, epochs, rounds, flops, device,
                                    args, threads, noise_floor=threads == thread_counts[0])  # fmt: skip
        for h in [r for r in rows if r.model == "model2" and r.batch == 32 and r.name in ("64", "auto")]:
            what = "K=64 in one stack" if h.name == "64" else "the StackedExecutor's plan"
            cpu = "CPU-second of the training thread" if h.threads == 1 else "CPU-second of the process"
            print(f"\nHEADLINE ({device_name}, {h.threads} thread{'s' if h.threads > 1 else ''}): Model 2, batch 32, "
                  f"{what}: stacked / plain steady instance-epochs per {cpu} = {h.ratio.text()}; "
                  f"per wall-second {h.wall.text()}")  # fmt: skip
            if h.name == "64" and h.threads == thread_counts[0]:
                headline = h.ratio.median
    if args.dump:
        args.dump.write_text(json.dumps(args.dumped, indent=1))
    print(f"\nwall {time.perf_counter() - started:.0f} s, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")
    print(f"ratio={headline:.3f}")
    return 0


def measure(task, base_cand, data, name, batch, ks, settings, epochs, rounds, flops, device, args, threads,
            noise_floor) -> list[Row]:  # fmt: skip
    """One (model, batch, threads): the interleaved rounds, then one table row per stacked variant."""
    cand = Candidate.from_params({**base_cand.params, "batch_size": batch}, name=base_cand.name)
    n_plain = min(args.plain_instances, max(ks))
    cpu = cpu_clock(threads)
    reps: dict[str, list[Rep]] = {}
    peaks: list[float] = []
    plans: list[str] = []

    def record(key: str, run: Callable[[], list[Any]], units: int, **cap: int) -> Callable[[], float]:
        def rep() -> float:
            reps.setdefault(key, []).append(timed(run, device, units, **cap))
            if key == "plain":  # the matmul peak once per round, next to the plain loop
                peaks.append(matmul_peak(device, reps=3, clock=cpu))
            return reps[key][-1].rate(cpu)

        return rep

    plain = record("plain", lambda: [train_instance(task, cand, data, s, settings) for s in specs_for(n_plain, args.train_size)], n_plain)
    variants: dict[str, Callable[[], float]] = {}
    for k in ks:
        specs = specs_for(k, args.train_size)
        variants[str(k)] = record(str(k), lambda specs=specs: train_stacked(task, cand, data, specs, settings), 1)
        if args.vmap_only:
            variants[f"vmap {k}"] = record(
                f"vmap {k}", lambda specs=specs: train_stacked(task, cand, data, specs, settings, fast_layout=False), 1
            )
    big = specs_for(max(ks), args.train_size)

    def auto() -> list[Any]:
        results, plan = run_executor(task, cand, data, big, settings)
        plans.append(plan)
        return results

    if not args.quick:
        variants["auto"] = record("auto", auto, 1)
    half = name == "model2" and batch == 32 and max(ks) >= 2 and not args.quick
    if half:  # half the instances stop after half the epochs: does compaction keep the gain?
        long = settings.model_copy(update={"early_stopping": EarlyStoppingSettings(
            min_epochs=2 * epochs, window=2, max_epochs=2 * epochs)})  # fmt: skip
        variants["half"] = record(
            "half", lambda: train_stacked(task, cand, data, big, long), 1, capped=max(ks) // 2, cap=epochs
        )

    load = os.getloadavg()[0]
    start = time.perf_counter()
    interleave(plain, variants, rounds, budget_s=args.budget, max_rounds=args.max_rounds)
    took = time.perf_counter() - start
    plain_reps = reps["plain"]
    args.dumped.append({"model": name, "batch": batch, "threads": threads, "load": [load, os.getloadavg()[0]],
                        "reps": {key: [{"steady": r.steady_seconds, "total": r.total, "steady_epochs": r.steady_epochs}
                                       for r in rs] for key, rs in reps.items()}})  # fmt: skip

    def plain_rates(clock: str) -> list[float]:
        return [r.rate(clock) for r in plain_reps]

    def ratio(key: str, clock: str) -> Spread:
        return ratios(plain_rates(clock), [r.rate(clock) for r in reps[key]])

    peak = spread(peaks)
    plain_cpu, plain_wall = spread(plain_rates(cpu)), spread(plain_rates("wall"))
    plain_losses = [r.test_loss for r in plain_reps[0].results]
    seed_std = statistics.stdev(plain_losses) if len(plain_losses) > 1 else math.nan
    print(f"batch {batch}, {threads} thr, {len(reps[next(iter(variants))])} rounds in {took:.0f} s, load average "
          f"{load:.1f} -> {os.getloadavg()[0]:.1f}: plain steady i-ep per CPU-s {plain_cpu.text('.2f', '')}, per "
          f"wall-s {plain_wall.text('.2f', '')}; set-up {statistics.median(r.setup(cpu) for r in plain_reps):.3f} "
          f"CPU-s per instance; fp32 matmul peak {peak.text('.0f', ' GFLOP per CPU-s')}")  # fmt: skip
    print(f"{'batch':>5} {'K':>7} {'i-ep/CPU-s':>10} {'ratio per CPU-s [min..max]':>38} {'i-ep/wall-s':>11} "
          f"{'ratio per wall-s [min..max]':>38} {'set-up CPU-s':>12} {'plain GF/CPU-s':>14} {'stk GF/CPU-s':>12} "
          f"{'%peak':>6} {'max|dloss|':>10} {'seed std':>9}")  # fmt: skip
    out: list[Row] = []
    for key in variants:
        by_cpu, by_wall = ratio(key, cpu), ratio(key, "wall")
        ips = statistics.median(r.rate(cpu) for r in reps[key])
        ips_wall = statistics.median(r.rate("wall") for r in reps[key])
        dl = math.nan if key == "half" else _max_dloss(plain_reps[0].results, reps[key][0].results)
        label = {"auto": "auto", "half": f"half {max(ks)}"}.get(key, key)
        print(f"{batch:>5} {label:>7} {ips:>10.2f} {by_cpu.text():>38} {ips_wall:>11.2f} {by_wall.text():>38} "
              f"{statistics.median(r.setup(cpu) for r in reps[key]):>12.2f} {plain_cpu.median * flops / 1e9:>14.2f} "
              f"{ips * flops / 1e9:>12.2f} {100 * ips * flops / 1e9 / peak.median:>5.1f}% {dl:>10.2e} {seed_std:>9.2e}"
              + (f"  ({max(ks)} jobs, executor: {plans[0]})" if key == "auto" else ""), flush=True)  # fmt: skip
        out.append(Row(name, batch, threads, key, by_cpu, by_wall))
    if half:
        full = ratio(str(max(ks)), cpu)
        halved = ratio("half", cpu)
        share = spread([h / f for h, f in zip(halved.values, full.values, strict=True)])
        print(f"half-stopped: K={max(ks)}, {max(ks) // 2} instances stop after {epochs} of {2 * epochs} epochs: "
              f"{halved.text()} plain per CPU-s, {share.text('.2f', '')} of the full stack's ratio", flush=True)  # fmt: skip
    if noise_floor and name == "model2" and batch == 32 and device.type == "cpu" and not args.quick:
        # the floating-point noise floor: the same plain loop with 1 and with 2 threads (other
        # summation orders in the kernels)
        other = 2 if threads == 1 else 1
        torch.set_num_threads(other)
        try:
            again = [train_instance(task, cand, data, s, settings) for s in specs_for(n_plain, args.train_size)]
        finally:
            torch.set_num_threads(threads)
        print(f"noise floor: plain loop, {threads} thread(s) vs {other}: max|dloss| "
              f"{_max_dloss(plain_reps[0].results, again):.2e} over {n_plain} instances (seed std {seed_std:.2e}); "
              f"the stacked engine's difference is of this kind", flush=True)  # fmt: skip
    return out


if __name__ == "__main__":
    raise SystemExit(main())
