"""Seeds, early stopping and the one-instance loop, without MLflow."""

from __future__ import annotations

import math

import pytest

from robustcli.config import EarlyStoppingSettings, TrainingSettings
from robustcli.training.early_stopping import EarlyStopping
from robustcli.training.seeds import derive_seeds


def test_seeds_are_deterministic_and_shared_across_candidates():
    assert derive_seeds(0, 3) == derive_seeds(0, 3)
    assert derive_seeds(0, 3) != derive_seeds(0, 4)
    assert derive_seeds(0, 3) != derive_seeds(1, 3)
    s = derive_seeds(0, 3)
    assert s.init_seed != s.data_seed
    # mixing the candidate in is a setting
    assert derive_seeds(0, 3, "ca") != derive_seeds(0, 3, "cb")


def _run(curve, **kw):
    stopper = EarlyStopping(EarlyStoppingSettings(**kw))
    for epoch, loss in enumerate(curve, 1):
        reason = stopper.update(loss)
        if reason:
            return reason, epoch, stopper.spiked
    return None, len(curve), stopper.spiked


def test_flatten_waits_for_min_epochs_then_stops_when_flat():
    curve = [1.0 / (1 + e) for e in range(20)] + [0.05] * 200
    reason, epoch, spiked = _run(curve, min_epochs=100, window=30, threshold=0.1)
    assert reason == "converged" and epoch == 100 and not spiked


def test_flatten_keeps_going_while_loss_moves():
    curve = [1.0 * 0.99**e for e in range(300)]  # falls ~26% per 30 epochs
    reason, epoch, _ = _run(curve, min_epochs=10, window=30, threshold=0.1, max_epochs=250)
    assert reason == "epoch_cap" and epoch == 250


def test_spike_after_min_epochs_is_flagged_and_stops_in_spike_mode():
    curve = [0.1] * 50 + [0.5] + [0.1] * 50
    assert _run(curve, min_epochs=20, window=10, mode="spike")[:2] == ("spiked", 51)
    falling = [0.9**e for e in range(30)]
    curve = falling + [0.2] + [falling[-1]] * 50
    reason, epoch, spiked = _run(curve, min_epochs=20, window=10, mode="flatten")
    assert spiked and reason == "converged" and epoch == 41


def test_spike_before_min_epochs_is_not_flagged():
    curve = [0.1] * 5 + [0.5] + [0.1] * 100
    assert _run(curve, min_epochs=20, window=10)[2] is False


def test_non_finite_is_diverged():
    assert _run([0.1, math.inf], min_epochs=0, window=2)[0] == "diverged"


def test_max_below_min_epochs_is_refused():
    with pytest.raises(ValueError):
        EarlyStoppingSettings(min_epochs=100, max_epochs=50)


def test_test_loss_is_the_last_epochs_and_instances_are_independent():
    from robustcli.builtin.synthetic import SyntheticTask
    from robustcli.training.instance import InstanceSpec, train_instance

    task = SyntheticTask()
    data = task.load_data()
    cand = task.search_space().get("small")
    settings = TrainingSettings(early_stopping=EarlyStoppingSettings(min_epochs=5, window=3, max_epochs=12))
    s = derive_seeds(0, 0)
    spec = InstanceSpec(0, s.init_seed, s.data_seed, 128)
    r1 = train_instance(task, cand, data, spec, settings)
    r2 = train_instance(task, cand, data, spec, settings)
    assert r1.test_loss == r2.test_loss == r1.test_curve[-1]
    assert len(r1.test_curve) == r1.epochs
    other = train_instance(task, cand, data, InstanceSpec(1, *vars(derive_seeds(0, 1)).values(), 128), settings)
    assert other.test_loss != r1.test_loss


def test_a_task_learning_rate_schedule_is_applied_at_every_step():
    from robustcli.builtin.synthetic import SyntheticTask
    from robustcli.training.instance import InstanceSpec, train_instance

    class Frozen(SyntheticTask):
        def lr_factor(self, candidate, step, total_steps):
            return 0.0  # a rate of zero: the weights never move

    task = Frozen()
    settings = TrainingSettings(early_stopping=EarlyStoppingSettings(min_epochs=3, window=2, max_epochs=3))
    result = train_instance(task, task.search_space().get("small"), task.load_data(), InstanceSpec(0, 1, 2, 64), settings)
    assert len(set(result.test_curve)) == 1
