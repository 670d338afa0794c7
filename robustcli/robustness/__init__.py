"""Statistics, criteria and the variance decomposition over a candidate's instance losses (numpy only)."""

from robustcli.robustness.criteria import (
    COMBINE_MODES,
    Criterion,
    Objective,
    get_criterion,
    make_objective,
    pareto_fronts,
)
from robustcli.robustness.decomposition import Decomposition, decompose
from robustcli.robustness.statistics import STATISTICS, Estimate, LossSummary, statistic, summarize, summarize_instances

__all__ = [
    "COMBINE_MODES",
    "STATISTICS",
    "Criterion",
    "Decomposition",
    "Estimate",
    "LossSummary",
    "Objective",
    "decompose",
    "get_criterion",
    "make_objective",
    "pareto_fronts",
    "statistic",
    "summarize",
    "summarize_instances",
]
