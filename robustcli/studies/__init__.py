"""The paper's studies of chosen candidates: loss against training-sample size
(:mod:`~robustcli.studies.sample_size`) and where the spread comes from
(:mod:`~robustcli.studies.variance`). Each is validated when made (nothing trained or written),
trains only what MLflow lacks, and logs itself as a study run."""

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
