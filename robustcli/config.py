"""Every setting as a pydantic model, and study files in TOML.

A study file uses the same names as the command-line options (dashes or underscores)::

    task = "calo-energy"
    study = "energy-2k"
    seed = 0
    instances = 5
    train_size = 2000

    [early_stopping]
    min_epochs = 100
    window = 30
    threshold = 0.10
    mode = "flatten"        # or "spike"
    max_epochs = 500

    [task_options]
    dataset = "A"

    [selection]
    criterion = ["mean"]
    rule = "paper"

The fields of ``[early_stopping]``, ``[selection]``, ``[nas]`` and ``[sample_size]`` may also stand
at the top level, under their command-line names (``max_epochs = 60``, ``stop_mode = "spike"``,
``rule = "race"``, ``sizes = "100:32000:45"``).
Options given on the command line override the file.

This module is the settings' leaf: the texts a setting takes are read in :mod:`robustcli.parsing`
and the command-line spelling of a field is in :mod:`robustcli.option_names`; neither imports a
study, a rule or numpy at import.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from robustcli.errors import InputError
from robustcli.option_names import FIELD_OF_OPTION, FILE_ONLY, option_of
from robustcli.parsing import parse_delta, parse_pairs, parse_sizes
from robustcli.wording import is_cli, opt

__all__ = [
    "EarlyStoppingSettings",
    "EngineName",
    "NasSettings",
    "SampleSizeSettings",
    "SelectionSettings",
    "StudySettings",
    "TrainingSettings",
    "load_settings",
    "parse_pairs",
    "with_overrides",
]


#: the largest count accepted for threads, workers and stack sizes (beyond it, a typo)
_MOST = 4096
#: the most instances of one candidate (--instances, --warmup, --max-steps, --final-instances) and
#: trials of a search: beyond it, a typo (the paper trains 50), and a loop that would never end
MOST_INSTANCES = 100_000
#: the most trainings of a whole selection (--budget) and candidates drawn (--sample)
MOST_TRAININGS = 10_000_000
#: the most examples in a training or test sample; each is also checked against the task's data
MOST_EXAMPLES = 1_000_000_000
#: the most epochs of one instance
MOST_EPOCHS = 1_000_000
#: seeds are stored as 64-bit integers; negative ones are refused by numpy's generators
MOST_SEED = 2**63 - 1
#: the longest study (MLflow experiment) name: MLflow's own limit
MOST_STUDY_NAME = 500


# the setting types of positive counts, each bounded by its MOST_ above (InstanceCount also
# bounds steps and trials, which grow with instances)
ExampleCount = Annotated[int, Field(gt=0, le=MOST_EXAMPLES)]
InstanceCount = Annotated[int, Field(gt=0, le=MOST_INSTANCES)]
TrainingCount = Annotated[int, Field(gt=0, le=MOST_TRAININGS)]
#: how a candidate's instances train: stacked (together, one vectorised model) or plain (one at a time)
EngineName = Literal["stacked", "plain"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EarlyStoppingSettings(_Strict):
    """Early stopping after the paper's section 3.7.

    The monitored loss is the per-epoch loss on the scoring set (``monitor = "test"``, as the
    paper's loss-versus-epoch figures show) or the epoch's mean training objective (``"train"``).

    ``mode = "flatten"`` (reading a, default): after ``min_epochs``, stop once
    max <= (1 + threshold) * min over the last ``window`` epochs: the loss has flattened.
    ``mode = "spike"`` (reading b): after ``min_epochs``, stop as soon as max > (1 + threshold) * min
    over the window (an instability detector); ``max_epochs`` ends calm runs.
    """

    min_epochs: int = Field(100, ge=0, le=MOST_EPOCHS)
    window: int = Field(30, ge=2, le=MOST_EPOCHS)
    threshold: float = Field(0.10, gt=0, allow_inf_nan=False)
    mode: Literal["flatten", "spike"] = "flatten"
    max_epochs: int = Field(500, gt=0, le=MOST_EPOCHS)
    monitor: Literal["test", "train"] = "test"

    @model_validator(mode="after")
    def _cap_after_min(self) -> EarlyStoppingSettings:
        if self.max_epochs < self.min_epochs:
            raise ValueError(
                f"{opt('max-epochs', self.max_epochs)} is below {opt('min-epochs', self.min_epochs)} (the paper's early "
                f"stopping trains at least {self.min_epochs} epochs when none is given): pass "
                f"{opt('min-epochs', self.max_epochs)} or lower with it, or {opt('max-epochs', self.min_epochs)} or more"
            )
        return self


class TrainingSettings(_Strict):
    """Everything that decides an instance's result besides the candidate and its seeds."""

    train_size: ExampleCount | None = None
    #: a number, "all" (the whole test set) or "train" (a subsample as large as the training
    #: sample, the paper's convention); None: the task's default
    test_size: ExampleCount | Literal["all", "train"] | None = None
    sampling: Literal["bootstrap", "without-replacement"] = "bootstrap"
    early_stopping: EarlyStoppingSettings = EarlyStoppingSettings()
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    #: stacked: instances of a candidate train together as one vectorised model (default);
    #: plain: one at a time. Results agree to floating-point noise, so it is not in the fingerprint.
    engine: EngineName = "stacked"
    max_stack: int = Field(64, gt=0, le=_MOST, strict=True)
    #: torch threads on the CPU: of this process (in process), of each worker (local pool, Ray);
    #: None: the executor's default (see robustcli.execution.auto). Given without an executor:
    #: this process with that many threads
    threads: int | None = Field(None, gt=0, le=_MOST, strict=True)
    #: where instances run: auto (one thread per process; the local pool when a run has independent
    #: work, else this process), this process, a local pool of worker processes, or a Ray cluster
    executor: Literal["auto", "inprocess", "local", "ray"] = "auto"
    #: worker processes of the local pool (``executor = "local"`` or ``"auto"``)
    workers: int | None = Field(None, gt=0, le=_MOST, strict=True)
    #: the Ray cluster (``executor = "ray"``); None starts a local Ray
    ray_address: str | None = None

    def fingerprint(
        self, task: str, task_options: dict[str, Any], seed: int, mix_candidate_seed: bool, vary: str = "both",
        task_code: str | None = None,
    ) -> str:
        """A short hash of what makes two instances comparable. Device is left out on purpose:
        a GPU run and a CPU run of the same instance are the same experiment."""
        payload: dict[str, Any] = {
            "task": task,
            "task_options": task_options,
            "seed": seed,
            "mix_candidate_seed": mix_candidate_seed,
            **self.model_dump(exclude={"device", "engine", "max_stack", "threads", "executor", "workers", "ray_address"}),
        }
        if vary != "both":  # absent for the default: a study that varies both seeds hashes as one without the field
            payload["vary"] = vary
        if task_code is not None:  # a task given as code (robustcli.task_code); installed tasks have none
            payload["task_code"] = task_code
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


class SelectionSettings(_Strict):
    """Algorithm 1's knobs (see ``robust select --help``)."""

    criterion: list[str] = ["mean"]
    combine: Literal["lexicographic", "pareto"] = "lexicographic"
    rule: str = "paper"
    warmup: InstanceCount = 1
    fraction: float = Field(0.5, gt=0, lt=1)
    confidence: float = Field(0.95, gt=0, lt=1)
    #: the race's indifference zone: "1%" (of the leader's mean loss) or a loss difference (0.005)
    delta: float | str = "1%"
    baseline_margin: float = Field(0.20, ge=0, allow_inf_nan=False)
    budget: TrainingCount | None = None
    #: after the selection, train each survivor up to this many instances for its summary
    final_instances: int = Field(0, ge=0, le=MOST_INSTANCES)
    max_steps: InstanceCount | None = None
    candidates: list[str] | None = None
    #: only candidates whose parameters match every KEY=VALUE
    where: list[str] | None = None
    sample: TrainingCount | None = None

    @field_validator("criterion", "candidates", "where", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        """A study file may write one value as the command line does: ``criterion = "mean,std"``."""
        if isinstance(value, str):
            return [value] if "=" in value else [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("delta", mode="before")
    @classmethod
    def _delta(cls, value: Any) -> float | str:
        try:
            if isinstance(value, bool):
                raise InputError(f"--delta {value!r}: expected a loss difference (0.005) or a share of the leader's mean (1%)")
            amount, relative = parse_delta(value)
        except InputError as exc:  # the message names --delta: shown as it is
            raise ValueError(str(exc)) from None
        return f"{amount * 100:g}%" if relative else amount


class NasSettings(_Strict):
    """`robust nas`: an Optuna search of ``trials`` trainings (one per trial), then its ``top``
    candidates assessed with the study's ``instances`` and set against ``against`` (a candidate's
    name or id, or ``selected``: the survivor of the study's last finished selection)."""

    trials: InstanceCount = 20
    top: InstanceCount = 3
    sampler: Literal["tpe", "random"] = "tpe"
    against: str | None = None

    @field_validator("against")
    @classmethod
    def _against_names_one(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():  # else the search would run with no comparison, silently
            raise ValueError(f"--against {value!r}: give a candidate's name or id, or 'selected'")
        return value

    @model_validator(mode="after")
    def _top_within_trials(self) -> NasSettings:
        if self.top > self.trials:
            raise ValueError(f"{opt('top', self.top)} exceeds {opt('trials', self.trials)}: the best trials are taken from those run")
        return self


class SampleSizeSettings(_Strict):
    """`robust study sample-size`: the training-sample sizes, a list (``[50, 100, 200]`` or
    ``"50,100,200"``) or a log-spaced range ``"START:STOP:COUNT"`` (``"100:32000:45"``), held as
    the sorted distinct sizes; ``--sizes`` on the command line overrides them."""

    sizes: list[int] | None = None

    @field_validator("sizes", mode="before")
    @classmethod
    def _sizes(cls, value: Any) -> Any:
        """Read as ``--sizes`` reads its text: one parser, one set of error lines."""
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            value = ",".join(str(v) for v in value)
        if not isinstance(value, str):
            raise ValueError(f"sizes {value!r}: expected a list of whole numbers ([50, 100, 200]) or a text "
                             f"like \"50,100,200\" or \"100:32000:45\" (START:STOP:COUNT, log-spaced)")  # fmt: skip
        try:
            return parse_sizes(value)
        except InputError as exc:  # the message names --sizes: shown as it is
            raise ValueError(str(exc)) from None


class StudySettings(_Strict):
    """A whole study: what a study file holds."""

    task: str | None = None
    study: str | None = None
    seed: int = Field(0, ge=0, le=MOST_SEED)
    mix_candidate_seed: bool = False
    #: which seed differs between instances: both (default), init or data (see training.seeds.study_seeds)
    vary: Literal["both", "init", "data"] = "both"
    instances: InstanceCount = 5
    candidate: str | None = None
    tracking_uri: str | None = None
    task_options: dict[str, Any] = {}
    training: TrainingSettings = TrainingSettings()
    selection: SelectionSettings = SelectionSettings()
    nas: NasSettings = NasSettings()
    sample_size: SampleSizeSettings = SampleSizeSettings()
    #: the hash of a task's code where the API was given the task as a class or object
    #: (robustcli.task_code); set by the session, never by a study file
    task_code: str | None = None

    @field_validator("study")
    @classmethod
    def _study_fits_mlflow(cls, value: str | None) -> str | None:
        """A study is an MLflow experiment: a name MLflow refuses is bad input, told before any training."""
        if value is not None and len(value) > MOST_STUDY_NAME:
            raise ValueError(f"--study: a name of {len(value):,} characters is longer than the {MOST_STUDY_NAME} "
                             f"MLflow takes for an experiment name")
        return value

    @property
    def study_name(self) -> str:
        return self.study or str(self.task)

    def fingerprint(self) -> str:
        return self.training.fingerprint(str(self.task), self.task_options, self.seed, self.mix_candidate_seed, self.vary,
                                         self.task_code)  # fmt: skip

    def data_fingerprint(self) -> str:
        """What decides the training samples and the test set only (baselines are keyed by it):
        a baseline fitted on the same samples serves studies with other early stopping."""
        payload = {
            "task": self.task,
            "task_options": self.task_options,
            "seed": self.seed,
            **self.training.model_dump(include={"train_size", "test_size", "sampling"}),
        }
        if self.task_code is not None:  # its load_data may have changed with its code
            payload["task_code"] = self.task_code
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


# Top-level keys of a study file that live inside `training` in the model.
_TRAINING_KEYS = {
    "train_size", "test_size", "sampling", "early_stopping", "device", "engine", "max_stack", "threads",
    "executor", "workers", "ray_address",
}


#: the sections whose fields may stand at the top level of a study file
_SECTIONS = {
    "early_stopping": EarlyStoppingSettings,
    "selection": SelectionSettings,
    "nas": NasSettings,
    "sample_size": SampleSizeSettings,
}


def _normalise(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        key = key.replace("-", "_")
        key = FIELD_OF_OPTION.get(key, key)  # the command line's name for it
        out[key] = _normalise(value) if isinstance(value, dict) and key != "task_options" else value
    return out


def _gather_sections(flat: dict[str, Any], where: str) -> dict[str, Any]:
    """Top-level fields of the sections (``[early_stopping]``, ``[selection]``...) moved into their section; one
    given both ways is refused."""
    data = dict(flat)
    for section, model in _SECTIONS.items():
        inner = data.get(section, {})
        if not isinstance(inner, dict):
            continue  # not a table: the model says so
        moved = {key: data.pop(key) for key in list(data) if key in model.model_fields}
        twice = sorted(set(moved) & set(inner))
        if twice:
            raise InputError(f"{_source(where)}{twice[0]!r} is set twice: at the top level and in [{section}]")
        if moved:
            data[section] = {**inner, **moved}
    return data


def _nest(flat: dict[str, Any], where: str = "command line") -> dict[str, Any]:
    data = _gather_sections(flat, where)
    training = dict(data.pop("training", {}) or {})
    for key in list(data):
        if key in _TRAINING_KEYS:
            training[key] = data.pop(key)
    if training:
        data["training"] = training
    return data


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _source(where: str) -> str:
    """How an error line starts: nothing for the command line, ``FILE: `` for a study file."""
    return "" if where == "command line" else f"{where}: "


def _describe_validation_error(exc: ValidationError, where: str) -> str:
    """One line: the file (if any), the field as a file spells it and its option, the value, why."""
    err = exc.errors()[0]
    loc: list[str] = []
    for part in err["loc"]:
        if isinstance(part, int):
            continue
        if not str(part).isidentifier():  # a branch of a union ('constrained-int'), not a field
            break
        loc.append(str(part))
    prefix = _source(where)
    if err["type"] == "value_error":  # our own checks across fields: their message names the options
        return prefix + err["msg"].removeprefix("Value error, ")
    path = ".".join(loc).removeprefix("training.") or "(top level)"  # a file may set them at the top
    option = ""
    if loc and loc[-1] not in ("training", *_SECTIONS, *FILE_ONLY):
        option = option_of(loc[-1])
    subject = option if where == "command line" and option else (f"{path!r} ({option})" if option else repr(path))
    if err["type"] == "extra_forbidden":
        return prefix + _unknown_field(loc)
    value = err.get("input")
    if where == "command line" and option and not is_cli():  # the API's keywords: instances=0: ...
        return f"{opt(option, value)}: {err['msg']}"
    shown = f" {value!r}" if not isinstance(value, dict) else ""
    return f"{prefix}invalid value{shown} for {subject}: {err['msg']}"


def _field_places() -> dict[str, list[str]]:
    """Where each field of a study file goes, as an error line lists them."""
    top = [k for k in StudySettings.model_fields if k not in ("training", "task_options", "task_code", *_SECTIONS)]
    top += [k for k in TrainingSettings.model_fields if k != "early_stopping"]
    places = {"top level": top}
    for section, model in _SECTIONS.items():
        places[f"[{section}] or top level"] = list(model.model_fields)
    return places


def _unknown_field(loc: list[str]) -> str:
    """'unknown field ...', with where it belongs (a known field in the wrong table) or the
    closest field, and every field with its table."""
    import difflib

    name = loc[-1] if loc else ""
    table = next((f"in [{part}]" for part in reversed(loc[:-1]) if part in _SECTIONS), "at the top level")
    places = _field_places()
    place_of = {f: place for place, fields in places.items() for f in fields}
    place_of.update({option: place_of[field] for option, field in FIELD_OF_OPTION.items()})
    if name in place_of:
        hint = f"; it belongs in {place_of[name]}"
    else:
        close = difflib.get_close_matches(name, list(place_of), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r} ({place_of[close[0]]})?" if close else ""
    alias = {field: option for option, field in FIELD_OF_OPTION.items()}
    listing = "; ".join(
        f"{place}: {', '.join(f'{f} ({alias[f]})' if f in alias else f for f in fields)}" for place, fields in places.items()
    )
    return f"unknown field {name!r} {table}{hint} (fields: {listing}; [task_options]: the task's own)"


def load_settings(config: Path | None = None, **overrides: Any) -> StudySettings:
    """Settings from a study file (optional) with command-line ``overrides`` on top.

    ``overrides`` use the flat command-line names (``train_size``, ``min_epochs``...); ``None``
    means "not given". Early-stopping options may be passed flat too.
    """
    file_data: dict[str, Any] = {}
    where = "command line"
    if config is not None:
        where = str(config)
        try:
            file_data = _normalise(tomllib.loads(Path(config).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise InputError(f"study file not found: {config}") from None
        except IsADirectoryError:
            raise InputError(f"{config}: a folder, not a study file (.toml)") from None
        except UnicodeDecodeError as exc:
            raise InputError(f"{config}: not a text file in UTF-8 (byte {exc.start}): a study file is TOML") from None
        except OSError as exc:
            raise InputError(f"{config}: cannot read it: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"{config}: not valid TOML: {exc}") from None
        if "task_code" in file_data:  # the session's own field, from the task's code
            raise InputError(_source(where) + _unknown_field(["task_code"]))
        try:
            file_data = _nest(file_data, where)
            StudySettings.model_validate(file_data)
        except ValidationError as exc:
            raise InputError(_describe_validation_error(exc, where)) from None
    cli = _nest({key: value for key, value in overrides.items() if value is not None})
    data = _merge(file_data, cli)
    where = where if config is None else f"{where} with the command line"
    try:
        settings = StudySettings.model_validate(data)
    except ValidationError as exc:
        raise InputError(_describe_validation_error(exc, where)) from None
    _check_executor_options(settings.training, where)
    return settings


def _check_executor_options(t: TrainingSettings, where: str) -> None:
    """Options of another executor would be silently ignored: refuse them. Checked on what the
    file and the command line give together (settings stored with runs are not checked)."""
    prefix = _source(where)
    if t.workers is not None and t.executor not in ("local", "auto"):
        raise InputError(f"{prefix}{opt('workers')} applies to {opt('executor', 'local')} (or auto), not {t.executor}")
    if t.ray_address is not None and t.executor != "ray":
        raise InputError(f"{prefix}{opt('address')} applies to {opt('executor', 'ray')}, not {t.executor}")


def with_overrides(settings: StudySettings, where: str = "argument", **overrides: Any) -> StudySettings:
    """``settings`` with flat ``overrides`` on top (the names :func:`load_settings` takes; ``None``
    means "not given"), validated: a bad value is one :class:`InputError` naming it."""
    given = _nest({key: value for key, value in overrides.items() if value is not None})
    if not given:
        return settings
    data = _merge(settings.model_dump(exclude_unset=True), given)
    try:
        out = StudySettings.model_validate(data)
    except ValidationError as exc:
        raise InputError(_describe_validation_error(exc, "command line")) from None
    _check_executor_options(out.training, "command line")
    return out
