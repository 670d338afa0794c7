"""Statistics and criteria over a candidate's instance losses (numpy only)."""

from robustcli.robustness.statistics import STATISTICS, Estimate, statistic, summarize

__all__ = ["STATISTICS", "Estimate", "statistic", "summarize"]
