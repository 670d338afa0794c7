"""Ratios that hold still on a shared machine: interleaved repetitions, their median and spread.

The method of every benchmark here that prints a ratio of two timings:

* A and B alternate, ``A B A B ... A``: each repetition of B stands between two repetitions of
  A, and its ratio is taken against their geometric mean, so a neighbour's load that starts or
  stops between repetitions moves both sides of that ratio alike (timing A once, then B once,
  lets it move one side only: the headline of ``train_throughput.py --quick`` once read 0.65x,
  13.8x and 12.5x within an hour that way);
* the headline is the median of the per-repetition ratios, printed with their spread
  (``min..max`` and the relative width), so a reader sees how far one run can be trusted;
* a ``--quick`` run measures the same quantity with fewer repetitions, never another one;
* on a shared machine, time each side by the **CPU time it used** (``time.thread_time()`` for
  work in this thread, :func:`child_cpu_seconds` for a subprocess) beside its wall time: wall
  time counts the seconds a side waited for a core that a neighbour held, and neighbours come and
  go between repetitions; CPU time counts only the seconds it ran (what remains is the
  neighbours' effect on caches and memory bandwidth, a few to ~20 %). Which one a script's
  headline uses is said in its docstring; the other is printed beside it.

``interleave(..., budget_s=...)`` adds rounds past ``rounds`` (up to ``max_rounds``) while the
next round and the closing A fit in the time budget: a quiet machine gets more rounds within the
same minutes, a loaded one at least ``rounds``.

Several B variants may share the rounds (``A B1 B2 A B1 B2 ... A``): each is compared with the
A repetitions either side of its round.
"""

from __future__ import annotations

import math
import resource
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Spread", "child_cpu_seconds", "interleave", "ratios", "spread"]


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


def child_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished (waited-for) children so far: the
    difference around ``subprocess.run`` is that command's CPU time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def interleave(
    a: Callable[[], float],
    bs: Mapping[str, Callable[[], float]],
    rounds: int,
    *,
    budget_s: float | None = None,
    max_rounds: int | None = None,
) -> tuple[list[float], dict[str, list[float]]]:
    """Run ``a``, then every ``b`` in order, ``rounds`` times, then ``a`` once more.

    With ``budget_s``, more rounds follow the first ``rounds`` (at most ``max_rounds`` in all)
    while the wall time so far plus one more round and the closing ``a`` (as long as the slowest
    round and ``a`` so far) stays within ``budget_s``.

    Returns a's ``rounds + 1`` values and each b's ``rounds`` values (whatever the callables
    return: a rate or seconds)."""
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    max_rounds = max(rounds, max_rounds or rounds)
    a_values: list[float] = []
    b_values: dict[str, list[float]] = {name: [] for name in bs}
    start = time.perf_counter()
    slowest_round = slowest_a = 0.0
    done = 0
    while done < rounds or (
        budget_s is not None
        and done < max_rounds
        and time.perf_counter() - start + slowest_round + slowest_a <= budget_s
    ):
        t = time.perf_counter()
        a_values.append(a())
        slowest_a = max(slowest_a, time.perf_counter() - t)
        for name, b in bs.items():
            b_values[name].append(b())
        slowest_round = max(slowest_round, time.perf_counter() - t)
        done += 1
    a_values.append(a())
    return a_values, b_values


def ratios(a_values: Sequence[float], b_values: Sequence[float]) -> Spread:
    """Each ``b_values[i] / sqrt(a_values[i] * a_values[i + 1])``: B against the A either side."""
    if len(a_values) != len(b_values) + 1:
        raise ValueError(f"{len(a_values)} A values for {len(b_values)} B values: A needs one more (A B A ... A)")
    return spread([b / math.sqrt(a_values[i] * a_values[i + 1]) for i, b in enumerate(b_values)])
