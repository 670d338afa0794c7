"""Start-up time of `robust --help` and `robust tasks` against `python -c pass`.

Prints medians over several runs and the ratio; the target is a CLI start under 0.5 s.
The last line is ``ratio=<robust --help / python -c pass>``.
Run: .venv/bin/python benchmarks/cli_startup.py [--runs 7 | --quick]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path


def median_seconds(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 runs each")
    args = parser.parse_args()
    if args.quick:
        args.runs = 3
    robust = shutil.which("robust") or str(Path(sys.executable).parent / "robust")
    base = median_seconds([sys.executable, "-c", "pass"], args.runs)
    print(f"python -c pass      {base * 1000:7.1f} ms")
    ratios = []
    for cmd in (["--help"], ["tasks"]):
        t = median_seconds([robust, *cmd], args.runs)
        verdict = "ok" if t < 0.5 else "SLOW (target < 0.5 s)"
        print(f"robust {' '.join(cmd):<12} {t * 1000:7.1f} ms  = {t / base:5.1f}x python start  [{verdict}]")
        ratios.append(t / base)
    print(f"ratio={ratios[0]:.2f}")


if __name__ == "__main__":
    main()
