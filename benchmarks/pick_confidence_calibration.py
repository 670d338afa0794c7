"""Is the pick's P(best) honest? Calibration of three estimates on tables whose truth is known.

A table is ``k`` contenders x ``s`` instances with common random numbers (an instance effect
shared by every contender) and a per-contender noise; the contenders' true gaps are drawn from a
normal of scale ``tau`` (in units of the noise of one paired difference). The pick is the
contender with the best observed criterion, as a selection's last step has it. Estimates:

``bootstrap``  the share of paired bootstrap resamples in which a contender ranks first (the
               method before this benchmark: it cannot doubt when every instance favours the pick);
``posterior``  the Student-t posterior of the paired mean differences (the mean only);
``smoothed``   the paired bootstrap widened by the posterior's t factor (any criterion).

Per (criterion, s, k, tau), over the repetitions: the mean P(best) of the pick against how often
the pick is truly the best (calibrated: equal), the Brier score over the contenders (lower is
better), and "contradictions": the share of repetitions in which the pick gets P(best) >= 99.5 %
while another contender is indistinguishable from it at 95 %. Noise is normal or Student-t with 3
degrees of freedom (``--heavy``): symmetric, so the mean and median share their truth.

    .venv/bin/python benchmarks/pick_confidence_calibration.py [--reps 400] [--heavy] [--quick]

It ends with the mean calibration gap |P(pick) - truth| and Brier score per method, and
``ratio=`` the old bootstrap's Brier score over the chosen method's (posterior for the mean,
smoothed otherwise), all rows together: above 1, the new P(best) is the better forecast.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from robustcli.robustness.criteria import make_objective
from robustcli.robustness.racing import bootstrap_values, pick_confidence, resample_columns


def table(rng: np.random.Generator, k: int, s: int, tau: float, heavy: bool) -> tuple[np.ndarray, np.ndarray]:
    """Losses (k x s) and the true criterion gaps (k); the paired difference noise has sd 1 x 0.003."""
    sigma = 0.003 / np.sqrt(2.0)
    gaps = tau * 0.003 * rng.standard_normal(k)
    inst = 0.01 * rng.standard_normal(s)
    noise = rng.standard_t(3, size=(k, s)) / np.sqrt(3.0) if heavy else rng.standard_normal((k, s))
    return 0.05 + gaps[:, None] + inst[None, :] + sigma * noise, gaps


def old_bootstrap(x: np.ndarray, values, seed: int, n_boot: int) -> np.ndarray:
    raw = bootstrap_values(x, values, resample_columns(x.shape[1], n_boot, seed))
    wins = np.bincount(np.argmin(raw, axis=1), minlength=x.shape[0])
    return wins / n_boot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--quick", action="store_true", help="40 repetitions per row (a smoke run)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--heavy", action="store_true", help="Student-t(3) noise instead of normal")
    args = ap.parse_args()
    if args.quick:
        args.reps = 40
    summary: dict[str, list[tuple[float, float]]] = {}
    old_new: list[tuple[float, float]] = []
    rng = np.random.default_rng(19)
    print(f"{'crit':6} {'s':>3} {'k':>2} {'tau':>4} | {'method':9} {'P(pick)':>8} {'truth':>6} "
          f"{'brier':>6} {'contra':>6}")
    t0 = time.perf_counter()
    for name in ("mean", "median"):
        obj = make_objective(name)
        for s in (3, 5, 10, 30):
            for k in (2, 4):
                for tau in (0.3, 1.0):
                    rows: dict[str, list[tuple[float, float, float]]] = {}
                    truth_hits = 0
                    for rep in range(args.reps):
                        x, gaps = table(rng, k, s, tau, args.heavy)
                        ids = [f"c{i}" for i in range(k)]
                        vals = obj.primary.values(x)
                        pick = int(np.argmin(vals))
                        best = int(np.argmin(gaps))
                        truth_hits += pick == best
                        onehot = np.eye(k)[best]
                        ests = {"bootstrap": (old_bootstrap(x, obj.primary.values, rep, args.n_boot), None)}
                        methods = [("smoothed", False), ("posterior", True)]
                        for label, mean in methods:
                            r = pick_confidence(ids, x, ids[pick], obj.primary.values, obj.order, 0.95,
                                                seed=rep, n_boot=args.n_boot, mean=mean)
                            ests[label] = (np.array([r.p_best[c] for c in ids]), len(r.indistinguishable) > 1)
                        indist = ests["smoothed"][1]
                        for label, (pb, ind) in ests.items():
                            ind = indist if ind is None else ind
                            rows.setdefault(label, []).append(
                                (pb[pick], float(((pb - onehot) ** 2).sum()), float(pb[pick] >= 0.995 and ind)))
                    chosen = "posterior" if name == "mean" else "smoothed"
                    old_new.append((np.mean([r[1] for r in rows["bootstrap"]]),
                                    np.mean([r[1] for r in rows[chosen]])))
                    for label, vals_ in rows.items():
                        a = np.array(vals_)
                        summary.setdefault(f"{name} {label}", []).append(
                            (abs(a[:, 0].mean() - truth_hits / args.reps), a[:, 1].mean()))
                        print(f"{name:6} {s:3d} {k:2d} {tau:4.1f} | {label:9} {a[:, 0].mean():8.3f} "
                              f"{truth_hits / args.reps:6.3f} {a[:, 1].mean():6.3f} {a[:, 2].mean():6.3f}")
    for label, v in summary.items():
        a = np.array(v)
        print(f"{label:17} mean |P(pick) - truth| {a[:, 0].mean():.3f} (max {a[:, 0].max():.3f}), "
              f"Brier {a[:, 1].mean():.3f}")
    print(f"# {args.reps} repetitions per row, {args.n_boot} draws, noise "
          f"{'t(3)' if args.heavy else 'normal'}; {time.perf_counter() - t0:.0f} s")
    a = np.array(old_new)
    print(f"ratio={a[:, 0].mean() / a[:, 1].mean():.3f}")


if __name__ == "__main__":
    main()
