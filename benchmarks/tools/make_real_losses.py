"""Make `benchmarks/data/real_losses.csv`: a loss table from real trainings, for
`selection_efficiency.py` (its truth comes from held-out instances of the same table).

Trains every candidate of the built-in `synthetic` task (96) for `--instances` instances with the
stacked engine and short early stopping, through the same session, seeds and MLflow logging as
`robust assess` (into a temporary store), then writes the table with `robust export`'s writer.
Run: .venv/bin/python benchmarks/tools/make_real_losses.py [--instances 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from robustcli.config import load_settings
from robustcli.session import StudySession
from robustcli.selection import write_loss_table

OUT = Path(__file__).resolve().parents[1] / "data" / "real_losses.csv"


def train_loss_table(session: StudySession, jobs: list, out: Path, every: int = 500) -> None:
    """Train ``jobs`` ((candidate, instance index) pairs) through ``session`` and write their
    losses to ``out`` with `robust export`'s writer; a progress line every ``every`` trainings."""
    start = time.perf_counter()
    rows = []
    for n, (cand, rec) in enumerate(session.train(jobs), 1):
        rows.append({"candidate": cand.id, "instance": rec.index, "loss": rec.loss, "stop_reason": rec.stop_reason})
        if n % every == 0:
            print(f"{n}/{len(jobs)} trainings, {time.perf_counter() - start:.0f} s", flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows.sort(key=lambda r: (r["candidate"], r["instance"]))
    write_loss_table(out, rows)
    candidates = len({cand.id for cand, _ in jobs})
    print(f"wrote {len(rows)} losses of {candidates} candidates to {out} in {time.perf_counter() - start:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=40)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            None, task="synthetic", study="real-losses", tracking_uri=f"sqlite:///{tmp}/mlflow.db",
            min_epochs=10, window=5, max_epochs=40, threads=1,
        )
        session = StudySession(settings)
        jobs = [(c, i) for c in session.space for i in range(args.instances)]
        train_loss_table(session, jobs, args.out)

if __name__ == "__main__":
    main()
