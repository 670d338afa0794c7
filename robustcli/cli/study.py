"""`robust study`: runs one of the paper's analyses of one or a few candidates (training-sample
size, where the spread comes from); the command keeps the paper's word, "study". The logic is in :mod:`robustcli.analyses`, reached through :mod:`robustcli.api`;
this module parses and renders."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer

from robustcli.errors import InputError

from robustcli.cli._common import (
    TaskNameOption,
    console,
    err_console,
    cli_progress,
    handle_errors,
    print_json,
    settings_from_options,
    with_training_options,
)

app = typer.Typer(
    help="Runs one of the paper's analyses on a study's candidates: loss against training-sample size "
    "(Figures 4-6) or where the spread comes from (initialisation or training sample, Figure 7). "
    "Resumable: instances already in MLflow are reused.\n\nExample: robust study sample-size --task synthetic --candidate small --sizes 50,100,200 -n 5",
    no_args_is_help=True,
)

InstancesOption = Annotated[int | None, typer.Option("--instances", "-n", help="Instances per set (default 5).", show_default=False)]
OutOption = Annotated[
    Path | None, typer.Option("--out", help="Also write the figure to this PNG (it is logged to MLflow either way).", show_default=False)
]


def _study(options: dict[str, Any], instances: int | None, **given: Any) -> Any:
    """The API's study from the command line (and study file): ``given`` overrides ``options``."""
    from robustcli.api import Study

    settings, tracking_uri = settings_from_options(options, instances=instances, **given)
    return Study.from_settings(settings, tracking_uri, progress=cli_progress(options["json_output"]))


def _show(result: Any, options: dict[str, Any], out: Path | None, render: Any) -> None:
    """Print the analysis's JSON or ``render`` it."""
    if options["json_output"]:
        print_json(result)
    else:
        render(result, out)


def _cell(est: Any) -> str:
    """A statistic over its interval, on two lines (tables stay within 80 columns)."""
    if not math.isfinite(est.value):
        return "-"
    interval = "" if not math.isfinite(est.low) else f"\n[{est.low:.3g}, {est.high:.3g}]"
    return f"{est.value:.4g}{interval}"


@app.command("sample-size", short_help="Loss against training-sample size (the paper's Figures 4-6).")
@handle_errors
@with_training_options
def sample_size(
    task: TaskNameOption = None,
    candidate: Annotated[
        list[str] | None,
        typer.Option("--candidate", "-C", help="Candidate id or name (repeatable; see `robust tasks show TASK`).", show_default=False),
    ] = None,
    sizes: Annotated[
        str | None,
        typer.Option("--sizes", help="Training-sample sizes: a list (50,100,200) or a log-spaced range START:STOP:COUNT "
                     "(100:32000:45, the paper's). Each at most the task's training pool. Overrides the study file's sizes.",
                     show_default=False),
    ] = None,
    instances: InstancesOption = None,
    baselines: Annotated[bool, typer.Option("--baselines/--no-baselines", help="Fit the task's baselines on the same samples.")] = True,
    test_size: Annotated[
        str | None,
        typer.Option("--test-size", help="Test sample per instance: 'train' (default: as many as the training sample, "
                     "drawn from the test set, the paper's), 'task' (the task's default), 'all' or a number.", show_default=False),
    ] = None,
    out: OutOption = None,
    options: Any = None,
) -> None:
    """Train candidates (and the task's baselines) at each training-sample size, N instances each;
    print a table per size (mean, median, std, IQR, Q90-Q10 with bootstrap 95% intervals) and where
    each model saturates; log the analysis (table and box-plot figure) to MLflow.

    Example: robust study sample-size --task calo-energy --candidate model1 --candidate model2 --sizes 100:32000:45 -n 50

    Example: robust study sample-size --task synthetic -C small -C wide --sizes 50,100,200,400 -n 5 --out sizes.png
    """
    from robustcli.api.conventions import sample_size_test_size

    test = sample_size_test_size(test_size)
    study = _study(options, instances, task=task, test_size=test, sizes=sizes)  # bad sizes: refused here
    names = list(candidate or []) or ([study.settings.candidate] if study.settings.candidate else [])
    if options["train_size"] is not None and not options["json_output"]:
        err_console.print(f"note: --train-size {options['train_size']} is replaced by each size of --sizes", highlight=False)
    _show(study.sample_size(names, baselines=baselines, out=out), options, out, _render_sample_size)


def _render_sample_size(result: Any, out: Path | None) -> None:
    from rich.table import Table

    from robustcli.api.conventions import ANALYSIS_STATISTICS

    from rich import box

    heads = {"mean": "mean", "median": "median", "std": "std", "iqr": "IQR", "q90_q10": "Q90-Q10"}
    for size in result.sizes:
        table = Table(title=f"training sample of {size:,}: {result.loss_name} over {result.instances} instances "
                      f"[95% bootstrap interval]", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("model", min_width=14, overflow="fold")
        for key in ANALYSIS_STATISTICS:
            table.add_column(heads[key], justify="right")
        for row in (r for r in result.rows if r.size == size):
            label = row.model + (" (baseline)" if row.kind == "baseline" else "")
            label += f" ({row.failed} of {row.n} failed)" if row.failed else ""
            table.add_row(label, *(_cell(row.statistics[k]) for k in ANALYSIS_STATISTICS))
        console.print(table)
    console.print(f"test sample: {result.test_sample}")
    for line in result.saturation_lines():
        console.print(line, highlight=False)
    console.print(f"{result.trained_now} instances trained now, {result.fitted_now} baseline fits; analysis run "
                  f"{result.run_id} in {result.tracking_uri} (experiment {result.study!r})" + (f"; figure {out}" if out else ""))


@app.command("variance", short_help="Split a candidate's spread: initialisation or sample (Fig. 7).")
@handle_errors
@with_training_options
def variance(
    task: TaskNameOption = None,
    candidate: Annotated[
        list[str] | None, typer.Option("--candidate", "-C", help="Candidate id or name (see `robust tasks show TASK`).", show_default=False)
    ] = None,
    instances: InstancesOption = None,
    out: OutOption = None,
    options: Any = None,
) -> None:
    """Split one candidate's spread into its sources: N instances with both seeds varying, N with
    only the initialisation varying (one training sample), N with only the training sample varying
    (one initialisation). Prints the three standard deviations with bootstrap 95% intervals, the
    shares, and a line when they do not add up. Reuses what `robust assess --vary init|data` logged.

    Example: robust study variance --task calo-energy --candidate model2 --instances 50 --train-size 32000
    """
    if candidate and len(candidate) > 1:  # a list, so that a second -C is refused rather than silently winning
        raise InputError(f"--candidate given {len(candidate)} times ({', '.join(candidate)}): the variance analysis "
                         f"splits one candidate's spread; run it once per candidate")
    study = _study(options, instances, task=task)
    _show(study.variance(candidate[0] if candidate else None, out=out), options, out, _render_variance)


def _render_variance(result: Any, out: Path | None) -> None:
    from rich.table import Table

    from robustcli.api.conventions import VARIANCE_SETS

    d = result.decomposition
    table = Table(title=f"{result.candidate_name}: where the spread of {result.loss_name} comes from "
                  f"(training sample of {result.train_size:,}; 95% bootstrap intervals)", title_justify="left")
    for col in ("set", "n", "mean", "std"):
        table.add_column(col, justify="left" if col == "set" else "right", no_wrap=col != "set")
    for key, words in VARIANCE_SETS.items():
        n = f"{result.instances}" + (f" ({result.failed[key]} failed)" if result.failed[key] else "")
        table.add_row(words, n, _cell(result.statistics[key]["mean"]), _cell(d.std[key]))
    console.print(table)
    shares = ", ".join(f"{name} {_share(d.shares[key])}" for key, name in (("init", "initialisation"), ("data", "training sample")))
    console.print(f"shares of var(init) + var(data): {shares}", highlight=False)
    console.print(d.note or f"var(init) + var(data) = {_share(d.ratio)} of var(both): they add up", highlight=False)
    console.print(f"{result.trained_now} instances trained now; analysis run {result.run_id} in {result.tracking_uri} "
                  f"(experiment {result.study!r})" + (f"; figure {out}" if out else ""))


def _share(est: Any) -> str:
    if not math.isfinite(est.value):
        return "-"
    interval = "" if not math.isfinite(est.low) else f" [{100 * est.low:.0f}%, {100 * est.high:.0f}%]"
    return f"{100 * est.value:.0f}%{interval}"
