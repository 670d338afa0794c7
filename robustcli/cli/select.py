"""`robust select`: run Algorithm 1, on a study (training) or on a table of losses (replay).

Kept free of torch and MLflow at import: the training path is imported inside the command.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from robustcli.cli._common import (
    ConfigFileOption,
    TrackingUriOption,
    cli_progress,
    console,
    handle_errors,
    print_json,
    settings_from_options,
    with_training_options,
)
from robustcli.errors import InputError

__all__ = ["select"]


def _split(values: list[str] | str | None) -> list[str] | None:
    """'a,b' and repeated options -> ['a', 'b']; None when nothing was given."""
    if values is None:
        return None
    items = [values] if isinstance(values, str) else values
    out = [part.strip() for item in items for part in item.split(",") if part.strip()]
    return out or None


def _fmt_all(values: Any) -> list[str]:
    """A candidate's criterion values as the tables show them: "failed" when none is finite (its
    instances failed); an infinite value beside finite ones is undefined so far (the spread of one
    instance), "-"."""
    values = list(values)
    if values and not any(math.isfinite(v) for v in values):
        return ["failed" if v > 0 else str(v) for v in values]
    return [f"{v:.5g}" if math.isfinite(v) else "-" for v in values]


@handle_errors
@with_training_options
def select(
    task: Annotated[str | None, typer.Option("--task", help="Task name (training mode).", show_default=False)] = None,
    config: ConfigFileOption = None,
    study: Annotated[str | None, typer.Option("--study", help="Study name (default: the task's).", show_default=False)] = None,
    criterion: Annotated[
        list[str] | None,
        typer.Option(
            "--criterion",
            help="Criterion: mean, median, min, max, std, iqr, q90_q10, or pkg.module:function. "
            "Repeat (or comma-separate) for several. Default: mean.",
            show_default=False,
        ),
    ] = None,
    combine: Annotated[
        str | None,
        typer.Option("--combine", help="How several criteria combine: lexicographic or pareto.", show_default=False),
    ] = None,
    rule: Annotated[
        str | None,
        typer.Option("--rule", help="Pruning rule: paper, halving, quantile, race, race-strict. Default: paper.",
                     show_default=False),
    ] = None,
    warmup: Annotated[int | None, typer.Option("--warmup", help="Steps before any ranking cut. Default: 1.",
                                               show_default=False)] = None,
    fraction: Annotated[float | None, typer.Option("--fraction", help="Share dropped per cut (paper, halving, "
                                                   "quantile). Default: 0.5.", show_default=False)] = None,
    confidence: Annotated[float | None, typer.Option("--confidence", help="Confidence of the race's tests and "
                                                     "of the pick's confidence statement (every rule). "
                                                     "Default: 0.95.", show_default=False)] = None,
    final_instances: Annotated[int | None, typer.Option("--final-instances", metavar="N", help="Then train each "
                                                        "survivor up to N instances for its uncertainty summary "
                                                        "(the paper: 50).", show_default=False)] = None,
    delta: Annotated[str | None, typer.Option("--delta", metavar="X|P%", help="Race: indifference zone on the "
                                              "criterion, a share of the leader's mean loss (1%) or a difference "
                                              "in loss units (0.005). Default: 1%, the same on every loss scale.",
                                              show_default=False)] = None,
    budget: Annotated[int | None, typer.Option("--budget", help="Most instances to use in all.",
                                               show_default=False)] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", help="Most steps (instances per candidate).",
                                                  show_default=False)] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Study seed (and --sample's). Default: 0.",
                                             show_default=False)] = None,
    candidates: Annotated[
        str | None,
        typer.Option("--candidates", help="Only these candidate ids (comma-separated).", show_default=False),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option("--where", metavar="KEY=VALUE", help="Only candidates whose parameter KEY equals VALUE "
                     "(repeatable), e.g. --where optimizer=adamw.", show_default=False),
    ] = None,
    sample: Annotated[int | None, typer.Option("--sample", metavar="K", help="Only K candidates drawn at random "
                                               "with --seed.", show_default=False)] = None,
    tracking_uri: TrackingUriOption = None,
    replay: Annotated[
        Path | None,
        typer.Option("--replay", metavar="FILE.csv", help="Replay the selection on a loss table "
                     "(columns candidate,instance,loss) instead of training.", show_default=False),
    ] = None,
    baseline_loss: Annotated[
        float | None,
        typer.Option("--baseline-loss", metavar="X", help="Baseline loss for the paper's cut (replay mode).",
                     show_default=False),
    ] = None,
    options: Any = None,  # the training options it does not word itself (with_training_options)
) -> None:
    """Select a robust candidate with Algorithm 1: train one instance of every survivor per step, cut by a rule.

    Example, on a study (trains, resumes where it stopped):

        robust select --task calo-energy --study energy-grid --rule paper --criterion mean

    Example, replaying a table of losses (no training):

        robust select --replay losses.csv --rule race --json

    Example, the paper's robustness question as a race (the smallest spread among the accurate):

        robust select --replay losses.csv --rule race --criterion mean,std

    Every selection ends with how sure it is of its pick: the candidates the data cannot tell from it at --confidence, each candidate's bootstrap probability of being the best, and how many more instances would separate them.
    """
    settings, _ = settings_from_options(
        options, config=config, tracking_uri=tracking_uri, task=task, study=study, seed=seed,
        criterion=_split(criterion), combine=combine, rule=rule, warmup=warmup, fraction=fraction,
        confidence=confidence, delta=delta, final_instances=final_instances, budget=budget, max_steps=max_steps, candidates=_split(candidates),
        sample=sample, where=where,
    )  # fmt: skip
    json_output = options["json_output"]
    if replay is None:
        if baseline_loss is not None:
            raise InputError("--baseline-loss applies to --replay only; a study takes its baseline from the task")
        from robustcli.api import Study  # lazy: pulls in torch and MLflow
        from robustcli.cli.selection_view import render_selection

        outcome = Study.from_settings(settings, progress=cli_progress(json_output)).select()
        if json_output:
            print_json(outcome)
        else:
            render_selection(outcome)
        return
    from robustcli.api import replay_selection

    replayed = replay_selection(replay, settings=settings, baseline_loss=baseline_loss, progress=cli_progress(json_output))
    if json_output:
        print_json(replayed)
        return
    _render(replayed.result, replayed.criterion_names, replay, replayed.instances, replayed.baseline_cut)


def _render(result: Any, names: list[str], path: Path, instances: int, cut: str | None) -> None:
    steps = Table(title=f"Selection on {path.name}: {result.rule_description}, criterion {' then '.join(names)}"
                  + (f"; step 1: {cut}" if cut else ""))
    steps.add_column("step", justify="right")
    steps.add_column("evaluated", justify="right")
    steps.add_column("survivors", justify="right")
    steps.add_column("trainings", justify="right")
    steps.add_column("best")
    steps.add_column(" / ".join(names), justify="right")
    for rec in result.history:
        value = ", ".join(_fmt_all(rec.values[rec.best]))
        steps.add_row(str(rec.step), str(len(rec.evaluated)), str(len(rec.survivors)), str(rec.trainings),
                      rec.best, value)
    console.print(steps)
    final = Table(title="Survivors")
    final.add_column("candidate")
    for name in names:
        final.add_column(name, justify="right")
    for cid in list(result.survivors)[:20]:
        final.add_row(("* " if cid == result.selected else "  ") + cid, *_fmt_all(result.values.get(cid, ())))
    if len(result.survivors) > 20:
        final.caption = f"{len(result.survivors) - 20} more not shown"
    console.print(final)
    from robustcli.cli.selection_view import render_confidence

    render_confidence(result.as_dict())
    why = {"one-left": "one candidate left", "budget": "budget reached", "max-steps": "step limit reached"}
    if not result.trainings:
        console.print(f"selected [bold]{result.selected}[/bold]: the only candidate, nothing to train")
        return
    console.print(
        f"selected [bold]{result.selected}[/bold] ({why[result.reason]}) after {result.steps} steps: "
        f"{result.trainings} trainings vs {result.exhaustive_trainings} exhaustive "
        f"({result.candidates} candidates x {instances} instances), {result.ratio:.1f}x fewer"
    )
