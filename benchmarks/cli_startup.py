"""Start-up time of `robust --help` and `robust tasks` against `python -c pass`.

The target is a CLI start under 0.5 s. The three commands are timed interleaved
(``python, --help, tasks, python, --help, tasks, ..., python``; ``benchmarks/tools/interleave.py``):
each robust run is compared with the bare interpreter runs either side of it, and the printed
figures are medians with their spread. Each run is timed twice: by the **CPU time** the command
used (user + system of the child, ``getrusage(RUSAGE_CHILDREN)``; a start-up runs in one thread,
so on an idle machine with a warm file cache its wall time is about this) and by its wall time
(which on a shared machine also counts the time it waited for a core). The headline and the
target's verdict use the CPU time, stable under others' load; the wall times are printed beside.
The last line is ``ratio=<robust --help / python -c pass, CPU time>`` (median).
A bare start takes ~40-70 ms, so a few rounds leave the ratio at the mercy of one slow start:
3 rounds read 12.1x, 13.9x and 15.8x in three consecutive runs, 7 rounds 14.6x, 14.1x, 14.6x
(load average 2.6-3), hence 7 rounds for ``--quick`` (~10 s) and 11 by default.
Run: .venv/bin/python benchmarks/cli_startup.py [--runs 11 | --quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.tools.interleave import child_cpu_seconds, interleave, ratios, spread  # noqa: E402


def seconds(cmd: list[str], walls: list[float]):
    """Runs ``cmd``; returns its CPU seconds and appends its wall seconds to ``walls``."""

    def run() -> float:
        cpu, start = child_cpu_seconds(), time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        walls.append(time.perf_counter() - start)
        return child_cpu_seconds() - cpu

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=11, help="interleaved rounds")
    parser.add_argument("--quick", action="store_true", help="7 rounds")
    args = parser.parse_args()
    if args.quick:
        args.runs = 7
    print(f"{os.cpu_count()} cpus, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    robust = shutil.which("robust") or str(Path(sys.executable).parent / "robust")
    walls: dict[str, list[float]] = {"python": [], "--help": [], "tasks": []}
    commands = {" ".join(cmd): seconds([robust, *cmd], walls[cmd[0]]) for cmd in (["--help"], ["tasks"])}
    base, timed = interleave(seconds([sys.executable, "-c", "pass"], walls["python"]), commands, args.runs)
    print(f"python -c pass      CPU {spread(base).text('.3f', ' s')}; wall {spread(walls['python']).text('.3f', ' s')}")
    for name, values in timed.items():
        t = spread(values)
        verdict = "ok" if t.median < 0.5 else "SLOW (target < 0.5 s)"
        print(f"robust {name:<12} CPU {t.text('.3f', ' s')}  = {ratios(base, values).text('.1f')} python start  [{verdict}]; "
              f"wall {spread(walls[name]).text('.3f', ' s')} = {ratios(walls['python'], walls[name]).text('.1f')}")  # fmt: skip
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")
    print(f"ratio={ratios(base, timed['--help']).median:.2f}")


if __name__ == "__main__":
    main()
