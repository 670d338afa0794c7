"""`robust assess`: train the missing instances of one candidate and show how robust it is."""

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
def assess(
    task: TaskNameOption = None,
    candidate: Annotated[
        str | None, typer.Option("--candidate", "-C", help="Candidate id or name (see `robust tasks show TASK`).", show_default=False)
    ] = None,
    instances: Annotated[int | None, typer.Option("--instances", "-n", help="Instances wanted (default 5).", show_default=False)] = None,
    vary: Annotated[
        str | None,
        typer.Option(
            "--vary", metavar="both|init|data",
            help="What differs between instances: both seeds (default), only the initialisation (every "
                 "instance on instance 0's training sample) or only the training sample (every instance from "
                 "instance 0's initialisation). Assess a candidate with init and with data, and `robust report` "
                 "splits its spread into the two sources.",
            show_default=False,
        ),
    ] = None,
    options: Any = None,  # the training options (with_training_options)
) -> None:
    """Train N instances of one candidate (only those not yet in MLflow) and print the statistics
    of their test losses with bootstrap 95% intervals.

    Example: robust assess --task calo-energy --candidate model2 --instances 5 --train-size 2000

    Example (variance decomposition): robust assess --task calo-energy --candidate model2 -n 10 --vary init
    """
    from robustcli.errors import InputError

    if instances is not None and instances <= 0:
        raise InputError(f"--instances must be a positive count, got {instances}")
    settings, tracking_uri = settings_from_options(options, task=task, candidate=candidate, instances=instances, vary=vary)
    json_output = options["json_output"]
    from robustcli.api import Study

    result = Study.from_settings(settings, tracking_uri, progress=cli_progress(json_output)).assess()
    if json_output:
        print_json(result)
    else:
        _render(result.as_dict())


def _render(report: dict[str, Any]) -> None:
    from rich.table import Table

    name = f"{report.get('candidate_name') or report['candidate_description']} ({report['candidate']})"
    table = Table(
        title=f"{report['task']} / {name}: {report['loss']['name']} over {report['instances']} instances "
        f"(train size {report['train_size']})",
    )
    table.add_column("statistic")
    table.add_column("value", justify="right")
    table.add_column("95% interval (bootstrap)", justify="right")
    for key, est in report["statistics"].items():
        interval = "-" if math.isnan(est["low"]) else f"[{est['low']:.5g}, {est['high']:.5g}]"
        table.add_row(key, f"{est['value']:.5g}", interval)
    console.print(table)
    reasons = ", ".join(f"{k} {v}" for k, v in report["stop_reasons"].items())
    console.print(
        f"{report['trained_now']} trained now, {report['failed']} failed, {report['spiked']} spiked after the minimum "
        f"epochs; stopped: {reasons}; mean {report['mean_epochs']:.0f} epochs, {report['mean_seconds']:.1f} s per instance"
    )
    if report["vary"] != "both":
        held = "training sample" if report["vary"] == "init" else "initialisation"
        console.print(f"only the {'initialisation' if report['vary'] == 'init' else 'training sample'} varies "
                      f"(every instance shares instance 0's {held}): `robust report` sets this spread against the others")  # fmt: skip
    console.print(f"runs in MLflow: {report['tracking_uri']} (experiment {report['study']!r})")
    if report["mlflow_ui"]:
        serve = "" if report["tracking_uri"].startswith("http") else f" (start it: mlflow ui --backend-store-uri {report['tracking_uri']})"
        console.print(f"compare the candidates in MLflow's UI: {report['mlflow_ui']}{serve}", soft_wrap=True)
