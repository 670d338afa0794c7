"""The digits task: its data split, and robustcli's conformance kit."""

from __future__ import annotations

import pytest
import torch

from robust_digits.task import DigitsTask
from robustcli.errors import InputError
from robustcli.testing import parametrize_with_checks


@parametrize_with_checks([DigitsTask()])
def test_conformance(task, check):
    check(task)


def test_split_is_half_and_half_and_fixed():
    a, b = DigitsTask().load_data(), DigitsTask().load_data()
    assert (a.pool_size, a.test_size) == (898, 899)
    assert a.pool_x.shape[1:] == (1, 8, 8) and a.pool_y.dtype == torch.int64
    assert torch.equal(a.test_y, b.test_y)
    assert not torch.equal(DigitsTask(split_seed=1).load_data().test_y, a.test_y)


def test_space_and_losses():
    task = DigitsTask()
    assert len(task.search_space()) == 32
    y = torch.tensor([0, 1, 2, 3])
    scores = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0]), 10).float()
    assert float(task.test_loss(scores, y)) == pytest.approx(0.25)


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(InputError, match="unknown option 'size' for task 'digits' .*valid: split_seed"):
        DigitsTask(size=3)
