"""Selection wall time: the demo study end to end, the plain loop against the stacked engine.

Runs ``robust baseline`` once, untimed (engine-independent: both runs read its result for the
paper's baseline cut; it also generates and caches the data on first use), then ``robust select`` on the same study file twice, each into a fresh copy of
that store, once with ``--engine plain`` and once with the default engine. Each select is timed
as a whole command (start-up, data loading, training, MLflow writes, the final instances and
the summary). The engines alternate, ``plain, stacked, plain, stacked, ..., plain``
(``--rounds``; ``benchmarks/tools/interleave.py``): each stacked run is compared with the plain
runs either side of it, and the figures printed are medians with their spread. ``--quick`` runs
a smaller study: a check that the script runs, not the demo's figure.

    .venv/bin/python benchmarks/selection_wall_time.py            # the demo study (minutes)
    .venv/bin/python benchmarks/selection_wall_time.py --quick    # a reduced demo (under a minute)
    .venv/bin/python benchmarks/selection_wall_time.py -c examples/studies/paper-energy.toml --extra "--budget 200"

The engines differ by floating-point reordering, which can move a loss across a cut, and early
stopping then makes the work itself differ: besides each wall time, the script counts the
instance-epochs each run trained (from its store), and the last line is
``ratio=<plain / stacked wall time per instance-epoch>`` (median over the rounds).

Each command's CPU time (user + system, ``getrusage(RUSAGE_CHILDREN)``) is printed beside its
wall time, with the same ratio per CPU-second: on a shared machine the wall ratio moves with the
neighbours' load, the CPU one much less (``benchmarks/tools/interleave.py``). The headline stays
the wall time, what the study's user waits for; with torch's default threads the CPU time also
counts the threads' spin-waits, so the CPU ratio is a check on the wall one, not the same claim.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.tools.interleave import child_cpu_seconds, interleave, ratios, spread  # noqa: E402

#: --quick: the demo's study at a reduced size (fewer events to generate, smaller samples, fewer epochs)
QUICK = ["-o", "events=20000", "--train-size", "500", "--min-epochs", "4", "--window", "2", "--max-epochs", "8"]


def robust_command() -> list[str]:
    exe = Path(sys.executable).with_name("robust")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "robustcli"]


def _task_options(extra: list[str]) -> list[str]:
    out = []
    for i, arg in enumerate(extra):
        if arg in ("-o", "--task-option") and i + 1 < len(extra):
            out += [arg, extra[i + 1]]
    return out


def instance_epochs(db: Path) -> int:
    """Epochs trained by all the instance runs in the store ``db``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    total = 0
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id], "tags.`robust.kind` = 'instance'", max_results=50000):
            total += int(run.data.metrics.get("epochs", 0))
    return total


def run(cmd: list[str]) -> tuple[float, dict]:
    """(wall seconds, the command's JSON output with its CPU seconds as ``"cpu"``)."""
    cpu, t = child_cpu_seconds(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t, child_cpu_seconds() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout)
    if isinstance(out, dict):
        out["cpu"] = cpu
    return wall, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--config", type=Path, default=ROOT / "examples" / "studies" / "demo.toml")
    p.add_argument("--quick", action="store_true", help="the study at a reduced size: under a minute on 2 cores")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds (plain, others, ..., plain)")
    p.add_argument("--extra", default="", help="more `robust select` options, one string")
    p.add_argument("--engines", default="plain,stacked",
                   help="comma list of plain, stacked (in process) and local (the stacked engine in a local "
                        "process pool, one thread per worker)")  # fmt: skip
    args = p.parse_args(argv)
    extra = (QUICK if args.quick else []) + shlex.split(args.extra)
    robust = robust_command()

    print(f"study {args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config}"
          f"{' (--quick: ' + ' '.join(QUICK) + ')' if args.quick else ''}; {os.cpu_count()} cpus, "
          f"load average {os.getloadavg()[0]:.1f} (a shared machine: compare within one run)", flush=True)  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="robust-selection-bench-"))
    try:
        template = work / "template.db"
        # the baselines (and, on first use, the data) outside the timings: both runs read them
        t = time.perf_counter()
        n = "2" if args.quick else "5"
        run([*robust, "baseline", "-c", str(args.config), "--instances", n, "--json",
             "--tracking-uri", f"sqlite:///{template}", *_task_options(extra)])  # fmt: skip
        print(f"robust baseline --instances {n}: {time.perf_counter() - t:.1f} s, data generation included on "
              f"first use (outside the timings)", flush=True)  # fmt: skip

        engines = args.engines.split(",")
        outputs: dict[str, list[dict]] = {e: [] for e in engines}

        def select(engine: str):
            def rate() -> float:
                db = work / f"{engine}-{len(outputs[engine])}.db"
                shutil.copy(template, db)
                how = ["--engine", "stacked", "--executor", "local"] if engine == "local" else ["--engine", engine, "--executor", "inprocess"]
                cmd = [*robust, "select", "-c", str(args.config), *how, "--json",
                       "--tracking-uri", f"sqlite:///{db}", *extra]  # fmt: skip
                wall, out = run(cmd)
                out["wall"], out["instance_epochs"] = wall, instance_epochs(db)
                outputs[engine].append(out)
                best = (out.get("summary") or [{}])[0]
                stats = best.get("statistics", {}).get("mean", {})
                mean = stats.get("value") if isinstance(stats, dict) else stats
                print(f"{engine:>8}: {wall:7.1f} s ({out['cpu']:.1f} CPU-s), {out['trained']} step trainings + final instances "
                      f"({best.get('instances', 0)} of the survivor), {out['instance_epochs']} instance-epochs "
                      f"({1000 * wall / max(1, out['instance_epochs']):.0f} ms each), selected {out['selected']} "
                      f"(mean loss {mean if mean is None else f'{mean:.4f}'})", flush=True)  # fmt: skip
                return max(1, out["instance_epochs"]) / wall

            return rate

        # the first engine (plain) and the others alternate: A B A B ... A (benchmarks/tools/interleave.py)
        first, others = engines[0], engines[1:]
        base, rates = interleave(select(first), {e: select(e) for e in others}, args.rounds)
        print()
        for e in others:
            o0, o = outputs[first][0], outputs[e][0]
            if (o["selected"], o["trained"]) != (o0["selected"], o0["trained"]):
                print(f"note: {first} and {e} took different paths ({o0['trained']} vs {o['trained']} step trainings, "
                      f"selected {o0['selected']} vs {o['selected']}): floating-point differences between the "
                      f"engines move losses near a cut; compare the time per instance-epoch")  # fmt: skip
            walls = ratios([o["wall"] for o in outputs[first]], [o["wall"] for o in outputs[e]])
            cpu_rates = {x: [max(1, o["instance_epochs"]) / o["cpu"] for o in outputs[x]] for x in (first, e)}
            print(f"{e} against {first}: per instance-epoch {ratios(base, rates[e]).text()}; "
                  f"wall time {first} / {e} {spread([1 / w for w in walls.values]).text()}; "
                  f"per instance-epoch by CPU time {ratios(cpu_rates[first], cpu_rates[e]).text()}")  # fmt: skip
        if others:
            # headline: the default (stacked, in process) against the plain loop, per instance-epoch
            # (the early stopping and the cuts make the work itself differ between engines)
            print(f"ratio={ratios(base, rates['stacked' if 'stacked' in others else others[0]]).median:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
