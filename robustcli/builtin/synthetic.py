"""``synthetic``: a tiny regression with known noise, the core's own test and demo task.

y = sin(2 x0) + 0.5 x1 x2 + 0.3 x3 + noise, noise ~ N(0, sigma^2) with sigma = 0.1 by default,
so the best achievable test RMSE is about sigma. Six standard-normal features (the last two are
distractors). The population is drawn once from a fixed seed.
"""

from __future__ import annotations

from typing import Any, ClassVar

from robustcli.errors import InputError
from robustcli.task import Baseline, Loss, SearchSpace, Task, TaskData

class LeastSquares(Baseline):
    """Ordinary least squares on the raw features: the non-deep reference."""

    name = "least-squares"
    description = "linear regression on the features (least squares)"

    def fit_predict(self, train_x, train_y, test_x, seed):
        import torch

        ones = torch.ones(train_x.shape[0], 1)
        coef = torch.linalg.lstsq(torch.cat([train_x, ones], 1).double(), train_y.double()).solution
        return (torch.cat([test_x, torch.ones(test_x.shape[0], 1)], 1).double() @ coef).float()


_OPTIONS = {"noise": 0.1, "pool_size": 2000, "test_size": 1000, "population_seed": 1234}


class SyntheticTask(Task):
    name: ClassVar[str] = "synthetic"
    description: ClassVar[str] = "Tiny synthetic regression with known noise (sigma = 0.1): the built-in test task"
    loss: ClassVar[Loss] = Loss("rmse", "sqrt(mean((y_pred - y_true)^2))", lower_is_better=True)
    default_train_size: ClassVar[int] = 256

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise InputError(
                f"unknown option {unknown[0]!r} for task 'synthetic' (valid: {', '.join(sorted(_OPTIONS))})"
            )
        self.options = {**_OPTIONS, **options}
        for key, kind in (("pool_size", int), ("test_size", int), ("population_seed", int), ("noise", float)):
            try:
                value = kind(self.options[key])
            except (TypeError, ValueError):
                raise InputError(f"task option {key} must be a number, got {self.options[key]!r}") from None
            if value < 0 or (key in ("pool_size", "test_size") and value == 0):
                raise InputError(f"task option {key} must be positive, got {self.options[key]!r}")
        self._data: TaskData | None = None

    def load_data(self) -> TaskData:
        if self._data is None:
            import torch

            o = self.options
            gen = torch.Generator().manual_seed(int(o["population_seed"]))
            n = int(o["pool_size"]) + int(o["test_size"])
            x = torch.randn(n, 6, generator=gen)
            f = torch.sin(2 * x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + 0.3 * x[:, 3]
            y = (f + float(o["noise"]) * torch.randn(n, generator=gen)).unsqueeze(1)
            p = int(o["pool_size"])
            self._data = TaskData(x[:p], y[:p], x[p:], y[p:], meta={"noise": float(o["noise"])})
        return self._data

    def search_space(self) -> SearchSpace:
        return SearchSpace.from_grid(
            {
                "hidden": [8, 16, 32],
                "layers": [1, 2],
                "activation": ["relu", "prelu"],
                "optimizer": ["adam", "sgd"],
                "lr": [1e-3, 1e-2],
                "batch_size": [16, 64],
            },
            named={
                "small": {"hidden": 16, "layers": 1, "activation": "relu", "optimizer": "adam", "lr": 1e-2, "batch_size": 32},
                "wide": {"hidden": 32, "layers": 2, "activation": "relu", "optimizer": "adam", "lr": 1e-2, "batch_size": 64},
                # diverges at once: exercises the failed-instance path
                "unstable": {"hidden": 16, "layers": 1, "activation": "relu", "optimizer": "sgd", "lr": 1e6, "batch_size": 64},
            },
        )

    def build_model(self, candidate):
        from torch import nn

        p = candidate.params
        layers: list[nn.Module] = []
        width_in = 6
        for _ in range(int(p["layers"])):
            layers += [nn.Linear(width_in, int(p["hidden"])), nn.PReLU() if p["activation"] == "prelu" else nn.ReLU()]
            width_in = int(p["hidden"])
        layers.append(nn.Linear(width_in, 1))
        return nn.Sequential(*layers)

    def test_loss(self, pred, y):
        return ((pred - y) ** 2).mean().sqrt()

    def objective(self, pred, y):
        return ((pred - y) ** 2).mean()

    def baselines(self):
        return {"least-squares": LeastSquares()}

    def describe(self) -> dict[str, Any]:
        return {"options": self.options, "best achievable loss": f"about {self.options['noise']} (the noise)"}
