"""``cifar10-resnet``: CIFAR-10 classification with the CIFAR ResNet-18, 36 training variants.

The experiment of the 2025 slides: the ResNet-18 base model varied in batch size, maximum
learning rate and L2 regularisation (36 variants), each instance trained on a sample of the
50,000 training images (20,000 or 30,000 in the slides; 30,000 by default here) and scored on the
10,000 test images. The training pool is the whole official training set, the test set the
official test set (CIFAR-10 comes split; no 0.5/0.5 split is made).

The slides do not list the values of the three hyperparameters; the grid below is our choice of
standard ones (the ``base`` candidate, batch 128, rate 0.1, L2 5e-4, is the usual ResNet-18
recipe). SGD with momentum 0.9; ``weight_decay`` is the core's L2 (added to the gradient). The
rate follows the one-cycle schedule peaking at ``lr`` (:meth:`Cifar10ResNetTask.lr_factor`, which
robustcli's training loop applies at every optimiser step).

Loss: 1 - accuracy; training minimises the cross-entropy (the per-epoch training curve logs it).
"""

from __future__ import annotations

from typing import Any, ClassVar

from robustcli.errors import InputError
from robustcli.task import Candidate, Loss, SearchSpace, Task, TaskData, TaskTags

__all__ = ["GRID", "Cifar10ResNetTask", "FIXED", "MEAN", "NAMED", "STD"]

#: the 36 variants: 3 batch sizes x 4 maximum learning rates x 3 L2 strengths (our choice of values)
GRID: dict[str, list[Any]] = {
    "batch_size": [128, 256, 512],
    "lr": [0.05, 0.1, 0.2, 0.4],
    "weight_decay": [1e-4, 5e-4, 1e-3],
}
#: what every variant shares: SGD with momentum under a one-cycle schedule peaking at ``lr``
#: (the core applies :meth:`Cifar10ResNetTask.lr_factor` at every optimiser step)
FIXED: dict[str, Any] = {"arch": "resnet18", "optimizer": "sgd", "momentum": 0.9, "lr_schedule": "one-cycle"}
NAMED: dict[str, dict[str, Any]] = {"base": {**FIXED, "batch_size": 128, "lr": 0.1, "weight_decay": 5e-4}}

#: per-channel mean and standard deviation of the CIFAR-10 training images (fixed constants)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

_OPTIONS: dict[str, Any] = {"data_dir": None, "width": 64, "augment": True, "channels_last": True, "amp": True}


class Cifar10ResNetTask(Task):
    name: ClassVar[str] = "cifar10-resnet"
    description: ClassVar[str] = "CIFAR-10 image classes with a ResNet-18, 36 training variants (loss 1 - accuracy)"
    loss: ClassVar[Loss] = Loss("error_rate", "1 - mean(argmax(logits) == label)", lower_is_better=True)
    # batch norm and in-forward random augmentation do not run under the stacked engine's vmap
    tags: ClassVar[TaskTags] = TaskTags(deterministic_on_cpu=True, supports_stacking=False, needs_gpu=False)
    default_train_size: ClassVar[int] = 30_000

    def __init__(self, **options: Any) -> None:
        unknown = sorted(set(options) - set(_OPTIONS))
        if unknown:
            raise InputError(
                f"unknown option {unknown[0]!r} for task {self.name!r} (from [task_options]); "
                f"valid: {', '.join(sorted(_OPTIONS))}"
            )
        o = {**_OPTIONS, **options}
        w = o["width"]
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise InputError(f"task {self.name!r} option width={w!r} is invalid (from [task_options]); expected an integer >= 1 (64 = ResNet-18)")
        for key in ("augment", "channels_last", "amp"):
            if not isinstance(o[key], bool):
                raise InputError(f"task {self.name!r} option {key}={o[key]!r} is invalid (from [task_options]); expected true or false")
        if o["data_dir"] is not None:
            o["data_dir"] = str(o["data_dir"])
        self.options = o
        self._data: TaskData | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}  # workers read the batches themselves

    # -- data -------------------------------------------------------------------------------------
    def load_data(self) -> TaskData:
        if self._data is None:
            import numpy as np
            import torch

            from robust_cifar10 import data as cifar

            folder = cifar.resolve_dir(self.options["data_dir"])
            train_x, train_y = cifar.read_split(folder, cifar.TRAIN_FILES)
            test_x, test_y = cifar.read_split(folder, [cifar.TEST_FILE])
            mean = torch.tensor(MEAN).view(1, 3, 1, 1)
            std = torch.tensor(STD).view(1, 3, 1, 1)

            def images(raw: np.ndarray) -> torch.Tensor:
                x = torch.from_numpy(raw).view(-1, 3, 32, 32).float().div_(255.0)
                return x.sub_(mean).div_(std)

            meta = {"source": str(folder), "pool_size": len(train_y), "test_size": len(test_y), "normalised": "per-channel mean/std"}
            self._data = TaskData(
                images(train_x), torch.from_numpy(train_y), images(test_x), torch.from_numpy(test_y), meta=meta
            )
        return self._data

    # -- space and models -------------------------------------------------------------------------
    def search_space(self) -> SearchSpace:
        return SearchSpace.from_grid(GRID, fixed=FIXED, named=NAMED)

    def build_model(self, candidate: Candidate):
        from robust_cifar10.model import ResNet18

        if candidate.params.get("arch") != "resnet18":
            raise InputError(f"candidate {candidate.label} of task {self.name!r}: arch must be 'resnet18'")
        o = self.options
        return ResNet18(width=o["width"], augment=o["augment"], channels_last=o["channels_last"], amp=o["amp"])

    def test_loss(self, pred, y):
        return 1.0 - (pred.argmax(dim=-1) == y).float().mean()

    def objective(self, pred, y):
        import torch.nn.functional as F

        return F.cross_entropy(pred, y)

    def lr_factor(self, candidate: Candidate, step: int, total_steps: int) -> float:
        """The one-cycle rate at optimiser ``step`` of ``total_steps`` as a fraction of ``lr``.

        ``total_steps`` spans ``max_epochs``: set ``min_epochs = max_epochs`` for the schedule
        to run to its end, as the slides' fixed-length trainings do.
        """
        from robust_cifar10.schedule import one_cycle_factor

        return one_cycle_factor(step, total_steps)

    def describe(self) -> dict[str, Any]:
        from robust_cifar10 import data as cifar

        try:
            status = f"found in {cifar.resolve_dir(self.options['data_dir'])}"
        except InputError as exc:
            status = f"missing: {exc}"
        width = self.options["width"]
        params = 11_173_962 if width == 64 else "see the model"
        return {
            "options": self.options,
            "data": status,
            "grid": "batch_size 128, 256, 512 x lr 0.05, 0.1, 0.2, 0.4 x weight_decay 1e-4, 5e-4, 1e-3 (our values; the slides give none)",
            "model": f"CIFAR ResNet-18, width {width}, {params} parameters; random crop (pad 4) + flip on the device",
            "learning rate": (
                "one-cycle, peaking at the candidate's lr (robust_cifar10.schedule, torch's OneCycleLR curve), "
                "applied by robustcli's training loop at every optimiser step over max_epochs x batches per epoch; "
                "--min-epochs N --max-epochs N ends the cycle with training"
            ),
        }
