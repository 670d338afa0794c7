"""Turn sample-cpu.sh's log into cpu.tsv rows: each calo-energy process's CPU seconds (its last
cumulative reading: user + system, its children's included), named by the step of timings.tsv
that ran it (the step of the same command whose wall-time window holds the process's readings).
Processes under 10 CPU seconds (a rerun that trained nothing, a test's) are left out; one that no
step ran (stopped, or superseded by a rerun) is named by its command.

    python docs/reproduction/cpu_from_log.py mlruns/repro-logs/cpu.log >> docs/reproduction/cpu.tsv
"""

from __future__ import annotations

import csv
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).parent
COMMANDS = {"study sample-size": "sample-size", "study variance": "variance", "select": "select",
            "assess": "assess", "baseline": "baseline", "nas": "nas"}


def main(log: str) -> None:
    first: dict[str, float] = {}
    ticks: dict[str, int] = {}
    command: dict[str, str] = {}
    full: dict[str, str] = {}
    for line in Path(log).read_text().splitlines():
        parts = line.split(" ", 3)
        if len(parts) < 4 or "calo-energy" not in parts[3]:
            continue
        t, pid, tick, cmd = float(parts[0]), parts[1], int(parts[2]), parts[3].strip()
        first.setdefault(pid, t)
        ticks[pid] = max(ticks.get(pid, 0), tick)
        command[pid] = next(v for k, v in COMMANDS.items() if cmd.startswith(k))
        full[pid] = cmd
    steps = []
    with (HERE / "timings.tsv").open() as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row["step"].startswith("total"):
                continue
            start = datetime.fromisoformat(row["start"]).replace(tzinfo=timezone.utc).timestamp()
            steps.append((row["step"], start, start + int(row["wall_s"])))
    for pid in sorted(first, key=first.get):
        kind = command[pid]
        if ticks[pid] < 1000:
            continue
        mine = [(a, n) for n, a, b in steps if a - 5 <= first[pid] <= b and _runs(kind, n)]
        name = max(mine)[1] if mine else f"stopped or superseded: {_short(full[pid])}"
        print(f"{pid}\t{ticks[pid] / 100:.0f}\t{name}")


def _short(cmd: str) -> str:
    """A command without the options every step shares (the task, its data options, threads, --json)."""
    words, out, skip = cmd.split(), [], False
    for w in words:
        if skip:
            skip = False
        elif w in ("--task", "-o", "--threads"):
            skip = True
        elif w != "--json":
            out.append(w)
    return " ".join(out)

def _runs(kind: str, step: str) -> bool:
    """Whether a step of this name runs a command of this kind (run.sh's names)."""
    if kind == "assess":
        return step.startswith(("nas-B-", "grid-fresh", "select-model2"))
    if kind == "select":
        return step.startswith(("grid-select", "select-demo"))
    if kind == "baseline":
        return "baseline" in step
    return step.startswith(kind)

if __name__ == "__main__":
    main(sys.argv[1])
