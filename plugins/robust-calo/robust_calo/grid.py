"""The paper's search grid (section 3.10) and its named models (Tables 1 and 2, appendix 6.1).

How 6,912 arises. The paper states the hyperparameter lists (learning rate 4 values, batch size 5,
weight decay 3) and the architecture options (two convolutions with 2x2, 3x3 or 5x5 filters; two
to four dense layers; ReLU or PReLU; NAdam or AdamW; with or without the inductive-bias
feature), and says the combination "yields 6 912 models". 6,912 = 2^8 x 3^3 has no factor 5, so
the five batch sizes cannot all be in it. The reconstruction used here, the only product of the
paper's own dimensions we found that gives 6,912 and also explains the appendix::

    optimizer      nadam, adamw                        2   (section 3.5: "we used NAdam and AdamW")
    activation     relu, prelu                         2   (section 3.4; ReLU for Models 1-2, PReLU for 3-4)
    features       none, esum | barycenter             2   (section 3.8)
    kernel         2, 3, 5                             3   (section 3.10)
    hidden         (9,), (64, 9), (64, 32, 9)          3   (2, 3 or 4 dense layers counting the output)
    pool           3, 1                                2   (second pooling to 3x3 (Models 1-2) or 1x1 (Models 3-4))
    lr             1e-4, 1e-3, 1e-2, 1e-1              4
    batch_size     32, 64, 128, 256                    4   (the text's 16 left out; see below)
    weight_decay   1e-3, 1e-2, 1e-1                    3
                                                       = 2*2*2*3*3*2*4*4*3 = 6,912

Assumptions, all visible in the candidates' parameters: the filters are fixed at 32 then 64 (every
selected model has them); the last hidden layer has 9 neurons (all four Models and both NAS models
end with Linear(., 9)); the 4-layer widths (64, 32, 9) are a guess (no selected model has them); the
second pooling size is a grid dimension because Models 1-2 and 3-4 differ in it. The batch sizes
are 32-256 (the list of the paper's activation study, section 3.4, and it holds every selected
model's batch size); ``grid="text"`` instead takes the five batch sizes the text of section 3.10
lists, 8,640 candidates. The position grid is the same with the barycentre as the feature
(the paper: "the same procedure is used", 2 x 6,912 models in all).
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod
from typing import Any

from robustcli.task import SearchSpace

__all__ = [
    "GRIDS",
    "NAS_SPACE",
    "describe",
    "grid_dimensions",
    "grid_summary",
    "nas_models",
    "nas_space",
    "named_models",
    "search_space",
]

GRIDS = ("paper", "text")

_FEATURE = {"energy": "esum", "position": "barycenter"}


def grid_dimensions(target: str, grid: str = "paper") -> dict[str, list[Any]]:
    """The grid's dimensions in a fixed order (the order decides candidate order, never ids)."""
    if target not in _FEATURE:
        raise ValueError(f"target must be 'energy' or 'position', got {target!r}")
    if grid not in GRIDS:
        raise ValueError(f"grid must be one of {', '.join(GRIDS)}, got {grid!r}")
    batch = [32, 64, 128, 256] if grid == "paper" else [16, 32, 64, 128, 256]
    return {
        "optimizer": ["nadam", "adamw"],
        "activation": ["relu", "prelu"],
        "features": ["none", _FEATURE[target]],
        "kernel": [2, 3, 5],
        "hidden": [(9,), (64, 9), (64, 32, 9)],
        "pool": [3, 1],
        "lr": [1e-4, 1e-3, 1e-2, 1e-1],
        "batch_size": batch,
        "weight_decay": [1e-3, 1e-2, 1e-1],
    }


def _fixed(input_mode: str) -> dict[str, Any]:
    return {"filters": (32, 64), "input": input_mode}


def named_models(target: str, input_mode: str = "raw") -> dict[str, dict[str, Any]]:
    """Models 1 and 2 (energy, Table 1) or 3 and 4 (position, Table 2), all on the paper grid."""
    base = {**_fixed(input_mode), "kernel": 3}
    if target == "energy":
        common = {**base, "activation": "relu", "hidden": (9,), "pool": 3}
        return {
            "model1": {**common, "features": "none", "optimizer": "nadam", "lr": 1e-4, "batch_size": 64, "weight_decay": 1e-2},
            "model2": {**common, "features": "esum", "optimizer": "adamw", "lr": 1e-3, "batch_size": 32, "weight_decay": 1e-1},
        }
    if target == "position":
        common = {
            **base, "activation": "prelu", "hidden": (64, 9), "pool": 1,
            "optimizer": "adamw", "lr": 1e-4, "batch_size": 32, "weight_decay": 1e-1,
        }  # fmt: skip
        return {"model3": {**common, "features": "none"}, "model4": {**common, "features": "barycenter"}}
    raise ValueError(f"target must be 'energy' or 'position', got {target!r}")


def search_space(target: str, grid: str = "paper", input_mode: str = "raw") -> SearchSpace:
    """The task's search space: the grid plus its named models (and, for energy, the NAS picks)."""
    named = named_models(target, input_mode)
    if target == "energy":
        named.update(nas_models(input_mode))
    return SearchSpace.from_grid(grid_dimensions(target, grid), fixed=_fixed(input_mode), named=named)


#: The paper's NAS space (appendix 7, "Comparison with NAS"): what Optuna's TPE searched. Each
#: convolution's filters independently; 1-3 dense layers, the last one the 9-neuron layer every
#: model of the paper ends with (the widths listed apply to the others: NAS 1 is 32 -> 9, NAS 2
#: 128 -> 64 -> 9); the optimisers, rates, batch sizes and weight decays as listed. That is
#: 3 x 3 x (1 + 3 + 9) x 3^4 = 9,477, the paper's count. Its NAS models pool the second
#: convolution to 1x1 while Model 2 pools to 3x3, and the paper says Model 2 lies in the space: so
#: the second pooling is a dimension here too (18,954). Fixed: 3x3 kernels, ReLU (the NAS models'),
#: the task's inductive-bias feature (NAS 1 and 2 take the energy sum: Linear(32 + 1, 9) = 306 and
#: Linear(64 + 1, 9) = 594 parameters), entering the last dense layer.
NAS_SPACE: dict[str, list[Any]] = {
    "conv1_filters": [16, 32, 64],
    "conv2_filters": [16, 32, 64],
    "pool": [3, 1],
    "dense_layers": [1, 2, 3],
    "units": [32, 64, 128],
    "optimizer": ["adam", "adamw", "rmsprop"],
    "lr": [1e-4, 1e-3, 1e-2],
    "batch_size": [16, 32, 64],
    "weight_decay": [1e-3, 1e-2, 1e-1],
}


def _nas_params(
    input_mode: str, target: str, filters: tuple[int, int], pool: int, widths: tuple[int, ...], training: dict[str, Any]
) -> dict[str, Any]:
    """A candidate of the NAS space; keys as the grid's, so Model 2 found by the search *is* model2."""
    params: dict[str, Any] = {
        **_fixed(input_mode), "filters": filters, "kernel": 3, "activation": "relu", "features": _FEATURE[target],
        "hidden": (*widths, 9), "pool": pool, **training,
    }  # fmt: skip
    if len(widths) >= 2:  # the features enter the last dense layer (the model's default is the second)
        params["features_at"] = len(widths)
    return params


def nas_space(trial: Any, target: str, input_mode: str = "raw") -> dict[str, Any]:
    """A candidate of :data:`NAS_SPACE` drawn by an Optuna trial (the width of dense layer i is
    asked as ``units_i`` only when there is such a layer)."""
    s = NAS_SPACE
    filters = (trial.suggest_categorical("conv1_filters", s["conv1_filters"]),
               trial.suggest_categorical("conv2_filters", s["conv2_filters"]))  # fmt: skip
    pool = trial.suggest_categorical("pool", s["pool"])
    layers = trial.suggest_categorical("dense_layers", s["dense_layers"])
    widths = tuple(trial.suggest_categorical(f"units_{i + 1}", s["units"]) for i in range(layers - 1))
    training = {k: trial.suggest_categorical(k, s[k]) for k in ("optimizer", "lr", "batch_size", "weight_decay")}
    return _nas_params(input_mode, target, filters, pool, widths, training)


def nas_space_size() -> int:
    s = NAS_SPACE
    hidden = sum(len(s["units"]) ** (n - 1) for n in s["dense_layers"])
    return prod(len(s[k]) for k in s if k not in ("dense_layers", "units")) * hidden


def nas_models(input_mode: str = "raw") -> dict[str, dict[str, Any]]:
    """NAS 1 and NAS 2 (Table 3 and the appendix's layer summaries: 5,756 and 15,932 parameters):
    conv 32 then 16 filters pooled to 1x1, AdamW, batch 32; NAS 1: 32 -> 9 neurons, rate and decay
    1e-3; NAS 2: 128 -> 64 -> 9, 1e-2 (Table 3 leaves the cells it shares with NAS 1 blank)."""
    common = {"optimizer": "adamw", "batch_size": 32}
    return {
        "nas1": _nas_params(input_mode, "energy", (32, 16), 1, (32,), {**common, "lr": 1e-3, "weight_decay": 1e-3}),
        "nas2": _nas_params(input_mode, "energy", (32, 16), 1, (128, 64), {**common, "lr": 1e-2, "weight_decay": 1e-2}),
    }


def grid_summary(target: str, grid: str = "paper", input_mode: str = "raw") -> dict[str, Any]:
    """Each dimension's values and the product, for ``describe()``."""
    dims = grid_dimensions(target, grid)
    sizes: Mapping[str, int] = {k: len(v) for k, v in dims.items()}
    return {
        "dimensions": {k: [list(x) if isinstance(x, tuple) else x for x in v] for k, v in dims.items()},
        "size": " x ".join(str(n) for n in sizes.values()) + f" = {prod(sizes.values())}",
        "candidates": prod(sizes.values()),
        "note": (
            "the paper's 6,912 (section 3.10); its text lists 5 batch sizes, but 6,912 = 2^8 x 3^3, so 16 is "
            "left out; the 2nd pooling (3x3 for Models 1-2, 1x1 for Models 3-4) is a dimension"
            if grid == "paper"
            else "section 3.10's lists as written (5 batch sizes): not the paper's 6,912"
        ),
        "fixed": {k: list(v) if isinstance(v, tuple) else v for k, v in _fixed(input_mode).items()},
    }


def describe(params: dict[str, Any]) -> str:
    """A candidate as a physicist reads it: ``conv32x64-k3-pool3-fc9-relu-esum-adamw-lr1e-3-wd1e-1-bs32``
    (filters, kernel, second pooling, hidden layers, activation, added feature, optimiser)."""
    from robustcli.task import describe_params

    known = {"filters", "kernel", "pool", "hidden", "activation", "features", "input", "optimizer", "lr", "weight_decay",
             "batch_size", "features_at"}  # fmt: skip
    if not known - {"input", "features_at"} <= set(params):
        return describe_params(params)  # not a grid point of this plugin: the generic description
    short = {k: describe_params({k: params[k]}) for k in ("lr", "weight_decay", "batch_size")}
    parts = [
        "conv" + "x".join(str(f) for f in params["filters"]),
        f"k{params['kernel']}",
        f"pool{params['pool']}",
        "fc" + "x".join(str(h) for h in params["hidden"]),
        str(params["activation"]),
    ]
    if params["features"] != "none":
        parts.append(str(params["features"]) + (f"@{params['features_at']}" if "features_at" in params else ""))
    if params.get("input", "raw") != "raw":
        parts.append(str(params["input"]))
    parts += [str(params["optimizer"]), short["lr"], short["weight_decay"], short["batch_size"]]
    extra = {k: v for k, v in params.items() if k not in known}
    return "-".join(parts + ([describe_params(extra)] if extra else []))
