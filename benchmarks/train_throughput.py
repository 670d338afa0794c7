"""Training throughput: the plain one-instance loop against the stacked engine, in one run.

Both engines train the same instances (same seeds, same samples, same data, same epochs); the
figure is instance-epochs per second. Printed per model, batch size and stack size K:

* ``plain`` and ``stacked`` instance-epochs/s and their ratio (stacked / plain);
* the achieved GFLOP/s of each (the convolutions and dense layers: 3x the forward FLOPs per
  training example, 1x per test example, the test set being scored every epoch) against the fp32
  matmul peak timed at the start of the same run;
* fidelity: for the instances both engines trained, the largest |test loss stacked - plain|
  next to the across-seed standard deviation of the plain test losses; for Model 2 at batch 32
  also the noise floor, the same difference between the plain loop with one thread and with the
  default threads. Short trainings on small samples stay far below the seed spread; longer
  noisy ones (e.g. ``--train-size 2000``, where the per-epoch test loss jumps by 20-50 %) are
  chaotic: ulp-level differences grow to the size of the seed spread after a few hundred Adam
  steps, for the thread count as for the engine (measured: 8e-3 and 1.4e-2 against a seed std
  of 1.7e-2, Model 2, 3 epochs of 2,000 examples).

Models: the synthetic task's MLP, and the paper's Model 1 and Model 2 (``robust_calo``, on
freshly simulated showers; a stand-in conv net of the same shapes if the plugin is missing).
Headline: Model 2, batch 32, K = 64, stacked / plain instance-epochs per second; the last line
printed is exactly ``ratio=<number>`` (that headline, on the last device measured; ``nan`` when
the run did not include it).

Early stopping: with Model 2 at batch 32 in the run, one more stack of the largest K is timed
in which half the instances stop after half the epochs (their epoch cap is halved; the stack is
compacted when they stop). Printed: its ratio to the plain loop and the share of the full stack's
ratio it keeps.

    .venv/bin/python benchmarks/train_throughput.py            # a few minutes on 2 cores
    .venv/bin/python benchmarks/train_throughput.py --quick    # under a minute: Model 2, batch 32, K 8 and 64, 1 epoch
    .venv/bin/python benchmarks/train_throughput.py --full     # K up to 512, more epochs
    .venv/bin/python benchmarks/train_throughput.py --threads 1 --models model2 --batches 32

The plain loop's throughput does not depend on K (instances are independent), so it is timed
once per (model, batch) on the first ``--plain-instances`` instances; the stacked engine is
timed for each K. Timings on a shared machine are noisy: compare ratios within one run.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from robustcli.config import EarlyStoppingSettings, TrainingSettings  # noqa: E402
from robustcli.task import Candidate, Loss, SearchSpace, Task, TaskData  # noqa: E402
from robustcli.training.instance import InstanceSpec, train_instance  # noqa: E402
from robustcli.training.seeds import derive_seeds  # noqa: E402
from robustcli.training import stacked as stacked_engine  # noqa: E402
from robustcli.training.cpu_memory import keep_freed_memory  # noqa: E402
from robustcli.training.early_stopping import EarlyStopping  # noqa: E402
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


# -- one measurement -----------------------------------------------------------------------------
@dataclass
class Row:
    model: str
    batch: int
    k: int
    plain_ips: float
    stacked_ips: float
    plain_gflops: float
    stacked_gflops: float
    max_dloss: float
    seed_std: float
    compared: int
    label: str = ""


def specs_for(count: int, train_size: int) -> list[InstanceSpec]:
    out = []
    for i in range(count):
        s = derive_seeds(0, i)
        out.append(InstanceSpec(i, s.init_seed, s.data_seed, train_size))
    return out


def run_plain(task, cand, data, specs, settings, device):
    _sync(device)
    t = time.perf_counter()
    results = [train_instance(task, cand, data, s, settings) for s in specs]
    _sync(device)
    return results, time.perf_counter() - t


def run_stacked(task, cand, data, specs, settings, device, fast_layout=True):
    _sync(device)
    t = time.perf_counter()
    results = train_stacked(task, cand, data, specs, settings, fast_layout=fast_layout)
    _sync(device)
    return results, time.perf_counter() - t


def run_half_stopped(task, cand, data, specs, settings, device):
    """One stack in which the first half of the instances stop after half the epochs (their
    epoch cap is halved: the stacked engine builds one EarlyStopping per instance, in spec
    order); the others run all the epochs. Returns the results, the seconds and the
    instance-epochs trained."""
    full = settings.early_stopping
    short = full.model_copy(update={"max_epochs": max(1, full.max_epochs // 2), "min_epochs": max(1, full.max_epochs // 2)})
    caps = iter([short] * (len(specs) // 2) + [full] * (len(specs) - len(specs) // 2))

    def stopper(_settings):
        return EarlyStopping(next(caps))

    original = stacked_engine.EarlyStopping
    stacked_engine.EarlyStopping = stopper  # type: ignore[assignment]
    try:
        results, seconds = run_stacked(task, cand, data, specs, settings, device)
    finally:
        stacked_engine.EarlyStopping = original  # type: ignore[assignment]
    return results, seconds, sum(r.epochs for r in results)


def run_executor(task, cand, data, specs, settings, device):
    """The StackedExecutor's own plan (stack size, fallbacks) for these jobs; results in spec order."""
    from robustcli.execution.stacked import StackedExecutor

    ex = StackedExecutor()
    _sync(device)
    t = time.perf_counter()
    by_index = {r.spec.index: r for _, r in ex.run(task, data, [(cand, s) for s in specs], settings)}
    _sync(device)
    engine, k = ex.decisions[-1][1], ex.decisions[-1][3]
    return [by_index[s.index] for s in specs], time.perf_counter() - t, f"{engine} K={k}" if engine == "stacked" else engine


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--full", action="store_true", help="K up to 512 and 5 epochs")
    p.add_argument("--quick", action="store_true",
                   help="under a minute on 2 cores: Model 2, batch 32, K 8 and 64, 1 epoch (2 for the half-stopped stack)")
    p.add_argument("--models", default="mlp,model1,model2", help="comma list of mlp, model1, model2")
    p.add_argument("--batches", default="16,32,64,256")
    p.add_argument("--ks", default=None, help="stack sizes (default 1,8,64; with --full 1,8,64,512)")
    p.add_argument("--epochs", type=int, default=None, help="epochs per instance (default 3; --full 5)")
    p.add_argument("--train-size", type=int, default=512)
    p.add_argument("--events", type=int, default=4000, help="simulated showers (half pool, half test set)")
    p.add_argument("--plain-instances", type=int, default=8, help="instances the plain loop trains per config")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    p.add_argument("--devices", default="cpu,cuda")
    p.add_argument("--vmap-only", action="store_true", help="also time the stacked engine without its layout tricks")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.batches = "model2", "32"
        args.ks = args.ks or "8,64"
        args.epochs = args.epochs or 1
        args.plain_instances = min(args.plain_instances, 4)
    if args.threads:
        torch.set_num_threads(args.threads)
    kept = keep_freed_memory()  # the stacked engine would switch it on at its first stack anyway
    epochs = args.epochs or (5 if args.full else 3)
    ks = [int(k) for k in (args.ks or ("1,8,64,512" if args.full else "1,8,64")).split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    models = args.models.split(",")

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.1f} (timings on a shared machine are noisy); "
          f"freed memory kept in the process: {'yes' if kept else 'no'}")  # fmt: skip
    print(f"epochs {epochs} per instance (min_epochs = max_epochs), train size {args.train_size}, "
          f"plain loop on the first {args.plain_instances} instances of each config")  # fmt: skip
    tasks = _tasks(models, args.events)
    headline = math.nan
    for device_name in args.devices.split(","):
        device = torch.device(device_name)
        if device.type == "cuda" and not torch.cuda.is_available():
            print("\nCUDA: not available here, skipped")
            continue
        if device.type == "cuda":
            torch.backends.cudnn.allow_tf32 = False
        peak = matmul_peak(device)
        print(f"\n== {device_name}: fp32 matmul peak {peak:.1f} GFLOP/s (2048^3, best of 8)")
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
            print(f"{'batch':>5} {'K':>4} {'plain i-ep/s':>12} {'stacked i-ep/s':>14} {'ratio':>6} "
                  f"{'plain GF/s':>10} {'stk GF/s':>9} {'%peak':>6} {'max|dloss|':>10} {'seed std':>9}")  # fmt: skip
            # warm-up (lazy kernel initialisation, allocator) outside the timings
            warm = TrainingSettings(early_stopping=EarlyStoppingSettings(min_epochs=1, window=2, max_epochs=1), device=device_name)
            run_plain(task, base_cand, data, specs_for(1, min(args.train_size, 64)), warm, device)
            run_stacked(task, base_cand, data, specs_for(2, min(args.train_size, 64)), warm, device)
            for batch in batches:
                cand = Candidate.from_params({**base_cand.params, "batch_size": batch}, name=base_cand.name)
                n_plain = min(args.plain_instances, max(ks))
                plain, t_plain = run_plain(task, cand, data, specs_for(n_plain, args.train_size), settings, device)
                plain_ips = n_plain * epochs / t_plain
                plain_losses = [r.test_loss for r in plain]
                seed_std = statistics.stdev(plain_losses) if len(plain_losses) > 1 else math.nan
                for k in ks + ["auto"]:
                    if k == "auto":  # what the StackedExecutor does with the largest K's jobs
                        k = max(ks)
                        stacked, t_stk, plan = run_executor(task, cand, data, specs_for(k, args.train_size), settings, device)
                        variants = [(f"auto: {plan}", None)]
                    else:
                        variants = [("", True)] + ([("vmap ", False)] if args.vmap_only else [])
                    specs = specs_for(k, args.train_size)
                    for label, fast in variants:
                        if fast is not None:
                            stacked, t_stk = run_stacked(task, cand, data, specs, settings, device, fast_layout=fast)
                        ips = k * epochs / t_stk
                        both = min(k, n_plain)
                        dl = max(abs(a.test_loss - b.test_loss) for a, b in zip(plain[:both], stacked[:both]))
                        gf = lambda ips_: ips_ * flops / 1e9  # noqa: E731
                        row = Row(name, batch, k, plain_ips, ips, gf(plain_ips), gf(ips), dl, seed_std, both, label)
                        rows.append(row)
                        kname = "auto" if fast is None else label + str(k)
                        print(f"{batch:>5} {kname:>4} {plain_ips:>12.2f} {ips:>14.2f} {ips / plain_ips:>5.2f}x "
                              f"{row.plain_gflops:>10.2f} {row.stacked_gflops:>9.2f} {100 * row.stacked_gflops / peak:>5.1f}% "
                              f"{dl:>10.2e} {seed_std:>9.2e}" + (f"  ({k} jobs, executor: {label[6:]})" if fast is None else ""),
                              flush=True)  # fmt: skip
                if name == "model2" and batch == 32 and device.type == "cpu" and torch.get_num_threads() > 1:
                    # the floating-point noise floor: the same plain loop with one thread (other
                    # summation orders in the kernels) against the default threads
                    threads = torch.get_num_threads()
                    torch.set_num_threads(1)
                    try:
                        one, _ = run_plain(task, cand, data, specs_for(n_plain, args.train_size), settings, device)
                    finally:
                        torch.set_num_threads(threads)
                    floor = max(abs(a.test_loss - b.test_loss) for a, b in zip(plain, one))
                    print(f"noise floor: plain loop, 1 thread vs {threads}: max|dloss| {floor:.2e} over {n_plain} "
                          f"instances (seed std {seed_std:.2e}); the stacked engine's difference is of this kind", flush=True)
                if name == "model2" and batch == 32 and len(ks) and max(ks) >= 2:
                    # half the instances stop after half the epochs: compaction keeps the gain?
                    k = max(ks)
                    full_row = next(r for r in rows if r.model == name and r.batch == batch and r.k == k and not r.label)
                    long = TrainingSettings(
                        early_stopping=EarlyStoppingSettings(min_epochs=2 * epochs, window=2, max_epochs=2 * epochs),
                        device=device_name,
                    )
                    _, t_half, inst_epochs = run_half_stopped(task, cand, data, specs_for(k, args.train_size), long, device)
                    half_ips = inst_epochs / t_half
                    share = (half_ips / plain_ips) / (full_row.stacked_ips / plain_ips)
                    print(f"half-stopped: K={k}, {k // 2} instances stop after {epochs} of {2 * epochs} epochs: "
                          f"stacked {half_ips:.2f} i-ep/s = {half_ips / plain_ips:.2f}x plain, "
                          f"{100 * share:.0f}% of the full stack's {full_row.stacked_ips / plain_ips:.2f}x "
                          f"({100 * (half_ips / plain_ips - 1) / max(1e-9, full_row.stacked_ips / plain_ips - 1):.0f}% "
                          f"of the gain above 1x)", flush=True)  # fmt: skip
        for h in [r for r in rows if r.model == "model2" and r.batch == 32 and r.k == 64 and r.label in ("", )] + [
            r for r in rows if r.model == "model2" and r.batch == 32 and r.label.startswith("auto")
        ]:
            what = "K=64 in one stack" if not h.label else f"{h.k} instances through the StackedExecutor ({h.label[6:]})"
            print(f"\nHEADLINE ({device_name}): Model 2, batch 32, {what}: stacked {h.stacked_ips:.1f} vs plain "
                  f"{h.plain_ips:.1f} instance-epochs/s = {h.stacked_ips / h.plain_ips:.2f}x; "
                  f"test-loss difference max {h.max_dloss:.2e} over {h.compared} instances "
                  f"vs across-seed std {h.seed_std:.2e} ({100 * h.max_dloss / h.seed_std:.2f}%)")  # fmt: skip
            if not h.label and h.k == 64:
                headline = h.stacked_ips / h.plain_ips
    print(f"ratio={headline:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
