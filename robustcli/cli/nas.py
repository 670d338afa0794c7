"""`robust nas`: an Optuna search (one training per trial), then its best trials assessed over
fresh instances and set beside a candidate of yours. The work is in :mod:`robustcli.analyses.nas`."""

from __future__ import annotations

import math
from typing import Annotated, Any

import typer

from robustcli.cli._common import (
    TaskNameOption,
    cli_progress,
    console,
    handle_errors,
    print_json,
    settings_from_options,
    with_training_options,
)


@handle_errors
@with_training_options
def nas(
    task: TaskNameOption = None,
    trials: Annotated[int | None, typer.Option("--trials", help="Trials of the search, one training each (default 20).", show_default=False)] = None,
    top: Annotated[int | None, typer.Option("--top", help="Best distinct trials to assess (default 3).", show_default=False)] = None,
    instances: Annotated[
        int | None, typer.Option("--instances", "-n", help="Fresh instances per assessed candidate (default 5).", show_default=False)
    ] = None,
    against: Annotated[
        str | None,
        typer.Option("--against", help="Candidate to set beside the picks: a name or id (e.g. model2), or 'selected' "
                     "(the survivor of the study's last finished `robust select`).", show_default=False),
    ] = None,
    sampler: Annotated[
        str | None, typer.Option("--sampler", metavar="tpe|random", help="Optuna sampler (default tpe).", show_default=False)
    ] = None,
    options: Any = None,  # the training options of `robust assess` (with_training_options)
) -> None:
    """Search the task's NAS space with Optuna (TPE by default, seeded by --seed), one training
    per trial as a NAS does; then assess the --top distinct trials with --instances fresh
    instances each and set them beside --against, box plot beside box plot: is the best single
    run the robust choice? Trials and instances already in MLflow are reused: an identical second
    run trains nothing, and more --trials continue the search.

    The calorimeter tasks search the paper's NAS space (its appendix: two convolutions of 16, 32
    or 64 filters, 1-3 dense layers, Adam/AdamW/RMSprop, its rates, weight decays and batch
    sizes); another task searches its grid, one categorical per dimension, or its own nas_space.

    Example: robust nas --task calo-energy -o dataset=B --trials 120 --top 2 --instances 50 --against model2

    Example (seconds): robust nas --task synthetic --trials 6 --top 2 --instances 3 --min-epochs 10 --max-epochs 30
    """
    from robustcli.errors import InputError

    for name, value in (("--trials", trials), ("--top", top), ("--instances", instances)):
        if value is not None and value <= 0:
            raise InputError(f"{name} must be a positive count, got {value}")
    settings, tracking_uri = settings_from_options(
        options, task=task, instances=instances, trials=trials, top=top, against=against, sampler=sampler
    )
    from robustcli.api import Study

    study = Study.from_settings(settings, tracking_uri, progress=cli_progress(options["json_output"]))
    outcome = study.nas()
    if options["json_output"]:
        print_json(outcome)
    else:
        _render(outcome.as_dict())


def _render(report: dict[str, Any]) -> None:
    from rich.table import Table

    def fmt(x: Any) -> str:
        return f"{x:.4g}" if isinstance(x, float) and math.isfinite(x) else "-"

    console.print(
        f"{report['task']}: {report['trials']} trials ({report['sampler']}, seed {report['sampler_seed']}; "
        f"{report['trained_trials']} trained now, {report['failed_trials']} failed, "
        f"{report['distinct_candidates']} distinct candidates)"
    )
    from rich import box

    table = Table(title=f"The best trials over {report['instances']} fresh instances each (train size {report['train_size']})",
                  box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)  # fmt: skip
    table.add_column("candidate", overflow="fold", min_width=13)  # a long description wraps; numbers never do
    for col in ("trial", "trial loss", "mean", "std", "median", "Q90-Q10", "fail"):
        table.add_column(col, justify="right", no_wrap=col != "trial loss", min_width=7 if col == "trial loss" else None)
    rows = report["top"] + ([report["against"]] if report["against"] and report["against"]["role"] == "against" else [])
    for r in rows:
        s = r["statistics"]
        table.add_row(
            f"{r['name']} ({r['candidate']})" + (" [against]" if r["role"] == "against" else ""),
            "-" if r["trial"] is None else str(r["trial"]),
            fmt(r["trial_loss"]),
            fmt(r["mean"]),
            fmt(r["std"]),
            fmt(r["median"]),
            fmt(s["q90_q10"]["value"]),
            str(r["failed"]),
        )
    console.print(table)
    console.print(report["verdict"])
    console.print(
        f"{report['trained_instances']} instances trained now; box plots (nas.png) and the table (nas.json) in MLflow: "
        f"{report['tracking_uri']} (experiment {report['study']!r}, run {report['run_id']})"
    )
