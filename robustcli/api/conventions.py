"""The paper's conventions that the command line shows and defaults to, read from the analyses so
that :mod:`robustcli.cli` imports nothing below :mod:`robustcli.api`.

* :data:`ANALYSIS_STATISTICS`: the statistics of an analysis's table, in their order;
* :data:`VARIANCE_SETS`: the variance analysis's three sets of instances, in words;
* :func:`sample_size_test_size`: the test sample of `robust study sample-size` (the paper's: as
  many test examples as training examples, ``"train"``, unless told otherwise).
"""

from __future__ import annotations

from robustcli.analyses._common import ANALYSIS_STATISTICS
from robustcli.analyses.variance import HELD as VARIANCE_SETS

__all__ = ["ANALYSIS_STATISTICS", "SAMPLE_SIZE_TEST_SIZE", "VARIANCE_SETS", "sample_size_test_size"]

#: the sample-size analysis's test sample when none is given: as large as each training sample (the paper's)
SAMPLE_SIZE_TEST_SIZE = "train"


def sample_size_test_size(given: str | None) -> str | None:
    """The sample-size analysis's ``test_size`` from ``--test-size``: :data:`SAMPLE_SIZE_TEST_SIZE` when
    not given, None (the task's default) for ``"task"``, else as given (a number, ``all``, ``train``)."""
    return {None: SAMPLE_SIZE_TEST_SIZE, "task": None}.get(given, given)
