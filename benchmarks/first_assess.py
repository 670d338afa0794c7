"""The fixed cost of a first `robust assess` (issue 15, item 11): a fresh store against a reused one.

The command, as a user's first run on a small task: ``robust assess --task synthetic --candidate
small --instances 4 --train-size 200``. Two ways, as whole CLI processes:

* ``first`` (B): into a fresh folder with no store: the store is created (MLflow's schema and
  its migrations), then the 4 instances train and are logged;
* ``again`` (A): the same command into a store that already holds the 4 instances (made once
  before the rounds, unmeasured): it trains nothing, so it is the CLI's start, its imports (torch,
  MLflow), the data and the store's reads.

They alternate, ``again first again first ... again`` (``benchmarks/tools/interleave.py``); each
``first`` is divided by the geometric mean of the ``again`` either side. Last line:
``ratio=<first / again>`` (median); what ``first`` pays beyond ``again`` is the store's creation
plus the trainings.

Phases, each in its own fresh interpreter once per round (medians over the rounds): the bare
interpreter, ``robust --help``, ``import torch``, ``from mlflow.tracking import MlflowClient``,
and the store's creation (:func:`robustcli.tracking.local_store.ensure_store` on a new path, its
imports done beforehand), plus the trainings' seconds per instance as ``assess`` reports them.
The load average is printed at the start and the end: on a shared machine it moves every figure.

Run: .venv/bin/python benchmarks/first_assess.py [--rounds 5 | --quick]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.tools.interleave import interleave, ratios, spread  # noqa: E402

ROBUST = [sys.executable, "-c", "from robustcli.cli.main import main; main()"]
ASSESS = ["assess", "--task", "synthetic", "--candidate", "small", "--instances", "4", "--train-size", "200"]

_STORE = """
import sys, time
from pathlib import Path
from mlflow.tracking import MlflowClient  # imports first: the creation alone is timed
from robustcli.tracking.local_store import ensure_store
path = Path(sys.argv[1])
start = time.perf_counter()
ensure_store(f"sqlite:///{path}", path)
print(time.perf_counter() - start)
"""
_IMPORT = "import sys, time; start = time.perf_counter(); {stmt}; print(time.perf_counter() - start)"


def _env(folder: Path) -> dict[str, str]:
    env = {**os.environ, "ROBUST_CACHE_DIR": str(folder / "cache"), "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _run(cmd: list[str], folder: Path) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(cmd, cwd=folder, env=_env(folder), capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[3:])} failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return out


def _assess(folder: Path) -> tuple[float, str]:
    uri = f"sqlite:///{folder / 'mlruns' / 'mlflow.db'}"
    start = time.perf_counter()
    out = _run([*ROBUST, *ASSESS, "--tracking-uri", uri], folder)
    return time.perf_counter() - start, out.stdout


def _inner(code: str, folder: Path, *args: str) -> float:
    """Seconds a fresh interpreter reports for ``code``."""
    return float(_run([sys.executable, "-c", code, *args], folder).stdout.strip().splitlines()[-1])


def _wall(cmd: list[str], folder: Path) -> float:
    start = time.perf_counter()
    _run(cmd, folder)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--quick", action="store_true", help="2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.rounds = 2
    load0 = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="robust-first-assess-"))
    try:
        reused = root / "reused"
        reused.mkdir()
        _assess(reused)  # the store the `again` runs reuse (and warm file caches)
        phases: dict[str, list[float]] = {k: [] for k in ("python", "help", "torch", "mlflow", "store")}
        per_instance: list[float] = []
        rounds = iter(range(10**6))

        def again() -> float:
            seconds, out = _assess(reused)
            if "0 trained now" not in out:
                raise SystemExit(f"the reused store trained again:\n{out}")
            return seconds

        def first() -> float:
            folder = root / f"fresh{next(rounds)}"
            folder.mkdir()
            seconds, out = _assess(folder)
            match = re.search(r"4 trained now.*?([0-9.]+) s per instance", out, re.S)
            if match is None:
                raise SystemExit(f"the fresh store did not train 4 instances:\n{out}")
            per_instance.append(float(match[1]))
            phases["python"].append(_wall([sys.executable, "-c", "pass"], folder))
            phases["help"].append(_wall([*ROBUST, "--help"], folder))
            phases["torch"].append(_inner(_IMPORT.format(stmt="import torch"), folder))
            phases["mlflow"].append(_inner(_IMPORT.format(stmt="from mlflow.tracking import MlflowClient"), folder))
            phases["store"].append(_inner(_STORE, folder, str(folder / "other" / "mlflow.db")))
            shutil.rmtree(folder, ignore_errors=True)
            return seconds

        base, timed = interleave(again, {"first": first}, args.rounds)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    load1 = os.getloadavg()
    print(f"load average (1, 5, 15 min): start {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f}, "
          f"end {load1[0]:.1f} {load1[1]:.1f} {load1[2]:.1f} ({os.cpu_count()} cores)")  # fmt: skip
    print(f"robust {' '.join(ASSESS)}")
    print(f"  first, into a fresh store        {spread(timed['first']).text('.1f', ' s')}")
    print(f"  again, the store reused          {spread(base).text('.1f', ' s')}  (trains nothing)")
    print("phases, each in a fresh interpreter (median [min..max]):")
    names = {
        "python": "python -c pass",
        "help": "robust --help",
        "torch": "import torch",
        "mlflow": "import MlflowClient",
        "store": "create a store (ensure_store)",
    }
    for key, label in names.items():
        print(f"  {label:<31}  {spread(phases[key]).text('.2f', ' s')}")
    print(f"  training, as assess reports it   {spread(per_instance).text('.2f', ' s')} per instance (4 in one stack)")
    print(f"first / again, per round: {ratios(base, timed['first']).text()}")
    print(f"ratio={ratios(base, timed['first']).median:.2f}")


if __name__ == "__main__":
    main()
