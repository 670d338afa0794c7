"""What every command shares: consoles, the error handler, common options.

Kept free of torch and MLflow so that `robust --help` starts fast.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from robustcli.errors import RobustError, first_line

try:  # click's usage errors: Typer's own classes since it vendors click (0.2x), click's before
    from typer.exceptions import TyperException as _UsageError
except ImportError:  # pragma: no cover - an older Typer on click
    from click.exceptions import ClickException as _UsageError  # type: ignore[assignment,no-redef]
from robustcli.reporting.strict_json import finite

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn a :class:`RobustError` into one line on stderr and its exit code (2 for bad input); a
    store gone away into one line (exit 1); anything else (a bug, a broken plugin) into one line and
    a log file with its traceback (:mod:`robustcli.cli._guard`)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from robustcli.wording import cli_wording

        try:
            with cli_wording():  # the library's error lines name --flags for the command's user
                return fn(*args, **kwargs)
        except RobustError as exc:
            # plain print, not rich: the message must stay one unwrapped line
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, _UsageError):  # the command's own exit, click's usage errors
            raise
        except Exception as exc:
            from robustcli.cli._guard import output_failed, report_unexpected, stdout_error

            if isinstance(exc, OSError) and stdout_error(exc):
                raise typer.Exit(output_failed(exc)) from None
            if not _from_the_store(exc):
                raise typer.Exit(report_unexpected(exc)) from None  # a bug: one line, its traceback in a log
            # a tracking server gone away mid-study: what is logged stays, re-running resumes
            print(f"error: the MLflow tracking store failed ({type(exc).__name__}: {first_line(exc)}); "
                  f"re-run the command once it is back: it resumes", file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


_STORE_PACKAGES = {"mlflow", "requests", "urllib3", "sqlalchemy"}


def _from_the_store(exc: BaseException) -> bool:
    """Whether an exception comes from talking to the tracking store (MLflow, HTTP, the database)."""
    return isinstance(exc, ConnectionError) or any(
        cls.__module__.split(".")[0] in _STORE_PACKAGES for cls in type(exc).__mro__
    )


def print_json(payload: Any) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else."""
    out = sys.stdout  # held here: a write that fails is known as stdout's (robustcli.cli._guard)
    out.write(json.dumps(finite(payload), indent=2, default=_json_default, allow_nan=False) + "\n")
    out.flush()


def _json_default(value: Any) -> Any:
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {value!r}")


# The options' types, each NAMEOption: the option, not the concept it sets (``EngineOption`` is
# ``--engine``; the engine itself is a setting of robustcli.config).
TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI. Default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db.",
        show_default=False,
    ),
]
ConfigFileOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Study file (TOML). Command-line options override it.", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


# -- options shared by the commands that train -------------------------------------------------
TaskNameOption = Annotated[str | None, typer.Option("--task", "-t", help="Task name (see `robust tasks`).", show_default=False)]
StudyNameOption = Annotated[
    str | None, typer.Option("--study", help="Study (= MLflow experiment) name. Default: the task name.", show_default=False)
]
SeedOption = Annotated[int | None, typer.Option("--seed", help="Study seed; instance seeds derive from it. Default 0.", show_default=False)]
TrainSizeOption = Annotated[
    int | None, typer.Option("--train-size", help="Training-sample size per instance. Default: the task's.", show_default=False)
]
TestSizeOption = Annotated[
    str | None,
    typer.Option(
        "--test-size",
        help="Test examples scored per instance: a number, 'all', or 'train' (as many as the training sample, "
        "the paper's convention). Default: the task's.",
        show_default=False,
    ),
]
SamplingOption = Annotated[
    str | None, typer.Option("--sampling", help="bootstrap (default) or without-replacement.", show_default=False)
]
DeviceOption = Annotated[str | None, typer.Option("--device", help="cpu (default), cuda or auto.", show_default=False)]
MinEpochsOption = Annotated[int | None, typer.Option("--min-epochs", help="Early stopping: train at least this many epochs (100).", show_default=False)]
WindowOption = Annotated[int | None, typer.Option("--window", help="Early stopping: window in epochs (30).", show_default=False)]
ThresholdOption = Annotated[float | None, typer.Option("--threshold", help="Early stopping: relative threshold (0.10).", show_default=False)]
StopModeOption = Annotated[
    str | None, typer.Option("--stop-mode", help="Early stopping reading: flatten (default) or spike.", show_default=False)
]
MaxEpochsOption = Annotated[int | None, typer.Option("--max-epochs", help="Epoch cap (500).", show_default=False)]
EngineOption = Annotated[
    str | None,
    typer.Option("--engine", help="stacked (default: a candidate's instances train together) or plain (one at a time).", show_default=False),
]
MaxStackOption = Annotated[int | None, typer.Option("--max-stack", help="Most instances in one stack (64).", show_default=False)]
ThreadsOption = Annotated[
    int | None,
    typer.Option(
        "--threads",
        help="torch CPU threads: alone, train in this process with that many; with --executor local or ray, per worker. "
        "Default: see --executor.",
        show_default=False,
    ),
]
ExecutorOption = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help="Where instances train: auto (default: one torch thread per process; independent work spread over a pool "
        "of processes, one per core), inprocess (this process, a thread per core), local (always the pool) or ray.",
        show_default=False,
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option("--workers", help="Processes of --executor local or auto (default: the cores this process may use).", show_default=False),
]
RayAddressOption = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster for --executor ray (e.g. auto, ray://head:10001). Default: a local Ray.", show_default=False),
]
TaskOptionsOption = Annotated[
    list[str] | None,
    typer.Option("--task-option", "-o", help="Task option KEY=VALUE (repeatable), e.g. -o dataset=B.", show_default=False),
]


def cli_progress(json_output: bool) -> Any:
    """The progress a command draws: rich bars on stderr, none (notes still printed) under --json."""
    from robustcli.reporting.progress import RichProgress

    return RichProgress(console=err_console, disable=json_output)


def parse_task_options(pairs: list[str] | None, option: str = "--task-option") -> dict[str, Any] | None:
    """``["dataset=B"]`` -> ``{"dataset": "B"}`` (:func:`robustcli.config.parse_pairs`, imported lazily:
    pydantic stays out of ``robust --help``)."""
    from robustcli.config import parse_pairs

    return parse_pairs(pairs, option)


def training_overrides(
    *,
    task: str | None = None,
    study: str | None = None,
    seed: int | None = None,
    train_size: int | None = None,
    test_size: str | None = None,
    sampling: str | None = None,
    device: str | None = None,
    min_epochs: int | None = None,
    window: int | None = None,
    threshold: float | None = None,
    stop_mode: str | None = None,
    max_epochs: int | None = None,
    task_options: list[str] | None = None,
    engine: str | None = None,
    max_stack: int | None = None,
    threads: int | None = None,
    executor: str | None = None,
    workers: int | None = None,
    address: str | None = None,
) -> dict[str, Any]:
    """The command-line values in the names `robustcli.config.load_settings` takes (None: not given)."""
    return {
        "task": task,
        "study": study,
        "seed": seed,
        "train_size": train_size,
        "test_size": int(test_size) if test_size is not None and test_size.isdigit() else test_size,
        "sampling": sampling,
        "device": device,
        "min_epochs": min_epochs,
        "window": window,
        "threshold": threshold,
        "mode": stop_mode,
        "max_epochs": max_epochs,
        "task_options": parse_task_options(task_options),
        "engine": engine,
        "max_stack": max_stack,
        "threads": threads,
        "executor": executor,
        "workers": workers,
        "ray_address": address,
    }


#: the training options every command that trains takes (`robust assess`, `select`, `baseline`, `study ...`, `nas`),
#: in the order --help lists them: name -> (annotation, default)
_TRAINING_OPTIONS: dict[str, tuple[Any, Any]] = {
    "train_size": (TrainSizeOption, None), "test_size": (TestSizeOption, None), "sampling": (SamplingOption, None),
    "seed": (SeedOption, None), "study": (StudyNameOption, None), "config": (ConfigFileOption, None),
    "tracking_uri": (TrackingUriOption, None), "device": (DeviceOption, None), "min_epochs": (MinEpochsOption, None),
    "window": (WindowOption, None), "threshold": (ThresholdOption, None), "stop_mode": (StopModeOption, None),
    "max_epochs": (MaxEpochsOption, None), "task_option": (TaskOptionsOption, None), "engine": (EngineOption, None),
    "max_stack": (MaxStackOption, None), "threads": (ThreadsOption, None), "executor": (ExecutorOption, None),
    "workers": (WorkersOption, None), "address": (RayAddressOption, None), "json_output": (JsonOption, False),
}


#: the options of a command that trains no network (`robust baseline`): the data's, the study's and the output's
DATA_OPTIONS = ("train_size", "test_size", "sampling", "seed", "study", "config", "tracking_uri", "task_option", "json_output")


def with_training_options(fn: Any = None, *, only: tuple[str, ...] | None = None) -> Any:
    """``fn(..., options)`` as a command that also takes the training options (:data:`_TRAINING_OPTIONS`,
    or those of them in ``only``) it does not declare itself, after its own; they reach it together, as
    the dict ``options``. The one way a command declares them: a command that words one otherwise
    (`robust select`'s ``--task``) declares it itself. ``@with_training_options`` or
    ``@with_training_options(only=DATA_OPTIONS)``."""
    if fn is None:
        return lambda f: with_training_options(f, only=only)
    own = inspect.signature(fn, eval_str=True)
    params = [p for p in own.parameters.values() if p.name != "options"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        for name, (annotation, default) in _TRAINING_OPTIONS.items()
        if name not in own.parameters and (only is None or name in only)
    ]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> Any:
        options = {p.name: kwargs.pop(p.name) for p in added}
        return fn(**kwargs, options=options)

    command.__signature__ = own.replace(parameters=[*params, *added])  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in (*params, *added)}
    return command


def settings_from_options(options: dict[str, Any], **given: Any) -> tuple[Any, str | None]:
    """The study settings (study file, then the command line) from :func:`with_training_options`'s
    ``options`` and the command's own values ``given`` (which override them; a ``config`` among them
    is the study file); and the tracking URI of ``options`` (None where the command declares its own)."""
    from robustcli.config import load_settings

    values = {**options}
    config, uri = values.pop("config", None), values.pop("tracking_uri", None)
    config = given.pop("config", config)
    values.pop("json_output", None)
    values["task_options"] = values.pop("task_option", None)
    shared = inspect.signature(training_overrides).parameters
    values.update({k: v for k, v in given.items() if k in shared})
    own = {k: v for k, v in given.items() if k not in shared}
    return load_settings(config, **own, **training_overrides(**values)), uri
