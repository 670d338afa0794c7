"""`robust baseline`: the task's non-deep references on the same training samples as instances."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from robustcli.cli._common import (
    DATA_OPTIONS,
    TaskNameOption,
    cli_progress,
    console,
    handle_errors,
    print_json,
    settings_from_options,
    with_training_options,
)


@handle_errors
@with_training_options(only=DATA_OPTIONS)
def baseline(
    task: TaskNameOption = None,
    instances: Annotated[int, typer.Option("--instances", "-n", help="Training samples to fit each baseline on.")] = 5,
    options: Any = None,  # the data's options (with_training_options)
) -> None:
    """Fit every baseline of a task on the training samples of instances 0..N-1 (the same draws
    the networks get), print each one's test loss and its spread, and log them to MLflow, where
    `robust select --rule paper` finds the best one.

    Example: robust baseline --task calo-energy --instances 5 --train-size 2000
    """
    settings, tracking_uri = settings_from_options(options, task=task)
    json_output = options["json_output"]
    from robustcli.api import Study

    fits = Study.from_settings(settings, tracking_uri, progress=cli_progress(json_output)).fit_baselines(instances=instances)
    if json_output:
        print_json(fits)
        return
    rows = fits.records()  # plain rows: name, description and the statistics
    from rich.table import Table

    table = Table(title=f"{settings.task}: baselines over {instances} training samples of {fits.train_size}")
    for col in ("baseline", "mean", "std", "min", "max"):
        table.add_column(col, justify="left" if col == "baseline" else "right", no_wrap=col != "baseline",
                         overflow="fold", min_width=13 if col == "baseline" else None)  # fmt: skip
    for r in rows:
        table.add_row(r["name"], *(f"{r[k]:.5g}" for k in ("mean", "std", "min", "max")))
    console.print(table)
    for r in rows:
        console.print(f"{r['name']}: {r['description']}", soft_wrap=True)
