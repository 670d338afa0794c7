"""robustcli.testing: the conformance kit, run on deliberately broken tasks (asserting its exact
messages) and on the built-in synthetic task."""

from __future__ import annotations

import pickle
from typing import Any, ClassVar

import numpy as np
import pytest
import torch
from torch import nn

from robustcli.builtin.synthetic import SyntheticTask
from robustcli.task import Candidate, Loss, SearchSpace, Task, TaskData, TaskTags, candidate_id
from robustcli.testing import (
    CHECKS,
    TaskCheckError,
    check_documentation,
    check_task,
    parametrize_with_checks,
    sample_candidates,
)


class TinyTask(Task):
    """A well-behaved regression: 4 features, 60 pool rows, 40 test rows, 4 candidates."""

    name: ClassVar[str] = "tiny"
    description: ClassVar[str] = "A tiny regression for the kit's own tests"
    loss: ClassVar[Loss] = Loss("mse", "mean((y_pred - y_true)^2)")
    default_train_size: ClassVar[int] = 32

    def load_data(self) -> TaskData:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(100, 4, generator=gen)
        y = x.sum(1, keepdim=True)
        return TaskData(x[:60], y[:60], x[60:], y[60:])

    def search_space(self) -> SearchSpace:
        return SearchSpace.from_grid(
            {"hidden": [4, 8], "lr": [1e-3, 1e-2]}, fixed={"optimizer": "adam", "batch_size": 16},
            named={"base": {"hidden": 4, "lr": 1e-2, "optimizer": "adam", "batch_size": 16}},
        )  # fmt: skip

    def build_model(self, candidate: Candidate) -> nn.Module:
        h = int(candidate.params["hidden"])
        return nn.Sequential(nn.Linear(4, h), nn.ReLU(), nn.Linear(h, 1))

    def test_loss(self, pred, y):
        return ((pred - y) ** 2).mean()


class DuplicateIds(TinyTask):
    name = "dup-ids"

    def search_space(self) -> SearchSpace:
        # hand-made ids that collide: two different candidates named by their optimiser alone
        common = {"hidden": 4, "optimizer": "adam", "batch_size": 16}
        return SearchSpace([Candidate("c-adam", {**common, "lr": lr}) for lr in (1e-3, 1e-2)])


class HandMadeIds(TinyTask):
    name = "hand-ids"

    def search_space(self) -> SearchSpace:
        p = {"hidden": 4, "optimizer": "adam", "batch_size": 16, "lr": 1e-3}
        return SearchSpace([Candidate("first", p)])


class Overlapping(TinyTask):
    name = "overlap"

    def load_data(self) -> TaskData:
        d = super().load_data()
        # the last 5 test rows are copies of pool rows 10..14: a leaked test set
        test_x = torch.cat([d.test_x[:-5], d.pool_x[10:15]])
        test_y = torch.cat([d.test_y[:-5], d.pool_y[10:15]])
        return TaskData(d.pool_x, d.pool_y, test_x, test_y)


class _Flat(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x).squeeze(1)  # [N] where y is [N, 1]


class WrongShape(TinyTask):
    name = "wrong-shape"

    def build_model(self, candidate):
        return _Flat(super().build_model(candidate))


class _Noisy(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x)
        if self.training:  # "regularising" noise from numpy's global, unseeded generator
            out = out + float(np.random.normal(scale=0.1))
        return out


class Nondeterministic(TinyTask):
    name = "nondeterministic"

    def build_model(self, candidate):
        return _Noisy(super().build_model(candidate))


class Unpicklable(TinyTask):
    name = "unpicklable"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.transform = lambda x: x


class NoDescription(TinyTask):
    name = "no-description"
    description = ""


class _Branchy(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        out = self.inner(x)
        return out if bool(out.mean() > -1e9) else -out  # data-dependent control flow


class BranchyTask(TinyTask):
    name = "branchy"

    def build_model(self, candidate):
        return _Branchy(super().build_model(candidate))


class BranchyTagged(BranchyTask):
    tags = TaskTags(supports_stacking=False)


def _failed(results) -> dict[str, str]:
    return {r.check: r.message for r in results if r.status == "failed"}


def test_a_conforming_task_passes_every_check():
    results = check_task(TinyTask)
    assert [r.check for r in results] == list(CHECKS)
    assert {r.status for r in results} == {"passed"}


def test_duplicate_ids():
    failed = _failed(check_task(DuplicateIds, raise_on_failure=False))
    assert failed["check_candidate_ids"] == (
        "check_candidate_ids: task 'dup-ids': search_space() raised ValueError: two different candidates share the id c-adam"
    )
    # everything that needs candidates fails the same way; documentation and data pass
    assert set(failed) == {"check_candidate_ids", "check_named_candidates", "check_forward_backward", "check_pickle"}


def test_ids_must_derive_from_the_parameters():
    failed = _failed(check_task(HandMadeIds, raise_on_failure=False))
    expected = candidate_id({"hidden": 4, "optimizer": "adam", "batch_size": 16, "lr": 1e-3})
    assert failed == {
        "check_candidate_ids": "check_candidate_ids: task 'hand-ids', candidate first: id is not candidate_id(params) "
        f"= {expected}; make candidates with Candidate.from_params or SearchSpace.from_grid"
    }


def test_overlapping_pool_and_test():
    failed = _failed(check_task(Overlapping, raise_on_failure=False))
    assert failed == {
        "check_pool_test_disjoint": "check_pool_test_disjoint: task 'overlap': 5 of 40 test rows are identical to "
        "training-pool rows (first: test row 35 = pool row 10); the test set must never be trained on"
    }


def test_wrong_output_shape():
    failed = _failed(check_task(WrongShape, raise_on_failure=False))
    base = Candidate.from_params({"hidden": 4, "lr": 1e-2, "optimizer": "adam", "batch_size": 16})
    assert failed == {
        "check_forward_backward": f"check_forward_backward: task 'wrong-shape', candidate base ({base.id}): model output "
        "has shape (8,) but y has shape (8, 1); the losses would broadcast them"
    }


def test_unseeded_randomness():
    failed = _failed(check_task(Nondeterministic, raise_on_failure=False))
    assert set(failed) == {"check_seeded_training"}
    base = Candidate.from_params({"hidden": 4, "lr": 1e-2, "optimizer": "adam", "batch_size": 16})
    prefix = f"check_seeded_training: task 'nondeterministic', candidate base ({base.id}): two trainings with the same seeds differ ("
    assert failed["check_seeded_training"].startswith(prefix)
    assert failed["check_seeded_training"].endswith(
        " after 2 epochs); draw every random number from torch's generator (seeded with init_seed before "
        "build_model), not from numpy, random or the clock"
    )


def test_unpicklable_task():
    task = Unpicklable()
    with pytest.raises(Exception) as info:
        pickle.dumps(task)
    why = f"{type(info.value).__name__}: {info.value}"
    failed = _failed(check_task(task, raise_on_failure=False))
    assert failed == {
        "check_pickle": f"check_pickle: task 'unpicklable': pickle.dumps(task) failed ({why}); process pools and Ray "
        "send the task to workers: keep lambdas, open files and locks out of its attributes, or define __getstate__"
    }
    assert "lambda" in why


def test_empty_description():
    failed = _failed(check_task(NoDescription, raise_on_failure=False))
    assert failed == {
        "check_documentation": "check_documentation: task 'no-description': description is empty; give a one-line "
        "description (class attribute `description`)"
    }


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"name": ""}, "name is empty; set the class attribute `name` (the entry point's name)"),
        ({"name": "two words"}, "name 'two words' is not one command-line word (letters, digits, '.', '_', '-')"),
        ({"description": "line one\nline two"}, "description spans 2 lines; keep it to one line"),
        ({"loss": Loss("mse", "")}, "loss.formula is empty; state the formula, e.g. 'sqrt(mean((y_pred - y_true)^2))'"),
        ({"default_train_size": 0}, "default_train_size is 0; expected a positive integer"),
    ],
)
def test_documentation_messages(attrs, message):
    broken = type("Broken", (TinyTask,), attrs)()
    with pytest.raises(AssertionError) as info:
        check_documentation(broken)
    assert str(info.value) == f"check_documentation: task {broken.name or 'Broken'!r}: {message}"


def test_tags_decide_which_checks_apply():
    class Gpu(TinyTask):
        name = "gpu-only"
        tags = TaskTags(needs_gpu=True, deterministic_on_cpu=False)

    results = {r.check: r for r in check_task(Gpu, raise_on_failure=False)}
    assert results["check_seeded_training"].status == "skipped"
    assert results["check_seeded_training"].message == "the task is tagged deterministic_on_cpu=False"
    if not torch.cuda.is_available():
        assert results["check_forward_backward"].message == (
            "the task is tagged needs_gpu=True and no CUDA device is available"
        )


def test_control_flow_trains_one_at_a_time_and_the_kit_says_so_with_the_true_cause():
    """The README's promise: such a model falls back to the plain loop. The kit agrees (a pass with
    a note), names the cause, and gives no command-line advice."""
    results = {r.check: r for r in check_task(BranchyTask)}
    assert {r.status for r in results.values()} == {"passed"}
    note = results["check_stacking"].message
    assert note.startswith("trains in the one-at-a-time loop, not stacked (runs say why in robust.plain_reason): base (")
    assert "data-dependent control flow in the model (a Python branch on a tensor's value)" in note
    for wrong in ("--engine", "''s", "parameters and buffers", "plain tensor attribute"):
        assert wrong not in note
    assert results["check_stacking"].check == "check_stacking" and results["check_pickle"].message == ""
    assert {r.status for r in check_task(BranchyTagged)} == {"passed", "skipped"}


class _RandomFeatures(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = torch.randn(4, 8)  # a plain tensor attribute: neither parameter nor buffer
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        return self.head((x @ self.proj).sin())


class RandomFeaturesTask(TinyTask):
    name = "random-features"

    def build_model(self, candidate):
        return _RandomFeatures()


def test_state_outside_parameters_and_buffers_is_named_as_the_cause():
    note = {r.check: r.message for r in check_task(RandomFeaturesTask, sample=0)}["check_stacking"]
    assert note.endswith(": the stacked copy of the model predicts otherwise than each model alone: state outside "
                         "its parameters and buffers (e.g. a plain tensor attribute)")  # fmt: skip


class Float64Data(TinyTask):
    name = "float64"

    def load_data(self) -> TaskData:  # as numpy hands scikit-learn's data sets over
        d = super().load_data()
        return TaskData(d.pool_x.double(), d.pool_y, d.test_x.double(), d.test_y)


def test_one_float64_tensor_is_one_failure():
    results = {r.check: r for r in check_task(Float64Data, raise_on_failure=False)}
    assert _failed(results.values()) == {
        "check_data_shapes": "check_data_shapes: task 'float64': pool_x has dtype torch.float64; the core trains "
        "in float32 (use .float())"
    }
    for check in ("check_forward_backward", "check_seeded_training", "check_stacking", "check_pickle"):
        assert (results[check].status, results[check].message) == ("skipped", "check_data_shapes failed: fix that first")
    mark = parametrize_with_checks([Float64Data()])
    checks = {p.id: p.values for p in mark.args[1]}
    task, stacking = checks["float64:check_stacking"]
    with pytest.raises(pytest.skip.Exception, match="check_data_shapes failed: fix that first"):
        stacking(task)
    task, pickling = checks["float64:check_documentation"]
    assert pickling(task) is None


def test_failures_raise_one_error_listing_them():
    with pytest.raises(TaskCheckError) as info:
        check_task(NoDescription)
    err = info.value
    assert str(err).splitlines()[0] == "task 'no-description' failed 1 of 11 checks:"
    assert str(err).splitlines()[1].startswith("- check_documentation: task 'no-description': description is empty")
    assert [r.check for r in err.failures] == ["check_documentation"]
    assert len(err.results) == len(CHECKS)


def test_expected_failures_are_data_with_reasons():
    results = {r.check: r for r in check_task(
        NoDescription, expected_failed_checks={"check_documentation": "no words yet", "check_pickle": "said so"}
    )}  # fmt: skip
    assert results["check_documentation"].status == "xfail"
    assert results["check_pickle"].status == "xpass"
    assert results["check_pickle"].message == "expected to fail (said so) but passed"
    with pytest.raises(ValueError, match="unknown check 'check_pickel' .*did you mean 'check_pickle'"):
        check_task(TinyTask, expected_failed_checks={"check_pickel": "typo"})


def test_sampled_candidates_are_named_first_then_seeded():
    task = SyntheticTask()
    a = sample_candidates(task, sample=3, seed=0)
    assert [c.name for c in a[:3]] == ["small", "wide", "unstable"]
    assert len(a) == 6
    assert [c.id for c in a] == [c.id for c in sample_candidates(task, sample=3, seed=0)]
    assert [c.id for c in a] != [c.id for c in sample_candidates(task, sample=3, seed=1)]


def test_parametrize_ids_are_readable():
    mark = parametrize_with_checks([TinyTask, BranchyTask()], expected_failed_checks={"check_stacking": "branches"})
    ids = [p.id for p in mark.args[1]]
    assert ids[:2] == ["tiny:check_documentation", "tiny:check_candidate_ids"]
    assert "branchy:check_stacking" in ids and len(ids) == 2 * len(CHECKS)
    twice = parametrize_with_checks([TinyTask, TinyTask])
    assert [p.id for p in twice.args[1]][len(CHECKS)] == "tiny-2:check_documentation"


@parametrize_with_checks([SyntheticTask])
def test_synthetic_task_conforms(task, check):
    check(task)


def test_a_task_with_a_learning_rate_schedule_passes_the_stacking_check():
    from robustcli.testing import check_stacking

    class Scheduled(SyntheticTask):  # trains one at a time: nothing for the stacking check to ask
        def lr_factor(self, candidate, step, total_steps):
            return 1.0 - step / total_steps

    check_stacking(Scheduled(), sample=1)
