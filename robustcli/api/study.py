"""`Study`: one task, one store and one set of settings, with every question the tool answers as
a method. The CLI's commands are a face over it."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from robustcli.api._data import load_checked_data, loading_data
from robustcli.api.progress import Progress, progress_of
from robustcli.api.results import Assessment, BaselineFits, CandidateInfo, NasOutcome, SelectionOutcome
from robustcli.config import SelectionSettings, StudySettings, load_settings, with_overrides
from robustcli.errors import InputError

__all__ = ["Study", "list_candidates"]


class Study:
    """A study of one task: the candidates, their instances in MLflow, and the studies over them.

    Settings take the command line's names (``train_size``, ``test_size``, ``seed``, ``max_epochs``,
    ``min_epochs``, ``engine``, ``task_options={...}``...); ``config`` reads a study file first.
    Nothing is trained or written until a method asks for it, and every method resumes from what
    the store already holds (instances are never trained twice under the same settings).

    Example::

        from robustcli.api import Study

        study = Study("synthetic", tracking_uri="sqlite:///mlruns/mlflow.db", train_size=200, max_epochs=30)
        result = study.assess("small", instances=5)
        print(result.statistics["mean"], result.to_frame())

    ``progress``: ``False`` (default) draws nothing, ``True`` draws rich bars on stderr, or pass a
    :class:`robustcli.api.Progress`.
    """

    def __init__(
        self,
        task: str | None = None,
        *,
        name: str | None = None,
        tracking_uri: str | None = None,
        config: str | Path | None = None,
        progress: bool | Progress = False,
        **settings: Any,
    ) -> None:
        s = load_settings(Path(config) if config is not None else None, task=task, study=name, **settings)
        self._init(s, tracking_uri, progress)

    @classmethod
    def from_settings(cls, settings: StudySettings, tracking_uri: str | None = None,
                      progress: bool | Progress = False) -> Study:  # fmt: skip
        """A study on settings already validated (what the CLI builds from a file and its options)."""
        self = cls.__new__(cls)
        self._init(settings, tracking_uri, progress)
        return self

    def _init(self, settings: StudySettings, tracking_uri: str | None, progress: bool | Progress) -> None:
        from robustcli.execution.session import StudySession

        self.session = StudySession(settings, tracking_uri)
        self.progress = progress_of(progress)

    # -- what the study is ---------------------------------------------------------------------
    @property
    def settings(self) -> StudySettings:
        """The settings, with the task's defaults filled in."""
        return self.session.settings

    @property
    def name(self) -> str:
        """The study's name: its MLflow experiment."""
        return self.session.settings.study_name

    @property
    def task(self) -> Any:
        """The task plugin's instance."""
        return self.session.task

    @property
    def tracking_uri(self) -> str:
        return self.session.store.uri

    @property
    def fingerprint(self) -> str:
        """What makes two instances comparable (task, options, seed and training settings), hashed."""
        return self.session.fingerprint

    def __repr__(self) -> str:
        return f"Study({self.settings.task!r}, name={self.name!r}, tracking_uri={self.tracking_uri!r})"

    def candidates(self, where: Mapping[str, Any] | Sequence[str] | None = None) -> list[CandidateInfo]:
        """The task's candidates (named first, then the space in its order), optionally only those
        whose parameters match ``where`` (``{"optimizer": "adam"}`` or ``["optimizer=adam"]``)."""
        return _candidate_infos(self.task, where)

    def describe(self, candidate: str) -> CandidateInfo:
        """One candidate by id or name: its parameters and readable description."""
        from robustcli.task import readable_name

        cand = self.session.candidate(candidate)
        return CandidateInfo(cand.id, cand.name, readable_name(self.task, cand, use_name=False), dict(cand.params))

    # -- training ------------------------------------------------------------------------------
    def assess(self, candidate: str | None = None, instances: int | None = None, vary: str | None = None) -> Assessment:
        """Train the missing instances 0..N-1 of ``candidate`` (those not yet in MLflow), and the
        statistics of all N test losses with bootstrap 95% intervals (drawn with the study's seed).

        ``vary``: ``"both"`` seeds differ between instances (default), ``"init"`` only the
        initialisation, ``"data"`` only the training sample (see :meth:`variance`)."""
        from robustcli.robustness import summarize_instances
        from robustcli.task import labelled, readable_name

        s = self.settings
        n = self._instances(instances)
        key = candidate or s.candidate
        if not key:
            raise InputError(f"no candidate given: pass --candidate ID_OR_NAME (see `robust tasks show {s.task}`)")
        session = self.session if vary in (None, s.vary) else self.session.variant(vary=vary)
        cand = session.candidate(key)
        load_checked_data(session, self.progress)
        known = session.known([cand.id]).get(cand.id, {})
        missing = [i for i in range(n) if i not in known]
        records = {i: r for i, r in known.items() if i < n}
        if missing:
            session.prepare_executor()  # a device or cluster that cannot train: refused before any write
            with self.progress:
                self.progress.start("assess", f"training {labelled(session.task, cand)}", len(missing))
                for _, rec in session.train([(cand, i) for i in missing]):
                    records[rec.index] = rec
                    self.progress.update("assess", advance=1, message=_instance_message(rec))
        ordered = [records[i] for i in range(n)]
        stats = summarize_instances([r.loss for r in ordered], seed=session.settings.seed).as_dict()["statistics"]
        return Assessment(
            task=str(session.settings.task),
            study=session.settings.study_name,
            candidate=cand.id,
            candidate_name=cand.name,
            candidate_description=readable_name(session.task, cand),
            loss={"name": session.task.loss.name, "formula": session.task.loss.formula},
            instances=n,
            # what this process trained: an instance another process trained meanwhile was waited for and read
            trained_now=sum(r.fresh for r in ordered),
            failed=sum(r.status == "failed" for r in ordered),
            spiked=sum(r.spiked for r in ordered),
            stop_reasons=dict(Counter(r.stop_reason for r in ordered)),
            train_size=session.train_size,
            mean_epochs=sum(r.epochs for r in ordered) / n,
            mean_seconds=sum(r.seconds for r in ordered) / n,
            losses=[r.loss if math.isfinite(r.loss) else None for r in ordered],
            run_ids=[session.store.run_id(r.run_id) for r in ordered],
            statistics=stats,
            tracking_uri=session.store.uri,
            mlflow_ui=session.ui_path(),
            fingerprint=session.fingerprint,
            vary=session.settings.vary,
        )

    def fit_baselines(self, instances: int = 5) -> BaselineFits:
        """Fit every baseline of the task on the training samples of instances 0..N-1 (the same
        draws the networks get), log each to MLflow (where the paper's rule finds the best one)."""
        from robustcli.execution.baselines import fit_baseline

        instances = self._instances(instances)
        baselines = self.task.baselines()
        if not baselines:
            raise InputError(f"task {self.settings.task!r} defines no baselines")
        load_checked_data(self.session, self.progress)
        self.session.store.client  # noqa: B018 - fail on an unreachable store before the work
        rows = [fit_baseline(self.session, name, b, instances) for name, b in baselines.items()]
        return BaselineFits(str(self.settings.task), self.name, self.session.train_size, rows)

    def select(self, *, engine: Any = None, **selection: Any) -> SelectionOutcome:
        """Algorithm 1: train one more instance of every surviving candidate per step, rank by the
        criteria, prune by the rule, repeat; resumes from what MLflow holds. Keywords as `robust
        select`'s options: ``rule`` (paper, halving, quantile, race, race-strict), ``criterion``
        (``"mean"``, ``["mean", "std"]``, ``"pkg.module:function"``), ``combine``, ``warmup``,
        ``fraction``, ``confidence``, ``delta``, ``budget``, ``max_steps``, ``final_instances``,
        ``candidates``, ``where``, ``sample``.

        Example: ``study.select(rule="race", criterion="mean", max_steps=10).selected``"""
        from robustcli.api.selection import run_selection

        unknown = sorted(set(selection) - set(SelectionSettings.model_fields))
        if unknown:
            raise InputError(f"Study.select() got an unknown keyword {unknown[0]!r}")
        session = self._with(selection={k: v for k, v in selection.items() if v is not None})
        return run_selection(session, self.progress, engine=engine)

    # -- the paper's studies -------------------------------------------------------------------
    def sample_size(
        self,
        candidates: Sequence[str] | str,
        sizes: Sequence[int] | str | None = None,
        instances: int | None = None,
        *,
        baselines: bool = True,
        out: str | Path | None = None,
    ) -> Any:
        """Loss against training-sample size (the paper's Figures 4-6): ``candidates`` and the task's
        baselines at each size (a list, or ``"100:32000:45"``; default: the study file's ``sizes``),
        N instances each. The test sample is
        the study's ``test_size`` (``"train"`` for the paper's). Logged as a study run with its
        table and figure; returns a :class:`robustcli.studies.sample_size.SampleSizeResult`."""
        from robustcli.studies.sample_size import SampleSizeStudy, parse_sizes

        if sizes is None:
            sizes = self.settings.sample_size.sizes
        if sizes is None:
            raise InputError("no --sizes given: pass a list like 50,100,200 or a range like 100:32000:45 "
                             "(or set sizes in the study file)")
        wanted = parse_sizes(sizes) if isinstance(sizes, str) else [int(x) for x in sizes]
        names = [candidates] if isinstance(candidates, str) else list(candidates)
        out = _checked_out(out)
        with loading_data(self.session, self.progress):
            plan = SampleSizeStudy(self.session, names, wanted, self._instances(instances), baselines=baselines)
        return plan.log(self._run_plan(plan), out)

    def variance(self, candidate: str | None = None, instances: int | None = None, *, out: str | Path | None = None) -> Any:
        """Where the spread comes from (Figure 7): N instances with both seeds varying, N with only
        the initialisation and N with only the training sample varying; their standard deviations
        and shares. Returns a :class:`robustcli.studies.variance.VarianceResult`."""
        from robustcli.studies.variance import VarianceStudy

        out = _checked_out(out)
        with loading_data(self.session, self.progress):
            plan = VarianceStudy(self.session, candidate or self.settings.candidate, self._instances(instances, least=2))
        return plan.log(self._run_plan(plan), out)

    def nas(self, *, trials: int | None = None, top: int | None = None, sampler: str | None = None,
            against: str | None = None, instances: int | None = None) -> NasOutcome:  # fmt: skip
        """A neural-architecture search with Optuna (one training per trial), then its ``top`` best
        trials assessed over N fresh instances each and set against ``against`` (a candidate, or
        ``"selected"``): is the best single run the robust choice? (the paper's Figure 18)."""
        from robustcli.studies.nas import NasSearch

        session = self._with(nas={k: v for k, v in dict(trials=trials, top=top, sampler=sampler, against=against).items()
                                  if v is not None}, instances=instances)  # fmt: skip
        search = NasSearch(session, session.settings.nas)
        with loading_data(self.session, self.progress):
            search.prepare()
        labels = {"trial": "search (trials)", "instance": "assessment (instances)"}

        def update(phase: str, done: int, total: int, message: str) -> None:
            self.progress.update(phase, completed=done, total=total, message=message, description=labels.get(phase, phase))

        with self.progress:
            return NasOutcome(search.run(progress=update))

    # -- reading back --------------------------------------------------------------------------
    def report(self, out: str | Path | None = None, top: int = 12) -> Any:
        """The study read back from MLflow: box plots, the selection's path, summaries, the
        studies' sections, as an offline HTML page (or a PNG); see :func:`robustcli.api.build_report`."""
        from robustcli.api.report import build_report

        return build_report(self.name, out=out, top=top, tracking_uri=self.tracking_uri)

    # -- helpers -------------------------------------------------------------------------------
    def _instances(self, instances: int | None, least: int = 1) -> int:
        """``instances`` (the settings' if None) checked as the settings check it: within bounds."""
        if instances is None:
            return self.settings.instances
        if isinstance(instances, bool) or not isinstance(instances, int) or instances < least:
            need = "a positive count" if least == 1 else f"at least {least} (a spread needs two instances)"
            raise InputError(f"--instances must be {need}, got {instances!r}")
        return with_overrides(self.session.given, instances=instances).instances

    def _with(self, **updates: Any) -> Any:
        """The session under settings with ``updates`` (sections as dicts, merged), validated."""
        flat: dict[str, Any] = {}
        for key, value in updates.items():
            if isinstance(value, dict):
                flat.update(value)
            elif value is not None:
                flat[key] = value
        settings = with_overrides(self.session.given, **flat)
        if settings == self.session.given:
            return self.session
        return self.session.with_settings(settings)

    def _run_plan(self, plan: Any) -> Any:
        """Train what a study plan misses under the progress bar, then its result."""
        with self.progress:
            self.progress.start("study", "training", plan.missing)

            def done(label: str, rec: Any) -> None:
                self.progress.update("study", advance=1, description=f"training ({label})", message=_instance_message(rec))

            return plan.run(done)


def _checked_out(out: str | Path | None) -> Path | None:
    """A study's ``out`` figure, refused before anything trains if it cannot be written."""
    from robustcli.outputs import check_output_file

    return check_output_file(out) if out is not None else None


def _instance_message(rec: Any) -> str:
    if rec.status == "finished":
        return f"#{rec.index}: {rec.loss:.5g} ({rec.stop_reason}, {rec.epochs} ep)"
    return f"#{rec.index}: failed ({rec.stop_reason})"


def _candidate_infos(task: Any, where: Mapping[str, Any] | Sequence[str] | None) -> list[CandidateInfo]:
    from robustcli.config import parse_pairs
    from robustcli.task import filter_candidates, readable_name

    space = task.search_space()
    named = list(space.named.values())
    seen = {c.id for c in named}
    cands: Iterable[Any] = named + [c for c in space if c.id not in seen]
    if where:
        wanted = dict(where) if isinstance(where, Mapping) else (parse_pairs(list(where), "--where") or {})
        shown = " ".join(f"{k}={v}" for k, v in wanted.items())
        cands = filter_candidates(list(cands), wanted, f"--where {shown}")
    return [CandidateInfo(c.id, c.name, readable_name(task, c, use_name=False), dict(c.params)) for c in cands]


def list_candidates(task: str, where: Mapping[str, Any] | Sequence[str] | None = None,
                    task_options: Mapping[str, Any] | None = None) -> list[CandidateInfo]:  # fmt: skip
    """A task's candidates without a store: ``list_candidates("synthetic", where={"hidden": 16})``."""
    from robustcli.plugins import load_task

    return _candidate_infos(load_task(task, dict(task_options) if task_options else None), where)
