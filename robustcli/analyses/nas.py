"""A neural-architecture and hyperparameter search with Optuna, then the robustness of its picks.

What the paper's appendix (its "Comparison with NAS", Figure 18) does, for any task:

1. **Search.** An Optuna study (TPE by default) over the task's :meth:`~robustcli.task.Task.nas_space`:
   each trial is *one* training, as a NAS does; its loss is that training's test loss. The
   training is instance 0 of the trial's candidate under the study's settings, logged like any
   instance (so a candidate already assessed costs nothing, and a trial repeated by the sampler
   is read, not retrained). Each trial is also an MLflow run (tag ``robust.kind = nas-trial``)
   under the search's run (``robust.kind = nas``), with Optuna's answers as params and ``loss``.
2. **Assessment.** The ``top`` distinct candidates by trial loss get ``instances`` more trainings
   each (instances 1..N: the trial's own training is left out, it was picked *for* being low),
   and so does the candidate to compare with (``against``), on the same seeds (common random
   numbers). Box plot beside box plot, with each trial's single loss marked: the paper's point
   that the best single run is not the robust choice.

Persistence. The runs (the search's, its trials', its report) are written and read by
:mod:`robustcli.tracking.nas_runs`; this module searches and assesses.

Resume. MLflow is the one record: no Optuna storage file. A re-run finds the search's run by its
key (settings fingerprint, sampler, seed, the task's space) and rebuilds the Optuna study by
replaying the logged trials in order (``enqueue_trial`` / ``ask`` / ``tell``, re-running the task's
``nas_space`` on the logged answers, which also rebuilds the distributions). Trial *n* is asked of
a fresh sampler seeded by (study seed, *n*), so a resumed search asks exactly what an
uninterrupted one would, and a second identical run trains nothing.
"""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from robustcli.config import NasSettings
from robustcli.errors import InputError
from robustcli.task import Candidate
from robustcli.tracking.nas_runs import NasRuns, logged_searches

if TYPE_CHECKING:
    from robustcli.session import StudySession

__all__ = ["NasReport", "NasRow", "NasSearch", "NasTrial", "logged_searches", "search_key", "trial_seed"]

#: (phase, done, total, message): phase "trial" during the search, "instance" during the assessment
Progress = Callable[[str, int, int, str], None]


def search_key(fingerprint: str, nas: NasSettings, seed: int, space: str) -> str:
    """What identifies a search: the instances' settings, the sampler, the seed and the space (not
    the number of trials: asking for more continues the same search)."""
    text = json.dumps({"fp": fingerprint, "sampler": nas.sampler, "seed": seed, "space": space}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def trial_seed(seed: int, number: int) -> int:
    """The seed of the sampler that asks trial ``number`` (31 bits)."""
    digest = hashlib.blake2b(f"robust/nas/{seed}/{number}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & ((1 << 31) - 1)


@dataclass
class NasTrial:
    """One trial: Optuna's answers, the candidate they make, and its one training's loss."""

    number: int
    answers: dict[str, Any]
    candidate: Candidate
    loss: float  # NaN: the training failed
    instance_run: str = ""
    trained_now: bool = False

    def as_dict(self, label: Callable[[Candidate], str]) -> dict[str, Any]:
        return {
            "number": self.number,
            "candidate": self.candidate.id,
            "name": label(self.candidate),
            "params": dict(self.candidate.params),
            "answers": self.answers,
            "loss": self.loss,
            "state": "complete" if math.isfinite(self.loss) else "fail",
        }


@dataclass
class NasRow:
    """An assessed candidate: a best trial's ("top") or the one they are set against ("against")."""

    role: str
    candidate: str
    name: str
    params: dict[str, Any]
    trial: int | None  # the trial that picked it (None: the candidate set against them)
    trial_loss: float | None
    instances: int
    failed: int
    losses: list[float]
    mean: float
    std: float
    median: float
    #: each statistic's value with its bootstrap interval (``Estimate.as_dict``)
    statistics: dict[str, dict[str, Any]]


@dataclass
class NasReport:
    """A search and the assessment of its picks (``nas.json`` in the search's run is its ``as_dict``)."""

    task: str
    study: str
    loss: dict[str, Any]  # name, lower_is_better
    sampler: str
    sampler_seed: int
    sampler_seeding: str
    trials: int
    trained_trials: int
    failed_trials: int
    distinct_candidates: int
    trial_table: list[dict[str, Any]]
    instances: int
    instance_indices: list[int]
    trained_instances: int
    train_size: int
    top: list[NasRow]
    against: NasRow | None  # one of ``top`` when the candidate set against them is among them
    verdict: str
    key: str
    run_id: str
    tracking_uri: str
    fingerprint: str
    #: the figure's name in the search's run, once logged
    figure: str | None = None

    @property
    def assessed(self) -> list[NasRow]:
        """The rows drawn and tabled: the best trials, then the candidate set against them if it is not one."""
        return self.top + ([self.against] if self.against is not None and self.against.role == "against" else [])

    def as_dict(self) -> dict[str, Any]:
        from robustcli.results import plain

        out = {f.name: plain(getattr(self, f.name)) for f in fields(self)}
        if self.figure is None:
            del out["figure"]
        return out


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise InputError("`robust nas` needs Optuna: pip install 'optuna>=4'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _sampler(optuna: Any, kind: str, seed: int) -> Any:
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


@dataclass
class _Assessment:
    candidate: Candidate
    role: str  # "top" or "against"
    losses: list[float] = field(default_factory=list)
    trial: NasTrial | None = None


class NasSearch:
    """A search over a :class:`~robustcli.session.StudySession`; :meth:`prepare` refuses
    bad input before anything is written, :meth:`run` searches, assesses and logs."""

    def __init__(self, session: StudySession, nas: NasSettings) -> None:
        self.session = session
        self.nas = nas
        self.settings = session.settings
        self.against: Candidate | None = None
        space_name = f"{type(session.task).__module__}.{type(session.task).__qualname__}"
        self.key = search_key(session.fingerprint, nas, self.settings.seed, space_name)
        self.runs = NasRuns(session, self.key)

    # -- before anything trains ----------------------------------------------------------------
    def prepare(self) -> None:
        """Optuna importable, the candidate to compare with known, the sizes possible, the device there."""
        _optuna()
        if self.settings.instances < 1:
            raise InputError(f"--instances must be a positive count, got {self.settings.instances}")
        if self.nas.against:
            self.against = self._resolve_against(self.nas.against.strip())
        self.session.validate_sizes()
        self.session.prepare_executor()

    def _resolve_against(self, key: str) -> Candidate:
        if key != "selected":
            return self.session.space.get(key, where="--against")
        from robustcli.tracking.selection_store import last_selected

        selected = last_selected(self.session.store, self.session.existing_experiment(), self.session.fingerprint)
        if selected is None:
            raise InputError(
                f"--against selected: study {self.settings.study_name!r} has no finished selection under these "
                f"settings; run `robust select` first or name a candidate (see `robust tasks show {self.settings.task}`)"
            )
        return self.session.space.get(selected, where="--against selected")

    # -- MLflow (tracking/nas_runs.py) ----------------------------------------------------------
    def _run_params(self) -> dict[str, Any]:
        """The search's run's params."""
        return {"sampler": self.nas.sampler, "sampler_seed": self.settings.seed, "train_size": self.session.train_size,
                "sampler_seeding": "trial n: a fresh sampler seeded by hash(study seed, n)"}  # fmt: skip

    def _open_run(self) -> str:
        return self.runs.open(self._run_params())

    def _log_trial(self, trial: NasTrial) -> None:
        params = {k: str(v)[:6000] for k, v in trial.answers.items()}
        params["sampler_seed"] = str(trial_seed(self.settings.seed, trial.number))
        self.runs.log_trial(
            number=trial.number, answers=trial.answers, candidate=trial.candidate, loss=trial.loss,
            instance_run=trial.instance_run,
            name=f"trial-{trial.number}: {self.session.candidate_label(trial.candidate)}"[:250],
            params=params, run_params=self._run_params(),
        )  # fmt: skip

    # -- the search ---------------------------------------------------------------------------
    def _candidate(self, trial: Any) -> Candidate:
        try:
            params = dict(self.session.task.nas_space(trial))
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - a plugin's space: say whose it is
            raise InputError(f"task {self.settings.task!r}: its nas_space failed: {type(exc).__name__}: {exc}") from exc
        cand = Candidate.from_params(params)
        for name, named in self.session.space.named.items():
            if named.id == cand.id:
                return named  # the paper's Model 2 found by the search keeps its name
        return cand

    def _train_instance_0(self, cand: Candidate) -> tuple[Any, bool]:
        known = self.session.known([cand.id]).get(cand.id, {})
        if 0 in known:
            return known[0], False
        records = list(self.session.train([(cand, 0)]))
        return records[-1][1], True

    def search(self, progress: Progress | None = None) -> list[NasTrial]:
        """Replay the logged trials, then run the missing ones: ``nas.trials`` in all."""
        optuna = _optuna()
        from optuna.trial import TrialState

        lower = self.session.task.loss.lower_is_better
        study = optuna.create_study(direction="minimize" if lower else "maximize",
                                    sampler=_sampler(optuna, self.nas.sampler, trial_seed(self.settings.seed, 0)))  # fmt: skip
        trials: list[NasTrial] = []

        def tell(opt_trial: Any, loss: float) -> None:
            if math.isfinite(loss):
                study.tell(opt_trial, loss)
            else:
                study.tell(opt_trial, state=TrialState.FAIL)

        logged = self.runs.logged_trials()[: self.nas.trials]
        for run in logged:
            answers = run.answers
            study.enqueue_trial(answers)
            opt_trial = study.ask()
            cand = self._candidate(opt_trial)
            if cand.id != run.candidate_id:
                raise InputError(
                    f"trial {len(trials)} of the search in study {self.settings.study_name!r} no longer gives the "
                    f"candidate it logged: the task's nas_space changed; search in another --study"
                )
            tell(opt_trial, run.loss)
            trials.append(NasTrial(len(trials), answers, cand, run.loss, run.instance_run))
        if progress is not None:
            progress("trial", len(trials), self.nas.trials, f"{len(trials)} logged" if trials else "")
        for number in range(len(trials), self.nas.trials):
            study.sampler = _sampler(optuna, self.nas.sampler, trial_seed(self.settings.seed, number))
            opt_trial = study.ask()
            cand = self._candidate(opt_trial)
            rec, trained = self._train_instance_0(cand)
            trial = NasTrial(number, dict(opt_trial.params), cand, rec.loss, self.session.store.run_id(rec.run_id), trained)
            self._log_trial(trial)
            tell(opt_trial, trial.loss)
            trials.append(trial)
            if progress is not None:
                shown = f"{trial.loss:.5g}" if math.isfinite(trial.loss) else "failed"
                progress("trial", number + 1, self.nas.trials, f"#{number}: {shown} ({self.session.candidate_label(cand)})")
        return trials

    def best(self, trials: list[NasTrial]) -> list[NasTrial]:
        """The ``top`` distinct candidates by their trial's loss (failed trials never)."""
        sign = 1.0 if self.session.task.loss.lower_is_better else -1.0
        ranked = sorted((t for t in trials if math.isfinite(t.loss)), key=lambda t: (sign * t.loss, t.number))
        out: list[NasTrial] = []
        for t in ranked:
            if all(t.candidate.id != o.candidate.id for o in out):
                out.append(t)
            if len(out) == self.nas.top:
                break
        return out

    # -- the assessment -------------------------------------------------------------------------
    def assess(self, best: list[NasTrial], progress: Progress | None = None) -> tuple[list[_Assessment], int]:
        """Instances 1..N of each top candidate and of the one to compare with; those logged are read."""
        rows = [_Assessment(t.candidate, "top", trial=t) for t in best]
        if self.against is not None and all(r.candidate.id != self.against.id for r in rows):
            rows.append(_Assessment(self.against, "against"))
        indices = range(1, self.settings.instances + 1)
        known = self.session.known([r.candidate.id for r in rows])
        jobs = [(r.candidate, i) for r in rows for i in indices if i not in known.get(r.candidate.id, {})]
        if jobs:
            done = 0
            for cand, rec in self.session.train(jobs):
                known.setdefault(cand.id, {})[rec.index] = rec
                done += 1
                if progress is not None:
                    progress("instance", done, len(jobs), f"{self.session.candidate_label(cand)} #{rec.index}")
        for r in rows:
            r.losses = [known[r.candidate.id][i].loss for i in indices]
        return rows, len(jobs)

    # -- all of it --------------------------------------------------------------------------------
    def run(self, progress: Progress | None = None) -> NasReport:
        """Search, assess, log the table and the figure to the search's run; the report."""
        try:
            trials = self.search(progress)
            best = self.best(trials)
            if not best:
                raise InputError(f"all {len(trials)} trials failed: nothing to assess (see the trial runs in MLflow)")
            rows, trained_instances = self.assess(best, progress)
            report = self._report(trials, rows, trained_instances)
            self._log_report(report)
        except BaseException:
            self.runs.kill()
            raise
        return report

    def _report(self, trials: list[NasTrial], rows: list[_Assessment], trained_instances: int) -> NasReport:
        from robustcli.robustness import summarize

        label = self.session.candidate_label
        out_rows = []
        for r in rows:
            finite = [x for x in r.losses if math.isfinite(x)]
            stats = summarize(finite, seed=self.settings.seed, names=("mean", "median", "std", "iqr", "q90_q10", "min", "max"))
            out_rows.append(NasRow(
                role=r.role,
                candidate=r.candidate.id,
                name=label(r.candidate),
                params=dict(r.candidate.params),
                trial=r.trial.number if r.trial else None,
                trial_loss=r.trial.loss if r.trial else None,
                instances=len(r.losses),
                failed=len(r.losses) - len(finite),
                losses=r.losses,
                mean=stats["mean"].value,
                std=stats["std"].value,
                median=stats["median"].value,
                statistics={k: v.as_dict() for k, v in stats.items()},
            ))  # fmt: skip
        top = [r for r in out_rows if r.role == "top"]
        against = next((r for r in out_rows if r.role == "against"), None)
        if against is None and self.against is not None:  # the candidate to compare with is one of the top
            against = next(r for r in out_rows if r.candidate == self.against.id)
        return NasReport(
            task=self.settings.task,
            study=self.settings.study_name,
            loss={"name": self.session.task.loss.name, "lower_is_better": self.session.task.loss.lower_is_better},
            sampler=self.nas.sampler,
            sampler_seed=self.settings.seed,
            sampler_seeding="trial n is asked of a fresh sampler seeded by hash(sampler_seed, n)",
            trials=len(trials),
            trained_trials=sum(t.trained_now for t in trials),
            failed_trials=sum(not math.isfinite(t.loss) for t in trials),
            distinct_candidates=len({t.candidate.id for t in trials}),
            trial_table=[t.as_dict(label) for t in trials],
            instances=self.settings.instances,
            instance_indices=[1, self.settings.instances],
            trained_instances=trained_instances,
            train_size=self.session.train_size,
            top=top,
            against=against,
            verdict=_verdict(top, against, self.session.task.loss.lower_is_better),
            key=self.key,
            run_id=self._open_run(),
            tracking_uri=self.session.store.uri,
            fingerprint=self.session.fingerprint,
        )

    def _log_report(self, report: NasReport) -> None:
        """The figure and the table to the search's run, which ends FINISHED."""
        import textwrap

        from robustcli.reporting.plots import study_figure

        self._open_run()
        labels = {}
        for r in report.assessed:  # long descriptions wrapped: the boxes keep their room
            label = f"{r.name} (trial {r.trial})" if r.trial is not None else f"{r.name} (against)"
            labels[textwrap.fill(label, 34)] = r
        with tempfile.TemporaryDirectory() as tmp:
            png = study_figure(
                Path(tmp) / "nas.png",
                title=f"{report.task}: NAS picks ({report.trials} trials, {report.sampler})\n"
                f"over {report.instances} fresh instances each, train size {report.train_size}",
                losses={label: r.losses for label, r in labels.items()},
                marks={label: r.trial_loss for label, r in labels.items() if r.trial_loss is not None},
                marks_label="the trial's single training",
                loss_name=report.loss["name"],
            )
            figure = Path(png).read_bytes()
        table = json.dumps(report.as_dict(), indent=1, default=str, allow_nan=True).encode()
        report.figure = "nas.png"
        best = report.top[0]
        metrics = {"trials": report.trials, "best_trial_loss": best.trial_loss, "best_trial_mean": best.mean}
        self.runs.finish(table, figure, metrics, step=report.trials, verdict=report.verdict)


def _verdict(top: list[NasRow], against: NasRow | None, lower_is_better: bool) -> str:
    """One sentence: how the best single run fares over fresh instances, and against the reference."""
    best = top[0]

    def fmt(x: Any) -> str:
        return f"{x:.4g}" if isinstance(x, float) and math.isfinite(x) else "-"

    text = (f"best single run: trial {best.trial} ({best.name}), loss {fmt(best.trial_loss)}; over "
            f"{best.instances} fresh instances its mean is {fmt(best.mean)} (std {fmt(best.std)})")  # fmt: skip
    if against is not None and against is not best:
        better = (against.mean < best.mean) == lower_is_better
        steadier = against.std < best.std
        text += (f"; {against.name}: mean {fmt(against.mean)} (std {fmt(against.std)}), "
                 f"{'better' if better else 'worse'} on the mean and {'more' if steadier else 'less'} robust (std)")  # fmt: skip
    return text
