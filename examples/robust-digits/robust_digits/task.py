"""``digits``: classify scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes).

The data ship with scikit-learn (``sklearn.datasets.load_digits``): nothing is downloaded. The
population is split 0.5 / 0.5 once, with a fixed seed, into the training pool and the test set.
``x`` is ``[n, 1, 8, 8]`` float32 in [0, 1] (pixel value / 16); ``y`` is ``[n]`` int64 labels.

The loss is the error rate, 1 - accuracy; training minimises the cross-entropy.
"""

from __future__ import annotations

from typing import Any, ClassVar

from robustcli.errors import InputError
from robustcli.task import Candidate, Loss, SearchSpace, Task, TaskData

__all__ = ["DigitsTask"]

_OPTIONS: dict[str, Any] = {"split_seed": 0}


class DigitsTask(Task):
    name: ClassVar[str] = "digits"
    description: ClassVar[str] = "Handwritten 8x8 digits from scikit-learn (loss 1 - accuracy)"
    loss: ClassVar[Loss] = Loss("error_rate", "1 - mean(argmax(scores) == label)", lower_is_better=True)
    default_train_size: ClassVar[int] = 500

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise InputError(
                f"unknown option {unknown[0]!r} for task 'digits' (from [task_options]); valid: {', '.join(_OPTIONS)}"
            )
        self.options = {**_OPTIONS, **options}
        seed = self.options["split_seed"]
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise InputError(f"task 'digits' option split_seed={seed!r} is invalid (from [task_options]); expected an integer >= 0")
        self._data: TaskData | None = None

    # -- data -------------------------------------------------------------------------------------
    def load_data(self) -> TaskData:
        if self._data is None:
            import numpy as np
            import torch
            from sklearn.datasets import load_digits

            digits = load_digits()
            x = torch.from_numpy((digits.images / 16.0).astype(np.float32)).unsqueeze(1)
            y = torch.from_numpy(digits.target.astype(np.int64))
            perm = torch.from_numpy(np.random.default_rng(self.options["split_seed"]).permutation(len(y)))
            half = len(y) // 2
            pool, test = perm[:half], perm[half:]
            self._data = TaskData(x[pool], y[pool], x[test], y[test], meta={"source": "sklearn.datasets.load_digits"})
        return self._data

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}  # workers load their own copy

    # -- search space -----------------------------------------------------------------------------
    def search_space(self) -> SearchSpace:
        """2 architectures x 2 widths x 2 optimisers x 2 rates x 2 batch sizes = 32 candidates."""
        return SearchSpace.from_grid(
            {
                "arch": ["mlp", "cnn"],
                "width": [32, 64],
                "optimizer": ["adam", "sgd"],
                "lr": [1e-3, 1e-2],
                "batch_size": [32, 64],
            },
            fixed={"momentum": 0.9, "weight_decay": 1e-4},
            named={
                "default": {"arch": "cnn", "width": 32, "optimizer": "adam", "lr": 1e-3, "batch_size": 32,
                            "momentum": 0.9, "weight_decay": 1e-4},
            },
        )  # fmt: skip

    def build_model(self, candidate: Candidate):
        from torch import nn

        p = candidate.params
        width = int(p["width"])
        if p["arch"] == "mlp":
            return nn.Sequential(nn.Flatten(), nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))
        if p["arch"] == "cnn":
            return nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 16 x 4 x 4
                nn.Flatten(), nn.Linear(16 * 4 * 4, width), nn.ReLU(), nn.Linear(width, 10),
            )  # fmt: skip
        raise InputError(f"candidate {candidate.label} of task 'digits': unknown arch {p['arch']!r} (valid: mlp, cnn)")

    # -- losses -----------------------------------------------------------------------------------
    def test_loss(self, pred, y):
        return 1.0 - (pred.argmax(dim=-1) == y).float().mean()

    def objective(self, pred, y):
        import torch.nn.functional as F

        return F.cross_entropy(pred, y)

    def describe(self) -> dict[str, Any]:
        return {"options": self.options, "data": "1,797 images from scikit-learn, split 0.5/0.5 (898 pool, 899 test)"}
