"""The one-cycle learning-rate schedule as a pure function of the step (Smith & Topin 2018).

The same curve as ``torch.optim.lr_scheduler.OneCycleLR`` with its defaults (two phases, cosine
annealing): the rate rises from ``max_lr / div_factor`` to ``max_lr`` over the first
``pct_start`` of the steps, then falls to ``max_lr / (div_factor * final_div_factor)``.

The task's ``lr_factor`` returns this curve, and robustcli's one-at-a-time training loop
(``robustcli.training.instance.train_instance``) calls it before every optimiser step, setting
the rate to ``lr * lr_factor(candidate, step, total_steps)`` with ``total_steps = max_epochs x
batches per epoch``: fixed-length trainings (``--min-epochs N --max-epochs N``) end the cycle
with training. The stacked engine's optimisers have no schedule, so a scheduled task always
trains in that loop (the default engine falls back to it; ``--engine stacked`` refuses it).
"""

from __future__ import annotations

import math

__all__ = ["one_cycle_factor"]


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1.0)


def one_cycle_factor(
    step: int, total_steps: int, pct_start: float = 0.3, div_factor: float = 25.0, final_div_factor: float = 1e4
) -> float:
    """The learning rate at optimiser step ``step`` (0-based) as a fraction of the maximum rate."""
    if total_steps < 2:
        raise ValueError(f"one-cycle needs at least 2 steps, got total_steps={total_steps}")
    if not 0 <= step < total_steps:
        raise ValueError(f"step {step} is outside 0..{total_steps - 1}")
    initial = 1.0 / div_factor
    final = initial / final_div_factor
    peak = float(pct_start * total_steps) - 1.0
    if step <= peak:
        return _cos(initial, 1.0, step / peak)
    return _cos(1.0, final, (step - peak) / (total_steps - 1 - peak))
