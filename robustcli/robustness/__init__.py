"""Statistics and criteria over a candidate's instance losses (numpy only)."""

from robustcli.robustness.criteria import (
    COMBINE_MODES,
    Criterion,
    Objective,
    get_criterion,
    make_objective,
    pareto_fronts,
)
from robustcli.robustness.statistics import STATISTICS, Estimate, statistic, summarize

__all__ = [
    "COMBINE_MODES",
    "STATISTICS",
    "Criterion",
    "Estimate",
    "Objective",
    "get_criterion",
    "make_objective",
    "pareto_fronts",
    "statistic",
    "summarize",
]
