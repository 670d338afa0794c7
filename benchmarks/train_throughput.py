"""Training throughput: the plain one-instance loop against the stacked engine, in one run.

Both engines train the same instances (same seeds, same samples, same data, same epochs). The
figure is **steady-state instance-epochs per second**: every instance's first epoch and its
set-up (sampling, building and initialising the models, the first kernel calls) are left out,
and reported apart. Both engines call ``EarlyStopping.update`` once per instance after each
epoch's evaluation; those calls are the clock (:class:`EpochClock`): an instance's steady time
runs from its first update to its last.

The method (``benchmarks/tools/interleave.py``): plain and stacked repetitions alternate,
``plain, stacked K..., plain, stacked K..., ..., plain``, ``--rounds`` times; each stacked
repetition's ratio is taken against the geometric mean of the plain repetitions either side of
it, and the printed ratio is the median over the rounds with its spread (min..max, width). A
``--quick`` run measures the same quantity as the default run with fewer configurations.

Printed per model, batch size and stack size K:

* ``plain`` and ``stacked`` steady instance-epochs/s (medians) and the ratio (stacked / plain);
* set-up: seconds per plain instance and per stack spent outside the steady epochs;
* the achieved GFLOP/s of each (the convolutions and dense layers: 3x the forward FLOPs per
  training example, 1x per test example, the test set being scored every epoch) against the fp32
  matmul peak, itself timed once per round (median of the rounds' bests);
* fidelity: for the instances both engines trained, the largest |test loss stacked - plain|
  next to the across-seed standard deviation of the plain test losses; for Model 2 at batch 32
  also the noise floor, the same difference between the plain loop with one thread and with the
  default threads. Short trainings on small samples stay far below the seed spread; longer
  noisy ones (e.g. ``--train-size 2000``, where the per-epoch test loss jumps by 20-50 %) are
  chaotic: ulp-level differences grow to the size of the seed spread after a few hundred Adam
  steps, for the thread count as for the engine.

Models: the synthetic task's MLP, and the paper's Model 1 and Model 2 (``robust_calo``, on
freshly simulated showers; a stand-in conv net of the same shapes if the plugin is missing).
Headline: Model 2, batch 32, K = 64, median stacked / plain steady instance-epochs per second;
the last line printed is exactly ``ratio=<number>`` (that headline, on the last device measured;
``nan`` when the run did not include it).

Early stopping: with Model 2 at batch 32 in a run that is not ``--quick``, one more stack of the
largest K joins the rounds, in which half the instances stop after half the epochs (the stack
is compacted when they stop). Printed: its ratio to the plain loop and the share of the full
stack's ratio it keeps (median over the rounds).

    .venv/bin/python benchmarks/train_throughput.py            # all models and batches: long
    .venv/bin/python benchmarks/train_throughput.py --quick    # Model 2, batch 32, K 64, 2 epochs, 3 rounds
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


def matmul_peak(device: torch.device, size: int = 2048, reps: int = 8) -> float:
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    _sync(device)
    best = math.inf
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


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
        self.marks: dict[EarlyStopping, list[float]] = {}  # keyed by the object: ids could be reused
        self.capped, self.cap = capped, cap
        self._original = EarlyStopping.update

    def __enter__(self) -> EpochClock:
        clock, original = self, self._original

        def update(stopper: EarlyStopping, loss: float) -> str | None:
            marks = clock.marks.setdefault(stopper, [])
            marks.append(time.perf_counter())
            reason = original(stopper, loss)
            if reason is None and clock.capped and len(marks) >= clock.cap and list(clock.marks).index(stopper) < clock.capped:
                return "epoch_cap"
            return reason

        EarlyStopping.update = update  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        EarlyStopping.update = self._original  # type: ignore[method-assign]

    def steady(self) -> tuple[float, int]:
        """(seconds, instance-epochs) of the steady epochs: each instance's epochs after its
        first, timed over the union of the instances' first-to-last intervals (the plain loop's
        instances follow each other and add up; a stack's rows overlap and count once)."""
        epochs = sum(len(m) - 1 for m in self.marks.values())
        seconds, end = 0.0, -math.inf
        for lo, hi in sorted((m[0], m[-1]) for m in self.marks.values()):
            lo = max(lo, end)
            if hi > lo:
                seconds += hi - lo
                end = hi
        return seconds, epochs


@dataclass
class Rep:
    """One timed repetition: wall time, its steady part, and what it trained."""

    wall: float
    steady_seconds: float
    steady_epochs: int
    epochs: int  # all instance-epochs, the first ones included
    units: int  # plain: instances; stacked: stacks (what the set-up is reported per)
    results: list[Any] = field(repr=False)

    @property
    def rate(self) -> float:
        """Steady instance-epochs per second."""
        return self.steady_epochs / self.steady_seconds if self.steady_seconds > 0 else math.nan

    @property
    def setup(self) -> float:
        """Seconds per unit outside the steady rate: set-up and the first epochs' excess."""
        return max(0.0, self.wall - self.epochs / self.rate) / self.units


def timed(run: Callable[[], list[Any]], device: torch.device, units: int, capped: int = 0, cap: int = 0) -> Rep:
    with EpochClock(capped, cap) as clock:
        _sync(device)
        t = time.perf_counter()
        results = run()
        _sync(device)
        wall = time.perf_counter() - t
    seconds, steady = clock.steady()
    if steady == 0:
        raise SystemExit("no steady epochs to time: --epochs must be at least 2")
    return Rep(wall, seconds, steady, sum(r.epochs for r in results), units, results)


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
    name: str  # K, "vmap K", "auto" or "half"
    ratio: Spread


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="K up to 512, 5 epochs, 5 rounds")
    p.add_argument("--quick", action="store_true",
                   help="Model 2, batch 32 (or --batches), K 64, 2 epochs (1 steady), 3 rounds, no executor row")
    p.add_argument("--models", default="mlp,model1,model2", help="comma list of mlp, model1, model2")
    p.add_argument("--batches", default=None, help="batch sizes (default 16,32,64,256; --quick 32)")
    p.add_argument("--ks", default=None, help="stack sizes (default 1,8,64; with --full 1,8,64,512)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per instance, at least 2 (default 3; --full 5)")
    p.add_argument("--rounds", type=int, default=None, help="interleaved plain/stacked rounds (default 3; --full 5)")
    p.add_argument("--train-size", type=int, default=512)
    p.add_argument("--events", type=int, default=4000, help="simulated showers (half pool, half test set)")
    p.add_argument("--plain-instances", type=int, default=8, help="instances each plain repetition trains")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--devices", default="cpu,cuda")
    p.add_argument("--vmap-only", action="store_true", help="also time the stacked engine without its layout tricks")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.batches = "model2", args.batches or "32"
        args.ks = args.ks or "64"
        args.epochs = args.epochs or 2
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = keep_freed_memory()  # the stacked engine would switch it on at its first stack anyway
    epochs = args.epochs or (5 if args.full else 3)
    rounds = args.rounds or (5 if args.full else 3)
    ks = [int(k) for k in (args.ks or ("1,8,64,512" if args.full else "1,8,64")).split(",")]
    batches = [int(b) for b in (args.batches or "16,32,64,256").split(",")]
    models = args.models.split(",")
    if epochs < 2:
        p.error("--epochs must be at least 2: the first epoch is left out of the steady rate")

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.1f} at the start; freed memory kept in the process: "
          f"{'yes' if kept else 'no'}")  # fmt: skip
    print(f"epochs {epochs} per instance (min_epochs = max_epochs; the first left out of the rates), "
          f"train size {args.train_size}, {rounds} rounds plain/stacked interleaved, "
          f"each plain repetition {args.plain_instances} instances")  # fmt: skip
    tasks = _tasks(models, args.events)
    headline = math.nan
    for device_name in args.devices.split(","):
        device = torch.device(device_name)
        if device.type == "cuda" and not torch.cuda.is_available():
            print("\nCUDA: not available here, skipped")
            continue
        if device.type == "cuda":
            torch.backends.cudnn.allow_tf32 = False
        print(f"\n== {device_name}")
        settings = TrainingSettings(
            early_stopping=EarlyStoppingSettings(min_epochs=epochs, window=2, max_epochs=epochs), device=device_name
        )
        rows: list[Row] = []
        for name, (task, base_cand, source) in tasks.items():
            data = task.load_data()
            fwd = forward_flops_per_example(task, base_cand, data)
            # per instance-epoch: forward + backward (~3x forward) on the sample, forward on the test set
            flops = 3 * fwd * args.train_size + fwd * data.test_size
            print(f"-- {name} ({source}); {3 * fwd / 1e6:.3f} MFLOP per training example, "
                  f"{flops / 1e9:.3f} GFLOP per instance-epoch (test set {data.test_size})")  # fmt: skip
            # warm-up (lazy kernel initialisation, allocator) outside the timings
            warm = TrainingSettings(early_stopping=EarlyStoppingSettings(min_epochs=1, window=2, max_epochs=1), device=device_name)
            train_instance(task, base_cand, data, specs_for(1, min(args.train_size, 64))[0], warm)
            train_stacked(task, base_cand, data, specs_for(2, min(args.train_size, 64)), warm)
            for batch in batches:
                rows += measure(task, base_cand, data, name, batch, ks, settings, epochs, rounds, flops, device, args)
        for h in [r for r in rows if r.model == "model2" and r.batch == 32 and r.name in ("64", "auto")]:
            what = "K=64 in one stack" if h.name == "64" else "the StackedExecutor's plan"
            print(f"\nHEADLINE ({device_name}): Model 2, batch 32, {what}: stacked / plain steady "
                  f"instance-epochs/s = {h.ratio.text()}")  # fmt: skip
            if h.name == "64":
                headline = h.ratio.median
    print(f"ratio={headline:.3f}")
    return 0


def measure(task, base_cand, data, name, batch, ks, settings, epochs, rounds, flops, device, args) -> list[Row]:
    """One (model, batch): the interleaved rounds, then one table row per stacked variant."""
    cand = Candidate.from_params({**base_cand.params, "batch_size": batch}, name=base_cand.name)
    n_plain = min(args.plain_instances, max(ks))
    reps: dict[str, list[Rep]] = {}
    peaks: list[float] = []
    plans: list[str] = []

    def record(key: str, run: Callable[[], list[Any]], units: int, **cap: int) -> Callable[[], float]:
        def rep() -> float:
            reps.setdefault(key, []).append(timed(run, device, units, **cap))
            if key == "plain":  # the matmul peak once per round, next to the plain loop
                peaks.append(matmul_peak(device, reps=3))
            return reps[key][-1].rate

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

    plain_rates, _ = interleave(plain, variants, rounds)
    plain_reps = reps["plain"]
    peak = spread(peaks)
    plain_ips = statistics.median(plain_rates)
    plain_losses = [r.test_loss for r in plain_reps[0].results]
    seed_std = statistics.stdev(plain_losses) if len(plain_losses) > 1 else math.nan
    print(f"batch {batch}: plain {plain_ips:.2f} i-ep/s steady (rounds: {spread(plain_rates).text('.2f', '')}), "
          f"set-up {statistics.median(r.setup for r in plain_reps):.3f} s per instance; "
          f"fp32 matmul peak {peak.text('.0f', ' GFLOP/s')}")  # fmt: skip
    print(f"{'batch':>5} {'K':>7} {'stacked i-ep/s':>14} {'ratio stacked/plain [min..max]':>40} {'set-up s':>8} "
          f"{'plain GF/s':>10} {'stk GF/s':>9} {'%peak':>6} {'max|dloss|':>10} {'seed std':>9}")  # fmt: skip
    out: list[Row] = []
    for key in variants:
        ratio = ratios(plain_rates, [r.rate for r in reps[key]])
        ips = statistics.median(r.rate for r in reps[key])
        dl = math.nan if key == "half" else _max_dloss(plain_reps[0].results, reps[key][0].results)
        label = {"auto": "auto", "half": f"half {max(ks)}"}.get(key, key)
        print(f"{batch:>5} {label:>7} {ips:>14.2f} {ratio.text():>40} {statistics.median(r.setup for r in reps[key]):>8.2f} "
              f"{plain_ips * flops / 1e9:>10.2f} {ips * flops / 1e9:>9.2f} {100 * ips * flops / 1e9 / peak.median:>5.1f}% "
              f"{dl:>10.2e} {seed_std:>9.2e}" + (f"  ({max(ks)} jobs, executor: {plans[0]})" if key == "auto" else ""),
              flush=True)  # fmt: skip
        out.append(Row(name, batch, key, ratio))
    if half:
        full = ratios(plain_rates, [r.rate for r in reps[str(max(ks))]])
        halved = ratios(plain_rates, [r.rate for r in reps["half"]])
        share = spread([h / f for h, f in zip(halved.values, full.values, strict=True)])
        print(f"half-stopped: K={max(ks)}, {max(ks) // 2} instances stop after {epochs} of {2 * epochs} epochs: "
              f"{halved.text()} plain, {share.text('.2f', '')} of the full stack's ratio", flush=True)  # fmt: skip
    if name == "model2" and batch == 32 and device.type == "cpu" and torch.get_num_threads() > 1 and not args.quick:
        # the floating-point noise floor: the same plain loop with one thread (other summation
        # orders in the kernels) against the default threads
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            one = [train_instance(task, cand, data, s, settings) for s in specs_for(n_plain, args.train_size)]
        finally:
            torch.set_num_threads(threads)
        print(f"noise floor: plain loop, 1 thread vs {threads}: max|dloss| {_max_dloss(plain_reps[0].results, one):.2e} "
              f"over {n_plain} instances (seed std {seed_std:.2e}); the stacked engine's difference is of this kind",
              flush=True)  # fmt: skip
    return out


if __name__ == "__main__":
    raise SystemExit(main())
