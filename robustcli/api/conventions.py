"""The paper's conventions that the command line shows and defaults to, read from the studies so
that :mod:`robustcli.cli` imports nothing below :mod:`robustcli.api`.

* :data:`STUDY_STATISTICS`: the statistics of a study's table, in their order;
* :data:`VARIANCE_SETS`: the variance study's three sets of instances, in words;
* :func:`sample_size_test_size`: the test sample of `robust study sample-size` (the paper's: as
  many test examples as training examples, ``"train"``, unless told otherwise).
"""

from __future__ import annotations

from robustcli.studies._common import STUDY_STATISTICS
from robustcli.studies.variance import HELD as VARIANCE_SETS

__all__ = ["SAMPLE_SIZE_TEST_SIZE", "STUDY_STATISTICS", "VARIANCE_SETS", "sample_size_test_size"]

#: the sample-size study's test sample when none is given: as large as each training sample (the paper's)
SAMPLE_SIZE_TEST_SIZE = "train"


def sample_size_test_size(given: str | None) -> str | None:
    """The sample-size study's ``test_size`` from ``--test-size``: :data:`SAMPLE_SIZE_TEST_SIZE` when
    not given, None (the task's default) for ``"task"``, else as given (a number, ``all``, ``train``)."""
    return {None: SAMPLE_SIZE_TEST_SIZE, "task": None}.get(given, given)
