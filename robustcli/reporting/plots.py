"""Figures a physicist would rather look at than read: loss distributions, the selection's path,
and the loss-versus-epoch curves of the best candidate's instances (as the paper's Fig. 15)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path


def study_figure(
    out: Path,
    *,
    title: str,
    losses: Mapping[str, Sequence[float]],
    survivors_per_step: Sequence[int] | None = None,
    best_per_step: Sequence[float] | None = None,
    curves: Sequence[Sequence[float]] | None = None,
    curves_label: str = "",
    loss_name: str = "loss",
    baseline: float | None = None,
    labels: Mapping[str, str] | None = None,
    marks: Mapping[str, float] | None = None,
    marks_label: str = "",
) -> Path:
    """One PNG: box plots of instance losses per candidate (best mean first; ``labels`` names them,
    by default their keys), the number of candidates left per selection step, and the per-epoch
    test loss of one candidate's instances. ``marks`` puts one more value beside a candidate's box
    (e.g. the single training a search judged it by), drawn as a cross and named ``marks_label``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    panels = 1 + (survivors_per_step is not None) + (curves is not None)
    fig, axes = plt.subplots(1, panels, figsize=(6.5 * panels, 5), squeeze=False)
    axes = list(axes[0])
    ax = axes.pop(0)
    names = list(losses)
    data = [[x for x in losses[n] if math.isfinite(x)] for n in names]
    ax.boxplot(data, vert=False, tick_labels=[(labels or {}).get(n, n) for n in names], showmeans=True)
    ax.invert_yaxis()
    ax.set_xlabel(f"test {loss_name} per instance")
    ax.set_title("instance losses (triangle: mean)")
    if baseline is not None:
        ax.axvline(baseline, color="tab:red", linestyle="--", label=f"best baseline {baseline:.4g}")
    shown = [(names.index(n) + 1, v) for n, v in (marks or {}).items() if n in names and math.isfinite(v)]
    if shown:
        ax.scatter([v for _, v in shown], [y for y, _ in shown], marker="x", s=60, color="tab:red", zorder=3,
                   label=marks_label or None)  # fmt: skip
    if baseline is not None or (shown and marks_label):
        ax.legend(loc="lower right")
    if survivors_per_step is not None:
        ax = axes.pop(0)
        steps = range(1, len(survivors_per_step) + 1)
        ax.step(steps, survivors_per_step, where="post", marker="o")
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        ax.set_xlabel("selection step")
        ax.set_ylabel("candidates left")
        ax.set_title("selection path")
        if best_per_step:
            # the leader's criterion value at each step: how the estimate of the best settles
            twin = ax.twinx()
            twin.plot(range(1, len(best_per_step) + 1), best_per_step, color="tab:orange", marker=".")
            twin.set_ylabel("leader's criterion", color="tab:orange")
    if curves is not None:
        ax = axes.pop(0)
        for curve in curves:
            ax.plot(range(1, len(curve) + 1), curve, linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"test {loss_name}")
        ax.set_title(f"instances of\n{curves_label}", fontsize="medium")
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
