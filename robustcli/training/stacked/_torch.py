"""Every private or layout-dependent torch API the stacked engine uses, in one place.

The stacked engine relies on a few things torch does not promise to keep:

* ``torch._C._functorch.is_batchedtensor``: whether a tensor is a vmap ``BatchedTensor`` (the
  rewritten modules take their fast paths only for the inputs and weights vmap batched);
* ``torch.ops.aten.convolution_backward`` and its positional signature (the shared-input
  convolution's backward);
* swapping the class of a live ``nn.Conv2d`` for a subclass (the rewritten convolution keeps
  the parameters, names and hooks of the module it replaces);
* ``torch.nn.modules.batchnorm._BatchNorm``, the base of the batch-norm modules (the probe
  refuses batch norm without running statistics);
* autograd Functions with a ``vmap`` staticmethod (public since torch 2.0, still young).

:func:`problems` exercises each of them on tiny inputs and says what no longer holds; the test
``tests/test_stacked_engine.py::test_private_torch_apis_hold`` runs it, and also fails when the
installed torch is newer than :data:`CHECKED_UP_TO` (the newest version these uses were checked
on: after an upgrade, run the tests and raise it). :func:`robustcli.training.stacked.check_stackable`
answers "train plainly" when :func:`problems` finds anything, so a torch upgrade that breaks one
of these degrades to the plain loop instead of failing a training run.
"""

from __future__ import annotations

import functools

import torch

__all__ = [
    "CHECKED_FROM",
    "CHECKED_UP_TO",
    "batch_norm_base",
    "convolution_backward",
    "is_batched",
    "problems",
    "swap_class",
    "torch_version",
    "version_problem",
]

#: the oldest and the newest torch (major, minor) these uses were checked on
CHECKED_FROM = (2, 1)
CHECKED_UP_TO = (2, 13)


def torch_version() -> tuple[int, int]:
    """The installed torch's (major, minor)."""
    major, minor = torch.__version__.split("+")[0].split(".")[:2]
    return int(major), int(minor)


def is_batched(t: torch.Tensor) -> bool:
    """True for a tensor that vmap batched (inside ``vmap``), False for a plain one."""
    return torch._C._functorch.is_batchedtensor(t)


def convolution_backward(
    grad: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias_sizes: list[int] | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    output_mask: list[bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The gradients (input, weight, bias) of a plain (not transposed) 2-d convolution, those of
    ``output_mask`` only, from aten's own backward kernel."""
    return torch.ops.aten.convolution_backward(
        grad, x, weight, bias_sizes, stride, padding, dilation, False, [0, 0], groups, output_mask
    )


def swap_class(module: torch.nn.Module, cls: type[torch.nn.Module]) -> None:
    """Make ``module`` an instance of ``cls``, a subclass of its class that adds no state of its
    own beyond class attributes (its parameters, buffers, names and hooks stay)."""
    if not issubclass(cls, type(module)):
        raise TypeError(f"{cls.__name__} is not a subclass of {type(module).__name__}")
    module.__class__ = cls


def batch_norm_base() -> type[torch.nn.Module]:
    """The common base of torch's batch-norm modules."""
    return torch.nn.modules.batchnorm._BatchNorm


def version_problem() -> str | None:
    """Why the installed torch is outside the checked versions, or None."""
    v = torch_version()
    if v < CHECKED_FROM or v > CHECKED_UP_TO:
        lo, hi = (".".join(map(str, x)) for x in (CHECKED_FROM, CHECKED_UP_TO))
        return (
            f"torch {torch.__version__} is outside {lo}-{hi}, the versions the stacked engine's private torch uses "
            f"were checked on (robustcli/training/stacked/_torch.py): run the tests, then widen the range"
        )
    return None


@functools.cache
def problems() -> tuple[str, ...]:
    """What no longer works as the stacked engine expects on the installed torch (empty: all)."""
    out: list[str] = []

    def check(what: str, fn) -> None:
        try:
            if not fn():
                out.append(f"{what}: unexpected result on torch {torch.__version__}")
        except Exception as exc:  # noqa: BLE001 - any failure is the answer
            out.append(f"{what}: {type(exc).__name__}: {exc} (torch {torch.__version__})")

    def batched() -> bool:
        seen: list[bool] = []

        def f(t: torch.Tensor) -> torch.Tensor:
            seen.append(is_batched(t))
            return t

        torch.func.vmap(f)(torch.zeros(2, 3))
        return seen == [True] and not is_batched(torch.zeros(2))

    def conv_backward() -> bool:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, 3, 5, 5, generator=gen, requires_grad=True)
        w = torch.randn(4, 3, 3, 3, generator=gen, requires_grad=True)
        b = torch.randn(4, generator=gen, requires_grad=True)
        out = torch.nn.functional.conv2d(x, w, b, 1, 1, 1, 1)
        g = torch.randn_like(out)
        # the vector-Jacobian product as the gradient of a scalar: autograd.grad's grad_outputs
        # would import torch's symbolic shapes and sympy (seconds) in every process that stacks
        want = torch.autograd.grad((out * g).sum(), (x, w, b))
        got = convolution_backward(g, x.detach(), w.detach(), [4], [1, 1], [1, 1], [1, 1], 1, [True, True, True])
        return all(torch.allclose(a, b_, rtol=1e-5, atol=1e-6) for a, b_ in zip(got, want, strict=True))

    def class_swap() -> bool:
        class Sub(torch.nn.Conv2d):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return super().forward(x) * 2

        conv = torch.nn.Conv2d(1, 2, 3)
        x = torch.randn(1, 1, 5, 5)
        want = conv(x) * 2
        names = [n for n, _ in conv.named_parameters()]
        swap_class(conv, Sub)
        return torch.equal(conv(x), want) and [n for n, _ in conv.named_parameters()] == names

    def batch_norm() -> bool:
        return all(issubclass(c, batch_norm_base()) for c in (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))

    def function_vmap() -> bool:
        class Double(torch.autograd.Function):
            generate_vmap_rule = False

            @staticmethod
            def forward(x):
                return x * 2

            @staticmethod
            def setup_context(ctx, inputs, output):
                pass

            @staticmethod
            def backward(ctx, g):
                return g * 2

            @staticmethod
            def vmap(info, in_dims, x):
                return x * 2, in_dims[0]

        return torch.equal(torch.func.vmap(Double.apply)(torch.ones(2, 3)), torch.full((2, 3), 2.0))

    check("torch._C._functorch.is_batchedtensor", batched)
    check("aten.convolution_backward (positional)", conv_backward)
    check("swapping an nn.Conv2d's class", class_swap)
    check("torch.nn.modules.batchnorm._BatchNorm", batch_norm)
    check("autograd.Function with a vmap staticmethod", function_vmap)
    return tuple(out)
