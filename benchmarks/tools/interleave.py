"""Ratios that hold still on a shared machine: interleaved repetitions, their median and spread.

The method of every benchmark here that prints a ratio of two timings:

* A and B alternate, ``A B A B ... A``: each repetition of B stands between two repetitions of
  A, and its ratio is taken against their geometric mean, so a neighbour's load that starts or
  stops between repetitions moves both sides of that ratio alike (timing A once, then B once,
  lets it move one side only: the headline of ``train_throughput.py --quick`` once read 0.65x,
  13.8x and 12.5x within an hour that way);
* the headline is the median of the per-repetition ratios, printed with their spread
  (``min..max`` and the relative width), so a reader sees how far one run can be trusted;
* a ``--quick`` run measures the same quantity with fewer repetitions, never another one.

Several B variants may share the rounds (``A B1 B2 A B1 B2 ... A``): each is compared with the
A repetitions either side of its round.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Spread", "interleave", "ratios", "spread"]


@dataclass(frozen=True)
class Spread:
    """Repeated values of one quantity: median, extremes and relative width."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    @property
    def lo(self) -> float:
        return min(self.values) if self.values else math.nan

    @property
    def hi(self) -> float:
        return max(self.values) if self.values else math.nan

    @property
    def width(self) -> float:
        """(max - min) / median: 0.1 means the repetitions lie within 10 % of the median."""
        return (self.hi - self.lo) / self.median if self.values and self.median else math.nan

    def text(self, fmt: str = ".2f", unit: str = "x") -> str:
        """``3.41x [3.30..3.52, 3 reps, width 6%]``"""
        return (
            f"{self.median:{fmt}}{unit} [{self.lo:{fmt}}..{self.hi:{fmt}}, {len(self.values)} reps, "
            f"width {100 * self.width:.0f}%]"
        )


def spread(values: Sequence[float]) -> Spread:
    return Spread(tuple(float(v) for v in values))


def interleave(
    a: Callable[[], float], bs: Mapping[str, Callable[[], float]], rounds: int
) -> tuple[list[float], dict[str, list[float]]]:
    """Run ``a``, then every ``b`` in order, ``rounds`` times, then ``a`` once more.

    Returns a's ``rounds + 1`` values and each b's ``rounds`` values (whatever the callables
    return: a rate or seconds)."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    a_values: list[float] = []
    b_values: dict[str, list[float]] = {name: [] for name in bs}
    for _ in range(rounds):
        a_values.append(a())
        for name, b in bs.items():
            b_values[name].append(b())
    a_values.append(a())
    return a_values, b_values


def ratios(a_values: Sequence[float], b_values: Sequence[float]) -> Spread:
    """Each ``b_values[i] / sqrt(a_values[i] * a_values[i + 1])``: B against the A either side."""
    if len(a_values) != len(b_values) + 1:
        raise ValueError(f"{len(a_values)} A values for {len(b_values)} B values: A needs one more (A B A ... A)")
    return spread([b / math.sqrt(a_values[i] * a_values[i + 1]) for i, b in enumerate(b_values)])
