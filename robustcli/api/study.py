"""`Study`: one task, one store and one set of settings, with every question the tool answers as
a method. The CLI's commands are a face over it."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from robustcli.api._args import checked, choice, count, mapping, names, out_path, text
from robustcli.api._args import sizes as check_sizes
from robustcli.api._data import load_checked_data, loading_data
from robustcli.api._handle import StudyHandle
from robustcli.api.progress import Progress, progress_of
from robustcli.api.results import (
    Assessment,
    BaselineFits,
    CandidateInfo,
    NasOutcome,
    SelectionOutcome,
    StudyReport,
    StudyRuns,
)
from robustcli.config import StudySettings, load_settings, with_overrides
from robustcli.errors import InputError
from robustcli.execution.protocol import TrainingExecutor  # a Protocol (no torch): Study.select's hints resolve
from robustcli.wording import is_cli, opt

if TYPE_CHECKING:  # torch and the analyses load when a method needs them
    from robustcli.analyses.sample_size import SampleSizeResult
    from robustcli.analyses.variance import VarianceResult
    from robustcli.session import StudySession
    from robustcli.task import Candidate, Task
    from robustcli.tracking.mlflow_store import InstanceRecord

__all__ = ["Study", "list_candidates"]

_Result = TypeVar("_Result", covariant=True)


class _Plan(Protocol[_Result]):
    """An analysis validated and ready to train (:class:`SampleSizeAnalysis`, :class:`VarianceAnalysis`)."""

    @property
    def missing(self) -> int: ...

    def run(self, on_instance: Callable[[str, InstanceRecord], None] | None = None) -> _Result: ...


_VARY = ("both", "init", "data")


class Study(StudyHandle):
    """A study of one task: the candidates, their instances in MLflow, and the analyses over them.

    ``task`` is an installed task's name (``"synthetic"``, see :func:`list_tasks`) or a task given
    as code: a :class:`robustcli.task.Task` subclass or an instance of one, defined in the notebook
    or script (nothing to install; its code's hash is part of the study's fingerprint, so an edited
    task never reuses the instances of its earlier code). Settings take the command line's names
    (``train_size``, ``test_size``, ``seed``, ``max_epochs``, ``min_epochs``, ``engine``,
    ``task_options={...}``...); ``config`` reads a study file first. Nothing is trained or written
    until a method asks for it, and every method resumes from what the store already holds
    (instances are never trained twice under the same settings).

    Example::

        from robustcli.api import Study

        study = Study("synthetic", tracking_uri="sqlite:///mlruns/mlflow.db", train_size=200,
                      min_epochs=10, window=5, max_epochs=30)
        result = study.assess("small", instances=3)
        print(result.statistics["mean"], result.to_frame())

    ``progress``: ``False`` (default) draws nothing, ``True`` draws rich bars on stderr, or pass a
    :class:`robustcli.api.Progress`.
    """

    @checked
    def __init__(
        self,
        task: str | type[Task] | Task | None = None,
        *,
        name: str | None = None,
        tracking_uri: str | None = None,
        config: str | Path | None = None,
        progress: bool | Progress = False,
        task_options: Mapping[str, Any] | None = None,
        seed: int | None = None,
        instances: int | None = None,
        candidate: str | None = None,
        vary: str | None = None,
        train_size: int | None = None,
        test_size: int | str | None = None,
        sampling: str | None = None,
        min_epochs: int | None = None,
        window: int | None = None,
        threshold: float | None = None,
        stop_mode: str | None = None,
        max_epochs: int | None = None,
        monitor: str | None = None,
        device: str | None = None,
        engine: str | None = None,
        max_stack: int | None = None,
        threads: int | None = None,
        executor: str | None = None,
        workers: int | None = None,
        ray_address: str | None = None,
        mix_candidate_seed: bool | None = None,
    ) -> None:
        from robustcli.task import Task

        inline = task if isinstance(task, Task) or (isinstance(task, type) and issubclass(task, Task)) else None
        if inline is None and task is not None and not isinstance(task, str):
            raise InputError(f"task={task!r}: expected a task's name (a str), a robustcli.task.Task subclass or an instance of one")
        text("name", name)
        text("tracking_uri", tracking_uri)
        out_path("config", config)
        mapping("task_options", task_options)
        choice("vary", vary, _VARY)
        # types at the door (pydantic alone would read "256" as 256): counts are ints, not text
        for key, value, least in (("seed", seed, 0), ("instances", instances, 1), ("train_size", train_size, 1),
                                  ("min_epochs", min_epochs, 0), ("window", window, 2), ("max_epochs", max_epochs, 1),
                                  ("max_stack", max_stack, 1), ("threads", threads, 1), ("workers", workers, 1)):  # fmt: skip
            count(key, value, least=least)
        if test_size is not None and not isinstance(test_size, str):
            count("test_size", test_size)
        if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))):
            raise InputError(f"{opt('threshold', threshold)}: expected a number (0.10 for 10%)")
        if mix_candidate_seed is not None and not isinstance(mix_candidate_seed, bool):
            raise InputError(f"{opt('mix_candidate_seed', mix_candidate_seed)}: expected True or False")
        settings = dict(seed=seed, instances=instances, candidate=candidate, vary=vary, train_size=train_size,
                        test_size=test_size, sampling=sampling, min_epochs=min_epochs, window=window, threshold=threshold,
                        stop_mode=stop_mode, max_epochs=max_epochs, monitor=monitor, device=device, engine=engine,
                        max_stack=max_stack, threads=threads, executor=executor, workers=workers,
                        ray_address=ray_address, mix_candidate_seed=mix_candidate_seed,
                        task_options=dict(task_options) if task_options else None)  # fmt: skip
        settings["task"] = (getattr(inline, "name", None) or None) if inline is not None else task
        s = load_settings(Path(config) if config is not None else None, study=name, **settings)
        self._init(s, tracking_uri, progress, inline)

    @classmethod
    def from_settings(cls, settings: StudySettings, tracking_uri: str | None = None,
                      progress: bool | Progress = False) -> Study:  # fmt: skip
        """A study on settings already validated (what the CLI builds from a file and its options)."""
        self = cls.__new__(cls)
        self._init(settings, tracking_uri, progress)
        return self

    #: the study's hub (task, data, store, executor): what every method works through
    session: StudySession

    def _init(
        self, settings: StudySettings, tracking_uri: str | None, progress: bool | Progress, task: type[Task] | Task | None = None
    ) -> None:
        from robustcli.session import StudySession

        self.progress = progress_of(progress)
        self.session = StudySession(settings, tracking_uri, task=task)

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
    def task(self) -> Task:
        """The task's instance (the installed plugin's, or the one given)."""
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

    @checked
    def candidates(self, where: Mapping[str, Any] | Sequence[str] | None = None) -> list[CandidateInfo]:
        """The task's candidates (named first, then the space in its order), optionally only those
        whose parameters match ``where`` (``{"optimizer": "adam"}`` or ``["optimizer=adam"]``)."""
        return _candidate_infos(self.task, where)

    @checked
    def candidate_info(self, candidate: str) -> CandidateInfo:
        """One candidate by id or name: its parameters and readable description.

        Example: ``study.candidate_info("small").params``"""
        from robustcli.task import candidate_label

        cand = self.session.candidate(text("candidate", candidate, none=False))
        description = candidate_label(self.task, cand, with_id=False, use_name=False)
        return CandidateInfo(cand.id, cand.name, description, dict(cand.params))

    # -- training ------------------------------------------------------------------------------
    @checked
    def assess(self, candidate: str | None = None, *, instances: int | None = None, vary: str | None = None) -> Assessment:
        """Train the missing instances 0..N-1 of ``candidate`` (those not yet in MLflow), and the
        statistics of all N test losses with bootstrap 95% intervals (drawn with the study's seed).

        ``vary``: ``"both"`` seeds differ between instances (default), ``"init"`` only the
        initialisation, ``"data"`` only the training sample (see :meth:`variance`).

        Example: ``study.assess("small", instances=3).statistics["mean"]``"""
        from robustcli.robustness import summarize_instances
        from robustcli.task import candidate_label

        s = self.settings
        key = text("candidate", candidate) or s.candidate
        choice("vary", vary, _VARY)
        n = self._instances(instances)
        if not key:
            if is_cli():
                raise InputError(f"no candidate given: pass --candidate ID_OR_NAME (see `robust tasks show {s.task}`)")
            raise InputError("no candidate given: study.assess('small') (its id or name; see study.candidates())")
        session = self.session if vary in (None, s.vary) else self.session.variant(vary=vary)
        cand = session.candidate(key)
        load_checked_data(session, self.progress)
        known = session.known([cand.id]).get(cand.id, {})
        missing = [i for i in range(n) if i not in known]
        records = {i: r for i, r in known.items() if i < n}
        if missing:
            session.prepare_executor()  # a device or cluster that cannot train: refused before any write
            with self.progress:
                self.progress.start("assess", f"training {session.candidate_label(cand)}", len(missing))
                for _, rec in session.train([(cand, i) for i in missing]):
                    records[rec.index] = rec
                    self.progress.update("assess", advance=1, message=_instance_message(rec))
        ordered = [records[i] for i in range(n)]
        stats = summarize_instances([r.loss for r in ordered], seed=session.settings.seed).as_dict()["statistics"]
        return Assessment(
            task=str(session.settings.task),
            study=session.settings.study_name,
            candidate=cand.id,
            candidate_name=session.space.name_of(cand),
            candidate_description=candidate_label(session.task, cand, with_id=False, use_name=False),
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
            seed=session.settings.seed,
            init_seeds=[r.init_seed for r in ordered],
            data_seeds=[r.data_seed for r in ordered],
            test_size=session.test_size,
        )

    @checked
    def fit_baselines(self, *, instances: int = 5) -> BaselineFits:
        """Fit every baseline of the task on the training samples of instances 0..N-1 (the same
        draws the networks get) and log each to MLflow, where the paper's rule finds the best one.
        Like :meth:`assess`, what MLflow holds is read back: a second call fits nothing.

        Example: ``study.fit_baselines(instances=3).to_frame()``"""
        from robustcli.execution.baselines import baseline_row

        instances = self._instances(instances)
        baselines = self.task.baselines()
        if not baselines:
            raise InputError(f"task {self.settings.task!r} defines no baselines")
        load_checked_data(self.session, self.progress)
        self.session.store.client  # noqa: B018 - fail on an unreachable store before the work
        rows = [baseline_row(self.session, name, b, instances) for name, b in baselines.items()]
        return BaselineFits(str(self.settings.task), self.name, self.session.train_size, rows)

    @checked
    def select(
        self,
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
        final_instances: int | None = None,
        candidates: Sequence[str] | None = None,
        where: Mapping[str, Any] | Sequence[str] | None = None,
        sample: int | None = None,
        executor: TrainingExecutor | None = None,
    ) -> SelectionOutcome:
        """Algorithm 1: train one more instance of every surviving candidate per step, rank by the
        criteria, prune by the rule, repeat; resumes from what MLflow holds. The keywords are
        `robust select`'s options: ``rule`` (paper, halving, quantile, race, race-strict),
        ``criterion`` (``"mean"``, ``["mean", "std"]``, ``"pkg.module:function"``), ``combine``
        (lexicographic, pareto), ``warmup``, ``fraction``, ``confidence``, ``delta`` (``"1%"`` or
        a loss difference), ``budget``, ``max_steps``, ``final_instances``, ``candidates`` (ids or
        names), ``where`` (``{"optimizer": "adam"}``), ``sample`` (draw K candidates). Unset: the
        study file's, else the defaults. ``executor``: a training executor object to use instead
        of the one the settings make.

        Example: ``study.select(rule="race", criterion="mean", candidates=["small", "wide"], max_steps=4).selected``"""
        from robustcli.api.selection import run_selection

        text("rule", rule)
        names("criterion", criterion)
        names("candidates", candidates)
        for key, value in (("warmup", warmup), ("budget", budget), ("max_steps", max_steps), ("sample", sample)):
            count(key, value)
        count("final_instances", final_instances, least=0)
        if isinstance(where, Mapping):
            where = [f"{k}={v}" for k, v in mapping("where", where).items()]
        elif where is not None:
            where = names("where", where)
        given = dict(rule=rule, criterion=criterion, combine=combine, warmup=warmup, fraction=fraction,
                     confidence=confidence, delta=delta, baseline_margin=baseline_margin, budget=budget,
                     max_steps=max_steps, final_instances=final_instances, candidates=candidates, where=where,
                     sample=sample)  # fmt: skip
        session = self._with(selection={k: v for k, v in given.items() if v is not None})
        return run_selection(session, self.progress, executor=executor)

    # -- the paper's analyses ------------------------------------------------------------------
    @checked
    def sample_size(
        self,
        candidates: Sequence[str] | str,
        sizes: Sequence[int] | str | None = None,
        *,
        instances: int | None = None,
        baselines: bool = True,
        out: str | Path | None = None,
    ) -> SampleSizeResult:
        """Loss against training-sample size (the paper's Figures 4-6): ``candidates`` and the task's
        baselines at each size (a list ``[50, 100, 200]``, or ``"100:32000:45"``: 45 log-spaced
        sizes; default: the study file's ``sizes``), N instances each. The test sample is the
        study's ``test_size`` (``"train"`` for the paper's). Logged as an analysis run with its table
        and figure (``out``: the figure also written there).

        Example: ``study.sample_size(["small"], [64, 128], instances=2).to_frame()``"""
        from robustcli.analyses.sample_size import SampleSizeAnalysis

        wanted_names = names("candidates", candidates, none=False)
        if sizes is None:
            sizes = self.settings.sample_size.sizes
        if sizes is None:
            raise InputError(f"no {opt('sizes')} given: pass a list like [50, 100, 200] or a range like '100:32000:45' "
                             "(or set sizes in the study file)")  # fmt: skip
        wanted = check_sizes(sizes)
        n = self._instances(instances)
        if not isinstance(baselines, bool):
            raise InputError(f"{opt('baselines', baselines)}: expected True or False")
        target = _checked_out(out_path("out", out))
        with loading_data(self.session, self.progress):
            plan = SampleSizeAnalysis(self.session, wanted_names, wanted, n, baselines=baselines)
        return plan.log(self._run_plan(plan), target)

    @checked
    def variance(self, candidate: str | None = None, *, instances: int | None = None, out: str | Path | None = None) -> VarianceResult:
        """Where the spread comes from (Figure 7): N instances with both seeds varying, N with only
        the initialisation and N with only the training sample varying; their standard deviations
        and shares.

        Example: ``study.variance("small", instances=3).as_dict()["std_both"]``"""
        from robustcli.analyses.variance import VarianceAnalysis

        key = text("candidate", candidate) or self.settings.candidate
        n = self._instances(instances, least=2)
        target = _checked_out(out_path("out", out))
        with loading_data(self.session, self.progress):
            plan = VarianceAnalysis(self.session, key, n)
        return plan.log(self._run_plan(plan), target)

    @checked
    def nas(self, *, trials: int | None = None, top: int | None = None, sampler: str | None = None,
            against: str | None = None, instances: int | None = None) -> NasOutcome:  # fmt: skip
        """A neural-architecture search with Optuna (one training per trial), then its ``top`` best
        trials assessed over N fresh instances each and set against ``against`` (a candidate, or
        ``"selected"``): is the best single run the robust choice? (the paper's Figure 18).

        Example: ``study.nas(trials=4, top=1, against="small", instances=2).verdict``"""
        from robustcli.analyses.nas import NasSearch

        count("trials", trials)
        count("top", top)
        choice("sampler", sampler, ("tpe", "random"))
        text("against", against)
        self._instances(instances)
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
    @checked
    def runs(self) -> StudyRuns:
        """Every instance the study holds, as one table (``.to_frame()``): its candidate (id and
        name), index, seeds, settings (train size, what varied, fingerprint), loss, status, stop
        reason, epochs, seconds and run id; all settings, not only this Study's (as Optuna's
        ``trials_dataframe()``).

        Example: ``study.runs().to_frame().groupby("name")["loss"].mean()``"""
        from robustcli.api.store import study_runs

        return study_runs(self.name, tracking_uri=self.tracking_uri, fingerprint=self.fingerprint)

    @checked
    def report(self, out: str | Path | None = None, *, top: int = 12) -> StudyReport:
        """The study read back from MLflow: box plots, the selection's path, summaries, the
        analyses' sections, as an offline HTML page (or a PNG); see :func:`robustcli.api.build_report`.

        Example: ``study.report("synthetic.html").out``"""
        from robustcli.api.report import build_report

        return build_report(self.name, out=out, top=top, tracking_uri=self.tracking_uri, progress=self.progress)

    # -- helpers -------------------------------------------------------------------------------
    def _instances(self, instances: int | None, least: int = 1) -> int:
        """``instances`` (the settings' if None) checked as the settings check it: within bounds."""
        if instances is None:
            return self.settings.instances
        count("instances", instances, least=least)
        return with_overrides(self.session.given, instances=instances).instances

    def _with(self, **updates: Any) -> StudySession:
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

    def _run_plan(self, plan: _Plan[_Result]) -> _Result:
        """Train what an analysis plan misses under the progress bar, then its result."""
        with self.progress:
            self.progress.start("analysis", "training", plan.missing)

            def done(label: str, rec: InstanceRecord) -> None:
                self.progress.update("analysis", advance=1, description=f"training ({label})", message=_instance_message(rec))

            return plan.run(done)


def _checked_out(out: str | Path | None) -> Path | None:
    """An analysis's ``out`` figure, refused before anything trains if it cannot be written."""
    from robustcli.outputs import check_output_file

    return check_output_file(out) if out is not None else None


def _instance_message(rec: InstanceRecord) -> str:
    if rec.status == "finished":
        return f"#{rec.index}: {rec.loss:.5g} ({rec.stop_reason}, {rec.epochs} ep)"
    return f"#{rec.index}: failed ({rec.stop_reason})"


def _candidate_infos(task: Task, where: Mapping[str, Any] | Sequence[str] | None) -> list[CandidateInfo]:
    from robustcli.config import parse_pairs
    from robustcli.task import candidate_label, filter_candidates

    space = task.search_space()
    named = list(space.named.values())
    seen = {c.id for c in named}
    cands: Iterable[Candidate] = named + [c for c in space if c.id not in seen]
    if where:
        wanted = dict(where) if isinstance(where, Mapping) else (parse_pairs(list(where), "--where") or {})
        shown = " ".join(f"{k}={v}" for k, v in wanted.items())
        cands = filter_candidates(list(cands), wanted, f"--where {shown}")
    describe = lambda c: candidate_label(task, c, with_id=False, use_name=False)  # noqa: E731
    return [CandidateInfo(c.id, c.name, describe(c), dict(c.params)) for c in cands]


@checked
def list_candidates(task: str | type[Task] | Task, *, where: Mapping[str, Any] | Sequence[str] | None = None,
                    task_options: Mapping[str, Any] | None = None) -> list[CandidateInfo]:  # fmt: skip
    """A task's candidates without a store (an installed task's name, or a Task class or object).

    Example: ``list_candidates("synthetic", where={"hidden": 16})[0].description``"""
    from robustcli.plugins import load_task

    options = mapping("task_options", task_options)
    if isinstance(task, str):
        return _candidate_infos(load_task(task, options), where)
    from robustcli.task_code import inline_task

    return _candidate_infos(inline_task(task, options)[0], where)

