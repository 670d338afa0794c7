"""Algorithm 1 over a study (training, resumable from MLflow) or over a table of losses (replay).

The loop itself (:mod:`robustcli.selection`) knows nothing of MLflow or torch; this module hands
it the MLflow store and the training executor, reports its steps to a :class:`Progress`, and
ends with the systematic-uncertainty summary of the surviving candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from robustcli.api._args import checked, out_path
from robustcli.api._data import load_checked_data
from robustcli.api.progress import Progress, Silent
from robustcli.api.results import CandidateSummary, ReplayOutcome, SelectionOutcome
from robustcli.config import StudySettings
from robustcli.errors import InputError, UnknownNameError
from robustcli.wording import opt

if TYPE_CHECKING:  # torch and MLflow load when a selection runs
    from robustcli.execution.protocol import TrainingExecutor
    from robustcli.selection import Rule, StepRecord
    from robustcli.session import StudySession

__all__ = ["baseline_cut", "replay_selection", "resolve_candidates", "run_selection", "summarize_candidates"]


def baseline_cut(rule: Rule, baseline: float | None) -> str | None:
    """'baseline cut at 0.0361 (baseline 0.0301 + 20%)' for a rule that cuts at a known baseline."""
    from robustcli.selection.rules import baseline_limit

    margin = getattr(rule, "baseline_margin", None)
    limit = None if margin is None else baseline_limit(baseline, margin)
    return None if limit is None else f"baseline cut at {limit:.4g} (baseline {baseline:.4g} + {margin:.0%})"


def _note_if_the_paper_cut_is_skipped(rule: Rule, baseline: float | None, how: str, progress: Progress) -> None:
    """One note when the paper's rule has no baseline to cut at: only its halving runs."""
    if rule.name == "paper" and baseline_cut(rule, baseline) is None:
        progress.note(f"no baseline loss, so {opt('rule', 'paper')} skips its cut at baseline + {rule.baseline_margin:.0%} "
                      f"and only halves; {how}")  # fmt: skip


def resolve_candidates(session: StudySession, settings: StudySettings) -> list[str]:
    """The candidate ids a selection runs over: given ids/names, a seeded sample, or the space."""
    sel = settings.selection
    if sel.candidates:
        ids = [session.candidate(c.strip()).id for c in sel.candidates if c.strip()]
        if len(set(ids)) != len(ids):
            raise InputError("--candidates names the same candidate twice")
    else:
        ids = sorted(c.id for c in session.space)
    if sel.where:
        from robustcli.config import parse_pairs
        from robustcli.task import filter_candidates

        by_id = {c.id: c for c in session.space}
        by_id.update({c.id: c for c in session.space.named.values()})
        wanted = parse_pairs(sel.where, "--where") or {}
        kept = {c.id for c in filter_candidates([by_id[i] for i in ids], wanted, f"--where {' '.join(sel.where)}")}
        ids = [i for i in ids if i in kept]
    if sel.sample is not None:
        from robustcli.selection import draw_candidate_ids

        ids = draw_candidate_ids(ids, sel.sample, settings.seed)
    if len(ids) < 2:
        raise InputError(f"a selection needs at least 2 candidates, got {len(ids)}")
    return ids


def run_selection(
    session: StudySession, progress: Progress | None = None, executor: TrainingExecutor | None = None
) -> SelectionOutcome:
    """Algorithm 1 on ``session`` under its settings' ``selection``: resumes from what MLflow holds,
    logs a selection run, then trains each survivor up to ``final_instances`` and summarises them."""
    from robustcli.robustness.criteria import make_objective
    from robustcli.selection import make_rule, select
    from robustcli.session.losses import SessionLosses
    from robustcli.task import candidate_label
    from robustcli.tracking.selection_store import MlflowSelectionStore, selection_key

    progress = progress or Silent()
    settings = session.settings
    sel = settings.selection
    objective = make_objective(sel.criterion, sel.combine, where="--criterion")
    rule = make_rule(sel.rule, sel)
    candidates = resolve_candidates(session, settings)
    if sel.budget is not None and sel.budget < len(candidates) * sel.warmup:
        raise InputError(
            f"--warmup {sel.warmup} needs {len(candidates) * sel.warmup} trainings for {len(candidates)} candidates, "
            f"more than --budget {sel.budget}"
        )
    description = {
        "rule": rule.describe(),
        **sel.model_dump(mode="json", exclude={"candidates", "sample", "budget", "max_steps", "final_instances"}),
        "candidates": len(candidates),
        "train_size": session.train_size,
    }
    key = selection_key(session.fingerprint, description, candidates)
    store = MlflowSelectionStore(session, key, description)
    store.refuse_if_held()  # a selection running elsewhere: refused at once, before the data load
    load_checked_data(session, progress)
    session.prepare_executor()
    store.check_not_running_elsewhere()
    baseline = store.baseline_loss()
    _note_if_the_paper_cut_is_skipped(rule, baseline, _how_to_log_baselines(session), progress)
    store.open_run()  # take the lock before the first (most expensive) step, not after it

    label = lambda cid: candidate_label(session.task, session.candidate(cid))  # noqa: E731
    view = _StepView(progress, baseline_cut(rule, baseline), label=label)
    source = SessionLosses(session, store, executor=executor, on_start=view.start_batch, on_done=view.done_one)
    with progress:
        try:
            result = select(candidates, store, source, rule, objective, warmup=sel.warmup, budget=sel.budget,
                            max_steps=sel.max_steps, on_step=view.step, confidence=sel.confidence)  # fmt: skip
        except BaseException:
            store.abandon()
            raise
        store.finish(result)
        if sel.final_instances:
            _train_final(session, result.survivors, sel.final_instances, progress, executor=executor)
    selected = session.candidate(result.selected)
    return SelectionOutcome(
        result=result,
        trained=source.trained_here,
        task=str(settings.task),
        study=settings.study_name,
        tracking_uri=session.store.uri,
        mlflow_ui=session.ui_path(),
        selected_name=session.space.name_of(selected),
        selected_description=candidate_label(session.task, selected, with_id=False, use_name=False),
        baseline_loss=baseline,
        baseline_cut=baseline_cut(rule, baseline),
        summary=summarize_candidates(session, list(result.survivors)),
        contender_labels={cid: candidate_label(session.task, session.candidate(cid), with_id=False) for cid in result.p_best},
    )


def _how_to_log_baselines(session: StudySession) -> str:
    """What to run so that this selection finds a baseline (or why none can be)."""
    from robustcli.wording import how_to_fit_baselines

    s = session.settings
    if not session.task.baselines():
        return f"task {s.task!r} defines no baselines"
    return how_to_fit_baselines(str(s.task), s.study_name, session.train_size)


def _train_final(
    session: StudySession, survivors: Iterable[str], n: int, progress: Progress, executor: TrainingExecutor | None = None
) -> None:
    """Train the survivors up to ``n`` instances each (the paper adds 50 to its final models)."""
    known = session.known(list(survivors))
    jobs = [(session.candidate(c), i) for c in survivors for i in range(n) if i not in known.get(c, {})]
    if not jobs:
        return
    progress.start("final", "final instances", len(jobs))
    for _ in session.train(jobs, executor=executor):
        progress.update("final", advance=1)


def summarize_candidates(session: StudySession, candidate_ids: list[str]) -> list[CandidateSummary]:
    """Per candidate: the spread of its instance losses under the session's settings, as a
    systematic uncertainty (intervals drawn with the study's seed, as every command draws them)."""
    from robustcli.robustness import summarize_instances
    from robustcli.task import candidate_label

    known = session.known(candidate_ids)
    out = []
    for cid in candidate_ids:
        losses = [r.loss for _, r in sorted(known.get(cid, {}).items())]
        cand = session.candidate(cid)
        description = candidate_label(session.task, cand, with_id=False, use_name=False)
        out.append(CandidateSummary(cid, session.space.name_of(cand), description,
                                    summarize_instances(losses, seed=session.settings.seed),
                                    losses, session.task.loss.name))  # fmt: skip
    return out


class _StepView:
    """Algorithm 1's steps as a bar over each step's trainings and one line per finished step."""

    def __init__(self, progress: Progress, cut: str | None, label: Callable[[str], str]) -> None:
        self.progress = progress
        self.cut = cut  # the baseline cut of step 1, in words
        self.label = label  # a candidate id as output shows it
        self.step_no = 1

    def start_batch(self, n: int) -> None:
        self.progress.start("step", f"step {self.step_no}: training", n)

    def done_one(self, cid: str, index: int, loss: float) -> None:
        self.progress.update("step", advance=1)

    def step(self, record: StepRecord) -> None:
        self.step_no = record.step + 1
        leaders = sorted(
            ((v[0], cid) for cid, v in record.values.items() if cid in record.survivors and v), key=lambda t: (t[0], t[1])
        )[:3]
        lead = ", ".join(f"{self.label(cid)} {val:.4g}" for val, cid in leaders)
        cut = f"{self.cut}; " if record.step == 1 and self.cut else ""
        self.progress.line(
            f"step {record.step}: {len(record.evaluated)} -> {len(record.survivors)} candidates; {cut}"
            f"{record.trainings:,} trainings (exhaustive {record.exhaustive_trainings:,}); leaders {lead}"
        )


@checked
def replay_selection(
    table: str | Path,
    *,
    rule: str | None = None,
    criterion: str | Sequence[str] | None = None,
    combine: str | None = None,
    warmup: int | None = None,
    fraction: float | None = None,
    confidence: float | None = None,
    delta: float | str | None = None,
    baseline_margin: float | None = None,
    budget: int | None = None,
    max_steps: int | None = None,
    candidates: Sequence[str] | None = None,
    sample: int | None = None,
    seed: int | None = None,
    baseline_loss: float | None = None,
    progress: Progress | None = None,
    settings: StudySettings | None = None,
) -> ReplayOutcome:
    """Algorithm 1 replayed on a table of losses (columns candidate, instance, loss; what
    :func:`export_losses` writes): no training. The keywords are :meth:`Study.select`'s;
    ``baseline_loss`` is the paper's cut; ``settings`` (what the CLI builds) replaces them all.

    Example: ``replay_selection("losses.csv", rule="halving", criterion="mean").selected``"""
    from robustcli.api._args import names
    from robustcli.config import load_settings

    path = out_path("table", table)
    if settings is None:
        names("criterion", criterion)
        names("candidates", candidates)
        settings = load_settings(rule=rule, criterion=criterion, combine=combine, warmup=warmup, fraction=fraction,
                                 confidence=confidence, delta=delta, baseline_margin=baseline_margin, budget=budget,
                                 max_steps=max_steps, candidates=candidates, sample=sample, seed=seed)  # fmt: skip
    elif not isinstance(settings, StudySettings):
        raise InputError(f"settings={settings!r}: expected robustcli.config.StudySettings (or pass the keywords)")
    from robustcli.robustness.criteria import make_objective
    from robustcli.selection import MemorySelectionStore, TableLosses, make_rule, read_loss_table, select
    from robustcli.selection.replay import check_baseline_loss

    check_baseline_loss(baseline_loss)
    progress = progress or Silent()
    sel = settings.selection
    objective = make_objective(sel.criterion, sel.combine, where="from --criterion")
    by_rule = make_rule(sel.rule, sel)
    losses = read_loss_table(path)
    if sel.candidates:
        unknown = [c for c in sel.candidates if c not in set(losses.candidates)]
        if unknown:
            raise UnknownNameError("candidate", unknown[0], losses.candidates, f"from --candidates, not in {path}")
        losses = losses.subset(sel.candidates)
    if sel.sample is not None:
        from robustcli.selection import draw_candidate_ids

        losses = losses.subset(draw_candidate_ids(losses.candidates, sel.sample, settings.seed, f"in {path}"))
    if losses.instances <= sel.warmup and len(losses.candidates) > 1:
        raise InputError(
            f"{path}: {losses.instances} instance(s) per candidate, but a selection ranks only after its "
            f"--warmup {sel.warmup} step(s): it needs at least {sel.warmup + 1} instances per candidate"
        )
    if sel.max_steps is not None:
        losses.require_steps(sel.max_steps)
    count = len(losses.candidates)
    if sel.budget is not None and count > 1 and sel.budget < count:  # refused before any note is printed
        raise InputError(f"--budget {sel.budget} is below the {count} trainings the first step needs "
                         f"({count} candidates in {path})")
    store = MemorySelectionStore(baseline=baseline_loss)
    _note_if_the_paper_cut_is_skipped(by_rule, baseline_loss, "pass --baseline-loss X (the best baseline's mean loss)", progress)
    result = select(
        losses.candidates, store, TableLosses(losses, store), by_rule, objective,
        warmup=sel.warmup, budget=sel.budget, max_steps=sel.max_steps or losses.instances,
        exhaustive_instances=losses.instances, confidence=sel.confidence,
    )  # fmt: skip
    return ReplayOutcome(result, str(path), losses.instances, objective.combine, list(objective.names), baseline_loss,
                         baseline_cut(by_rule, baseline_loss))  # fmt: skip
