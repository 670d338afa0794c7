"""Early stopping after the paper's section 3.7, both readings of its sentence.

"At least 100 epochs; then training continues until the maximum loss in the previous 30 epochs
exceeds the minimum in those epochs by 10%." Read as:

* ``flatten`` (default): stop once max <= (1 + threshold) * min over the window: the monitored
  loss has flattened, it no longer moves by more than the threshold.
* ``spike``: stop as soon as max > (1 + threshold) * min over the window: the loss jumped, an
  instability detector. Calm runs end at ``max_epochs``.

Whatever the mode, an instance is flagged ``spiked`` when, after ``min_epochs``, an epoch's loss
rose above (1 + threshold) times the lowest loss of the window before it: a rise, not a fall, so
that a criterion can penalise unstable candidates.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal, get_args

from robustcli.config import EarlyStoppingSettings

__all__ = ["EarlyStopping", "STOP_REASONS", "StopReason"]

#: why an instance stopped
StopReason = Literal["converged", "spiked", "epoch_cap", "diverged"]
STOP_REASONS: tuple[StopReason, ...] = get_args(StopReason)


class EarlyStopping:
    """Feed it one monitored loss per epoch; it answers with a stop reason or None."""

    def __init__(self, settings: EarlyStoppingSettings) -> None:
        self.settings = settings
        self.window: deque[float] = deque(maxlen=settings.window)
        self.epoch = 0
        self.spiked = False

    def update(self, loss: float) -> StopReason | None:
        s = self.settings
        self.epoch += 1
        if not math.isfinite(loss):
            return "diverged"
        factor = 1.0 + s.threshold
        if self.epoch > s.min_epochs and self.window and loss > factor * min(self.window):
            self.spiked = True
        self.window.append(loss)
        if self.epoch >= s.min_epochs and len(self.window) == s.window:
            lo, hi = min(self.window), max(self.window)
            if s.mode == "flatten" and hi <= factor * lo:
                return "converged"
            if s.mode == "spike" and hi > factor * lo:
                return "spiked"
        if self.epoch >= s.max_epochs:
            return "epoch_cap"
        return None
