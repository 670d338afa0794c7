"""The paper's studies of chosen candidates, each a library the CLI renders: loss against
training-sample size (:mod:`~robustcli.studies.sample_size`), where the spread comes from
(:mod:`~robustcli.studies.variance`), and a neural-architecture search with Optuna followed by
the robustness of its picks (:mod:`~robustcli.studies.nas`). Each is validated when made (nothing
trained or written), trains only what MLflow lacks, and logs itself to MLflow."""

from robustcli.studies.sample_size import SampleSizeResult, SampleSizeStudy, SizeRow, parse_sizes, saturation_size
from robustcli.studies.variance import VarianceResult, VarianceStudy

__all__ = [
    "SampleSizeResult",
    "SampleSizeStudy",
    "SizeRow",
    "VarianceResult",
    "VarianceStudy",
    "parse_sizes",
    "saturation_size",
]
