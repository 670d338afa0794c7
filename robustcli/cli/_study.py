"""`robust select` with training: Algorithm 1 over a study session, with a live view.

The loop itself (robustcli.selection) knows nothing of MLflow or torch; this module hands it the
MLflow store and the training executor, renders its steps, and ends with the systematic
uncertainty summary of the surviving candidates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from robustcli.cli._common import console, err_console, labelled, load_checked_data, print_json
from robustcli.cli.select import baseline_cut, warn_if_the_paper_cut_is_skipped
from robustcli.config import StudySettings
from robustcli.errors import InputError

__all__ = ["run_training_selection", "resolve_candidates"]


def resolve_candidates(session: Any, settings: StudySettings) -> list[str]:
    """The candidate ids a selection runs over: given ids/names, a seeded sample, or the space."""
    sel = settings.selection
    if sel.candidates:
        ids = [session.candidate(c.strip()).id for c in sel.candidates if c.strip()]
        if len(set(ids)) != len(ids):
            raise InputError("--candidates names the same candidate twice")
    else:
        ids = sorted(c.id for c in session.space)
    if sel.where:
        from robustcli.cli._common import parse_task_options
        from robustcli.task import filter_candidates

        by_id = {c.id: c for c in session.space}
        by_id.update({c.id: c for c in session.space.named.values()})
        wanted = parse_task_options(sel.where, "--where") or {}
        kept = {c.id for c in filter_candidates([by_id[i] for i in ids], wanted, f"--where {' '.join(sel.where)}")}
        ids = [i for i in ids if i in kept]
    if sel.sample is not None:
        from robustcli.selection import sample_candidates

        ids = sample_candidates(ids, sel.sample, settings.seed)
    if len(ids) < 2:
        raise InputError(f"a selection needs at least 2 candidates, got {len(ids)}")
    return ids


def run_training_selection(settings: StudySettings, json_output: bool = False, engine: Any = None) -> dict[str, Any]:
    from robustcli.execution.session import StudySession
    from robustcli.execution.session_executor import SessionExecutor
    from robustcli.robustness.criteria import make_objective
    from robustcli.selection import make_rule, select
    from robustcli.task import readable_name
    from robustcli.tracking.selection_store import MlflowSelectionStore, selection_key

    session = StudySession(settings)
    sel = settings.selection
    objective = make_objective(sel.criterion, sel.combine, where="--criterion")
    rule = make_rule(sel.rule, sel)
    candidates = resolve_candidates(session, settings)
    if sel.budget is not None and sel.budget < len(candidates) * sel.warmup:
        raise InputError(
            f"--warmup {sel.warmup} needs {len(candidates) * sel.warmup} trainings for {len(candidates)} candidates, "
            f"more than --budget {sel.budget}"
        )
    load_checked_data(session)
    session.prepare_executor()
    description = {
        "rule": rule.describe(),
        **sel.model_dump(mode="json", exclude={"candidates", "sample", "budget", "max_steps", "final_instances"}),
        "candidates": len(candidates),
        "train_size": session.train_size,
    }
    key = selection_key(session.fingerprint, description, candidates)
    store = MlflowSelectionStore(session, key, description)
    store.check_not_running_elsewhere()
    baseline = store.baseline_loss()
    warn_if_the_paper_cut_is_skipped(rule, baseline, _how_to_log_baselines(session))
    store.open_run()  # take the lock before the first (most expensive) step, not after it

    view = _LiveView(quiet=json_output, total_candidates=len(candidates), cut=baseline_cut(rule, baseline),
                     label=lambda cid: labelled(session.task, session.candidate(cid)))
    executor = SessionExecutor(session, store, engine=engine, on_start=view.start_batch, on_done=view.done_one)
    try:
        with view:
            result = select(
                candidates,
                store,
                executor,
                rule,
                objective,
                warmup=sel.warmup,
                budget=sel.budget,
                max_steps=sel.max_steps,
                on_step=view.step,
            )
    except BaseException:
        store.abandon()
        raise
    store.finish(result)
    if sel.final_instances:
        _train_final(session, result.survivors, sel.final_instances, quiet=json_output, executor=engine)
    summary = survivor_summary(session, result.survivors, result.steps, seed=settings.seed)
    report = {
        **result.as_dict(),
        # trained by this process: an instance another process (an assess beside) trained is read, not counted
        "trained": executor.trained_here,
        "task": settings.task,
        "study": settings.study_name,
        "tracking_uri": session.store.uri,
        "mlflow_ui": session.ui_path(),
        "selected_description": readable_name(session.task, session.candidate(result.selected)),
        "baseline_loss": baseline,
        "baseline_cut": baseline_cut(rule, baseline),
        "summary": summary,
    }
    if json_output:
        print_json(report)
    else:
        _render(report, summary)
    return report


def _how_to_log_baselines(session: Any) -> str:
    """What to run so that this selection finds a baseline (or why none can be)."""
    s = session.settings
    if not session.task.baselines():
        return f"task {s.task!r} defines no baselines"
    return (f"log them first: robust baseline --task {s.task} --study {s.study_name} --train-size {session.train_size} "
            "(with this selection's --seed, --test-size, --sampling and -o)")  # fmt: skip


def _train_final(session: Any, survivors: Any, n: int, quiet: bool, executor: Any = None) -> None:
    """Train the survivors up to ``n`` instances each (the paper adds 50 to its final models)."""
    known = session.known(list(survivors))
    jobs = [(session.candidate(c), i) for c in survivors for i in range(n) if i not in known.get(c, {})]
    if not jobs:
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]final instances"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console, disable=quiet,
    ) as progress:
        bar = progress.add_task("final", total=len(jobs))
        for _ in session.train(jobs, executor=executor):
            progress.advance(bar)


def survivor_summary(session: Any, survivors: Any, steps: int, seed: int = 0) -> list[dict[str, Any]]:
    """Per surviving candidate: the spread of its instance losses as a systematic uncertainty."""
    from robustcli.robustness import summarize_instances
    from robustcli.task import readable_name

    known = session.known(list(survivors))
    out = []
    for cid in survivors:
        losses = [r.loss for _, r in sorted(known.get(cid, {}).items())]
        cand = session.candidate(cid)
        out.append(
            {"candidate": cid, "name": cand.name, "description": readable_name(session.task, cand),
             **summarize_instances(losses, seed=seed).as_dict()}
        )  # fmt: skip
    return out


def _render(report: dict[str, Any], summary: list[dict[str, Any]]) -> None:
    from rich.table import Table

    console.print(
        f"selected [bold]{report['selected_description']} ({report['selected']})[/bold] after {report['steps']} steps ({report['reason']}); "
        f"{report['trainings']:,} trainings versus {report['exhaustive_trainings']:,} exhaustive "
        f"({report['ratio']}x fewer); survivors per step {report['survivors_per_step']}"
    )
    table = Table(title="Systematic uncertainty of the survivors: the spread of their instance losses")
    table.add_column("candidate", overflow="fold", min_width=14)  # a long description wraps
    for col in ("n", "mean [95% CI]", "std", "std/mean", "Q90-Q10", "failed"):  # numbers are never cut: the
        table.add_column(col, justify="right", no_wrap=col != "mean [95% CI]", min_width=10 if col.startswith("mean") else None)  # interval wraps at its space
    for row in summary:
        s = row["statistics"]
        label = f"{row['description']} ({row['candidate']})"
        interval = "" if math.isnan(s["mean"]["low"]) else f" [{s['mean']['low']:.4g}, {s['mean']['high']:.4g}]"
        table.add_row(
            label,
            str(row["instances"]),
            f"{s['mean']['value']:.4g}{interval}",
            f"{row['systematic_abs']:.3g}",
            f"{100 * row['systematic_rel']:.2f}%" if math.isfinite(row["systematic_rel"]) else "-",
            f"{s['q90_q10']['value']:.3g}",
            str(row["failed"]),
        )
    console.print(table)
    console.print(f"history in MLflow: {report['tracking_uri']} (experiment {report['study']!r}, run selection-*)")
    if report["mlflow_ui"]:
        serve = "" if report["tracking_uri"].startswith("http") else f" (start it: mlflow ui --backend-store-uri {report['tracking_uri']})"
        console.print(f"compare the candidates in MLflow's UI: {report['mlflow_ui']}{serve}", soft_wrap=True)


class _LiveView:
    """A progress bar over each step's trainings and one line per finished step."""

    def __init__(
        self, quiet: bool, total_candidates: int, cut: str | None = None, label: Callable[[str], str] = str
    ) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.quiet = quiet
        self.total = total_candidates
        self.cut = cut  # the baseline cut of step 1, in words
        self.label = label  # a candidate id as output shows it
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            disable=quiet,
        )
        self.bar: Any = None
        self.step_no = 1

    def __enter__(self) -> _LiveView:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def start_batch(self, n: int) -> None:
        if self.bar is not None:
            self.progress.remove_task(self.bar)
        self.bar = self.progress.add_task(f"step {self.step_no}: training", total=n)

    def done_one(self, cid: str, index: int, loss: float) -> None:
        if self.bar is not None:
            self.progress.advance(self.bar)

    def step(self, record: Any) -> None:
        self.step_no = record.step + 1
        if self.quiet:
            return
        leaders = sorted(
            ((v[0], cid) for cid, v in record.values.items() if cid in record.survivors and v), key=lambda t: (t[0], t[1])
        )[:3]
        lead = ", ".join(f"{self.label(cid)} {val:.4g}" for val, cid in leaders)
        cut = f"{self.cut}; " if record.step == 1 and self.cut else ""
        self.progress.console.print(
            f"step {record.step}: {len(record.evaluated)} -> {len(record.survivors)} candidates; {cut}"
            f"{record.trainings:,} trainings (exhaustive {record.exhaustive_trainings:,}); leaders {lead}"
        )
