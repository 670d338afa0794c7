"""Make `benchmarks/data/calo_losses.csv`: a loss table from real `calo-energy` trainings, for
`selection_efficiency.py` (half of each candidate's instances are seen by the selection, the
other half are the truth).

64 candidates drawn from the task's grid (seed 0), 14 instances each, training samples of 1,000
showers, 25 epochs (no early stop before), dataset A with LHCb's electronic noise (the default
when the table was made; ``--noise 0`` gives the paper's noiseless cells); trained with the stacked engine
through the same session, seeds and MLflow logging as `robust assess` (into a temporary store),
written with `robust export`'s writer. About an hour of one core.

    .venv/bin/python benchmarks/tools/make_calo_losses.py [--candidates 64] [--instances 14]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from robustcli.config import load_settings
from robustcli.selection.loop import draw_candidate_ids
from robustcli.session import StudySession

from make_real_losses import train_loss_table  # this folder: the same training and writing

OUT = Path(__file__).resolve().parents[1] / "data" / "calo_losses.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidates", type=int, default=64)
    parser.add_argument("--instances", type=int, default=14)
    parser.add_argument("--train-size", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--noise", default="lhcb", help="the cells' electronic noise: lhcb (the table's) or 0")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            None, task="calo-energy", study="calo-losses", tracking_uri=f"sqlite:///{tmp}/mlflow.db",
            task_options={"noise": args.noise if args.noise == "lhcb" else float(args.noise)},
            train_size=args.train_size, min_epochs=args.epochs, window=5, max_epochs=args.epochs,
            threads=args.threads,
        )
        session = StudySession(settings)
        ids = draw_candidate_ids([c.id for c in session.space], args.candidates, seed=0)
        chosen = [session.space.get(cid) for cid in ids]
        jobs = [(c, i) for c in chosen for i in range(args.instances)]
        train_loss_table(session, jobs, args.out, every=50)


if __name__ == "__main__":
    main()
