"""Start-up time of `robust --help` and `robust tasks` against `python -c pass`.

The target is a CLI start under 0.5 s. The three commands are timed interleaved
(``python, --help, tasks, python, --help, tasks, ..., python``; ``benchmarks/tools/interleave.py``):
each robust run is compared with the bare interpreter runs either side of it, and the printed
figures are medians with their spread. The last line is ``ratio=<robust --help / python -c pass>``
(median).
Run: .venv/bin/python benchmarks/cli_startup.py [--runs 7 | --quick]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.tools.interleave import interleave, ratios, spread  # noqa: E402


def seconds(cmd: list[str]):
    def run() -> float:
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True)
        return time.perf_counter() - start

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    args = parser.parse_args()
    if args.quick:
        args.runs = 3
    robust = shutil.which("robust") or str(Path(sys.executable).parent / "robust")
    commands = {" ".join(cmd): seconds([robust, *cmd]) for cmd in (["--help"], ["tasks"])}
    base, timed = interleave(seconds([sys.executable, "-c", "pass"]), commands, args.runs)
    print(f"python -c pass      {spread(base).text('.3f', ' s')}")
    for name, values in timed.items():
        t = spread(values)
        verdict = "ok" if t.median < 0.5 else "SLOW (target < 0.5 s)"
        print(f"robust {name:<12} {t.text('.3f', ' s')}  = {ratios(base, values).text('.1f')} python start  [{verdict}]")
    print(f"ratio={ratios(base, timed['--help']).median:.2f}")


if __name__ == "__main__":
    main()
