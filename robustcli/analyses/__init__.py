"""The paper's analyses of chosen candidates, each a library the CLI renders: loss against
training-sample size (:mod:`~robustcli.analyses.sample_size`), where the spread comes from
(:mod:`~robustcli.analyses.variance`), and a neural-architecture search with Optuna followed by
the robustness of its picks (:mod:`~robustcli.analyses.nas`). Each is validated when made (nothing
trained or written), trains only what MLflow lacks, and logs itself to MLflow."""

from robustcli.analyses.sample_size import SampleSizeAnalysis, SampleSizeResult, SizeRow, parse_sizes, saturation_size
from robustcli.analyses.variance import VarianceAnalysis, VarianceResult

__all__ = [
    "SampleSizeAnalysis",
    "SampleSizeResult",
    "SizeRow",
    "VarianceAnalysis",
    "VarianceResult",
    "parse_sizes",
    "saturation_size",
]
