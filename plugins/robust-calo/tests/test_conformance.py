"""calo-energy and calo-position pass robustcli's conformance kit (on 600 simulated showers)."""

from __future__ import annotations

import pytest

from robust_calo.task import CaloEnergyTask, CaloPositionTask
from robustcli.testing import parametrize_with_checks

EVENTS = 600


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    """The simulated sample is made once into a temporary cache; no cache outside tmp is touched."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROBUST_CACHE_DIR", str(tmp_path_factory.mktemp("calo-cache")))
        yield


@parametrize_with_checks(
    [CaloEnergyTask(events=EVENTS), CaloPositionTask(events=EVENTS), CaloPositionTask(events=EVENTS, predict="xy")]
)
def test_calo_tasks_conform(task, check):
    check(task)
