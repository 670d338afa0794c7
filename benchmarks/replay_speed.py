"""Replay speed: `robust select --replay` on a table of 10,000 candidates x 50 instances.

Target: under 5 s end to end (CSV read and validation included). The plain way it is compared
with is reading the same CSV with the csv module alone, measured in the same run.
Run: .venv/bin/python benchmarks/replay_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 candidates instead of 10,000")
    args = parser.parse_args()
    n_cand, n_inst = (2000 if args.quick else 10000), 50
    rng = np.random.default_rng(0)
    true = rng.lognormal(np.log(0.05), 0.3, n_cand)
    losses = true[:, None] + rng.normal(0, 0.004, (n_cand, n_inst)) + rng.normal(0, 0.002, n_inst)[None, :]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "table.csv"
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["candidate", "instance", "loss"])
            for i in range(n_cand):
                for j in range(n_inst):
                    w.writerow([f"c{i:05d}", j, f"{losses[i, j]:.6g}"])
        start = time.perf_counter()
        with path.open() as fh:
            sum(1 for _ in csv.reader(fh))
        plain = time.perf_counter() - start
        robust = str(Path(sys.executable).parent / "robust")
        for rule in ("paper", "race"):
            start = time.perf_counter()
            subprocess.run([robust, "select", "--replay", str(path), "--rule", rule, "--json"], check=True, capture_output=True)
            took = time.perf_counter() - start
            verdict = "ok" if took < 5 else "SLOW (target < 5 s)"
            print(f"{n_cand} x {n_inst} replay, rule {rule:<6} {took:6.2f} s  ({took / plain:5.1f}x a bare csv read)  [{verdict}]")
    print(f"ratio={took:.2f}")


if __name__ == "__main__":
    main()
