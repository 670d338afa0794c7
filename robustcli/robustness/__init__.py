"""Statistics and criteria over a candidate's instance losses (numpy only)."""

from robustcli.robustness.criteria import (
    COMBINE_MODES,
    Criterion,
    Objective,
    get_criterion,
    make_objective,
    pareto_fronts,
)
from robustcli.robustness.statistics import STATISTICS, Estimate, LossSummary, statistic, summarize, summarize_instances

__all__ = [
    "COMBINE_MODES",
    "STATISTICS",
    "Criterion",
    "Estimate",
    "LossSummary",
    "Objective",
    "get_criterion",
    "make_objective",
    "pareto_fronts",
    "statistic",
    "summarize",
    "summarize_instances",
]
