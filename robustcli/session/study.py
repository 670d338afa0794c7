"""A study session: the task, its data, the store, and the one place instances are trained and logged.

Everything is validated before anything is written: the experiment is created only when the
first finished instance is about to be logged, so a refused command leaves the store untouched.
Only this (coordinating) process writes to MLflow; executors return results. Finished instances
are handed to the store as they come and written by its background writer; :meth:`StudySession.train`
returns only once they are all committed (see :mod:`robustcli.tracking.writer`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from robustcli import wording
from robustcli.config import StudySettings
from robustcli.errors import InputError
from robustcli.execution.protocol import TrainingExecutor
from robustcli.plugins import build_task, load_task_class, load_task_data
from robustcli.task import Candidate, SearchSpace, Task, TaskData
from robustcli.tracking import tags as T
from robustcli.tracking.mlflow_store import InstanceRecord, MlflowStore, resolve_tracking_uri

if TYPE_CHECKING:  # torch: training loads when an instance trains
    from robustcli.training.instance import InstanceResult, InstanceSpec

__all__ = ["StudySession"]


class StudySession:
    """``task``: a Task class or object given as code (the API's ``Study(MyTask)``), used instead of
    the installed task ``settings.task`` names; its code's hash joins the fingerprint."""

    def __init__(
        self, settings: StudySettings, tracking_uri: str | None = None, task: type[Task] | Task | None = None
    ) -> None:
        if not settings.task and task is None:
            raise InputError(wording.no_task())
        # first: a tracking URI that cannot work is refused before the task (and torch) loads
        self.store = MlflowStore(resolve_tracking_uri(tracking_uri, settings.tracking_uri))
        self._task_source = task
        if task is not None:
            from robustcli.task_code import inline_task

            self.task, self.plugin, code = inline_task(task, settings.task_options)
            settings = settings.model_copy(update={"task": self.task.name, "task_code": code})
        else:
            cls, self.plugin = load_task_class(settings.task)
            self.task = build_task(cls, self.plugin, settings.task_options)
        #: the settings as given (before the task's defaults fill them in): :meth:`variant` starts from them
        self.given = settings
        self.settings = self._settled(settings)
        self.fingerprint = self.settings.fingerprint()
        self._data: TaskData | None = None
        self._exp_id: str | None = None
        self._experiment_ready = False
        self._candidate_runs: dict[str, str] = {}
        self._space: SearchSpace | None = None
        self._executor: TrainingExecutor | None = None

    def _settled(self, given: StudySettings) -> StudySettings:
        """``given`` with the task's defaults filled in: its sizes, and the task options that decide
        its data (see Task.data_options), so that the fingerprint does not depend on how they were given."""
        settings = _resolved(given, type(self.task))
        implied = {k: v for k, v in self.task.data_options().items() if k not in settings.task_options}
        if implied:
            settings = settings.model_copy(update={"task_options": {**settings.task_options, **implied}})
        return settings

    def variant(self, *, vary: str | None = None, **training: Any) -> StudySession:
        """The same study under other settings (``train_size``, ``test_size``... of the training
        settings as given, or another ``vary``): its own fingerprint, instances and candidate runs,
        sharing this session's store, task, data and executor (a study over many settings loads
        its data once)."""
        update: dict[str, Any] = {"training": self.given.training.model_copy(update=training)}
        if vary is not None:
            update["vary"] = vary
        return self.with_settings(self.given.model_copy(update=update))

    def with_settings(self, given: StudySettings) -> StudySession:
        """This session under other settings of the same task and task options (sharing its store,
        task, data and executor); another task or other options make a session of their own."""
        if (given.task, given.task_options) != (self.given.task, self.given.task_options):
            return StudySession(given, self.store.uri, task=self._task_source)
        other = copy.copy(self)
        other.given = given
        other.settings = self._settled(given)
        other.fingerprint = other.settings.fingerprint()
        other._candidate_runs = {}
        if given.study_name != self.given.study_name:  # another experiment
            other._exp_id, other._experiment_ready = None, False
        return other

    # -- what the study is about -------------------------------------------------------------
    @property
    def space(self) -> SearchSpace:
        if self._space is None:
            self._space = self.task.search_space()
        return self._space

    def candidate(self, key: str) -> Candidate:
        """A candidate by name or id: the task's space, else one the study logged (a NAS trial's pick
        lies outside the grid: `robust assess` takes its id too)."""
        from robustcli.errors import UnknownNameError

        try:
            return self.space.get(key)
        except UnknownNameError:
            exp_id = self.existing_experiment()
            logged = self.store.logged_candidates(exp_id, key) if exp_id is not None else {}
            if key not in logged:
                raise
            return logged[key]

    @property
    def data(self) -> TaskData:
        if self._data is None:
            self._data = load_task_data(self.task, str(self.settings.task))
        return self._data

    @property
    def train_size(self) -> int:
        return int(self.settings.training.train_size or self.task.default_train_size)

    def validate_sizes(self) -> None:
        """Refuse a study of another task and sizes the data cannot give, before anything is written."""
        self.check_study_task()
        self.data  # noqa: B018 - a bad task option or data file fails here, before any training
        t = self.settings.training
        pool = self.data.pool_size
        if t.sampling == "without-replacement" and self.train_size > pool:
            raise InputError(
                f"{wording.opt('train-size', self.train_size)} exceeds the training pool of {pool} examples "
                f"of task {self.settings.task!r} (sampling without replacement; use bootstrap or a smaller size)"
            )
        if self.train_size > pool:
            raise InputError(
                f"{wording.opt('train-size', self.train_size)} exceeds the training pool of {pool} examples of task "
                f"{self.settings.task!r}: a bootstrap sample larger than the pool repeats examples without adding any; "
                f"choose at most {pool}"
            )
        if isinstance(t.test_size, int) and t.test_size > self.data.test_size:
            raise InputError(f"{wording.opt('test-size', t.test_size)} exceeds the test set of {self.data.test_size} examples")

    def prepare_executor(self) -> TrainingExecutor:
        """Refuse a device or an executor that cannot run (no GPU for --device cuda, an unreachable
        or too small Ray cluster) before anything is written: the executor is made and, for Ray,
        connected now. Returns it (variants of this session can train with it)."""
        from robustcli.training.instance import resolve_device

        if self.settings.training.executor != "ray":  # Ray's workers have the devices: checked there
            resolve_device(self.settings.training.device)
        if self._executor is None:
            self._executor = self.executor()
        self._executor.prepare()
        return self._executor

    def check_study_task(self) -> None:
        exp_id = self.existing_experiment()
        if exp_id is None:
            return
        other = self.store.client.get_experiment(exp_id).tags.get(T.TASK)
        if other is not None and other != self.settings.task:
            raise InputError(
                f"study {self.settings.study_name!r} belongs to task {other!r}, not {self.settings.task!r}; "
                f"choose another {wording.opt('study')}"
            )

    # -- seeds and specs --------------------------------------------------------------------
    def spec(self, candidate: Candidate, index: int) -> InstanceSpec:
        from robustcli.training.instance import InstanceSpec
        from robustcli.training.seeds import study_seeds

        s = self.settings
        seeds = study_seeds(s.seed, index, candidate.id if s.mix_candidate_seed else None, s.vary)
        return InstanceSpec(index, seeds.init_seed, seeds.data_seed, self.train_size, self.test_size)

    @property
    def test_size(self) -> int | None:
        """Scored test examples per instance; None for the whole test set."""
        size = self.settings.training.test_size
        return size if isinstance(size, int) else None

    def settings_json(self) -> str:
        keep = {"task", "seed", "mix_candidate_seed", "vary", "task_options", "training"}
        if self.settings.task_code is not None:
            keep.add("task_code")
        return json.dumps(self.settings.model_dump(mode="json", include=keep), sort_keys=True)

    # -- the store --------------------------------------------------------------------------
    def existing_experiment(self) -> str | None:
        if self._exp_id is None and not self.store.exists():
            return None  # reading must not create the store: a refused command writes nothing
        if self._exp_id is None:
            self._exp_id = self.store.find_experiment(self.settings.study_name)
        return self._exp_id

    def experiment(self) -> str:
        """The study's experiment, created (or, made by an earlier version, brought up to date) on first write."""
        if not self._experiment_ready:
            self._experiment_ready = True
            self._exp_id = self.store.ensure_experiment(
                self.settings.study_name, tags={T.TASK: str(self.settings.task)}
            )
        return self._exp_id

    def ui_path(self) -> str | None:
        """Where `mlflow ui` compares this study's candidates, once it has an experiment."""
        exp_id = self.existing_experiment()
        return self.store.ui_path(exp_id) if exp_id is not None else None

    def known(self, candidate_ids: Iterable[str] | None = None) -> dict[str, dict[int, InstanceRecord]]:
        exp_id = self.existing_experiment()
        if exp_id is None:
            return {}
        return self.store.instances(exp_id, self.fingerprint, candidate_ids)

    def candidate_label(self, candidate: Candidate) -> str:
        """:func:`~robustcli.task.candidate_label` as this study's run names and progress lines show
        it: without the id (the runs tag it), its name also for a nameless copy of a named candidate,
        a description capped at 200 characters (run names are short), the id if that is empty."""
        from robustcli.task import candidate_label

        return self.space.name_of(candidate) or candidate_label(self.task, candidate, with_id=False)[:200] or candidate.id

    def _candidate_spec(self, candidate: Candidate) -> dict[str, Any]:
        """What the candidate's run under these settings is made of (its start: its first instance's)."""
        s, t = self.settings, self.settings.training
        # the settings beside the name: one candidate has a run per setting (a sample-size analysis's
        # sizes, --vary), and `mlflow ui` lists them side by side
        name = f"{self.candidate_label(candidate)} {self.settings_label()}"
        return self.store.candidate_spec(
            task=str(s.task),
            candidate=candidate,
            fingerprint=self.fingerprint,
            name=name,
            settings_params={
                "train_size": self.train_size,
                "test_size": t.test_size or "all",
                "sampling": t.sampling,
                "study_seed": s.seed,
                "vary": s.vary,
            },
        )

    def settings_label(self) -> str:
        """What tells this setting's runs of a candidate from another's, in a run name: '[train 256]',
        '[train 256, init varies]'."""
        s = self.settings
        parts = [f"train {self.train_size}"]
        if self.test_size is not None and self.test_size != self.train_size:
            parts.append(f"test {self.test_size}")
        if s.vary != "both":
            parts.append(f"{s.vary} varies")
        return f"[{', '.join(parts)}]"

    def candidate_run(self, candidate: Candidate) -> str:
        """The candidate's run under these settings (its statistics summarise exactly its children)."""
        if candidate.id not in self._candidate_runs:
            self._candidate_runs[candidate.id] = self.store.candidate_run(self.experiment(), self._candidate_spec(candidate))
        return self._candidate_runs[candidate.id]

    def _claim_key(self, candidate: Candidate, index: int) -> str:
        return f"instance:{self.settings.study_name}:{self.fingerprint}:{candidate.id}:{index}"

    def _update_candidate_runs(self, candidates: Iterable[Candidate]) -> None:
        """Each candidate run's statistics, of exactly its instances under these settings."""
        by_id = {c.id: c for c in candidates}
        if not by_id:
            return
        known = self.known(list(by_id) if len(by_id) == 1 else None)
        for cid, cand in by_id.items():
            records = list(known.get(cid, {}).values())
            if records:
                self.store.log_candidate_statistics(self.candidate_run(cand), records)

    # -- training ---------------------------------------------------------------------------
    def executor(self) -> TrainingExecutor:
        """The executor the settings ask for (where: in process, a local pool, Ray; how: engine)."""
        from robustcli.execution.factory import make_executor, resolved_executor

        t = self.settings.training
        if resolved_executor(t) == "inprocess":
            import torch

            from robustcli.execution.cores import default_threads

            # the cores this process may use (its cgroup's quota included), not torch's count of the machine's
            torch.set_num_threads(t.threads or default_threads())
        return make_executor(self.settings)

    def train(
        self,
        requests: Sequence[tuple[Candidate, int]],
        *,
        on_result: Callable[[Candidate, InstanceResult], None] | None = None,
        executor: TrainingExecutor | None = None,
    ) -> Iterator[tuple[Candidate, InstanceRecord]]:
        """Train each (candidate, index), log it the moment it finishes, yield what was logged.

        Each instance is claimed first (a record lock of the store, :mod:`robustcli.tracking.locks`):
        one that another process on this machine is training is not trained twice; this one
        waits for it and yields the other's result (or trains it, if the other died first).
        """
        locks = self.store.locks
        claimed: list[str] = []
        try:
            mine, theirs = [], []
            for cand, index in requests:
                key = self._claim_key(cand, index)
                if locks.try_lock(key):
                    claimed.append(key)
                    mine.append((cand, index))
                else:
                    theirs.append((cand, index))
            yield from self._train_claimed(mine, on_result, executor)
            # written: let go before waiting for others, so two processes never wait for each other
            while claimed:
                locks.unlock(claimed.pop())
            for cand, index in theirs:  # being trained by another process: wait for it, then read it
                key = self._claim_key(cand, index)
                locks.lock(key)
                claimed.append(key)
                yield from self._train_claimed([(cand, index)], on_result, executor)
                locks.unlock(claimed.pop())
        finally:
            for key in claimed:
                locks.unlock(key)

    def _train_claimed(
        self,
        requests: Sequence[tuple[Candidate, int]],
        on_result: Callable[[Candidate, InstanceResult], None] | None,
        executor: TrainingExecutor | None,
    ) -> Iterator[tuple[Candidate, InstanceRecord]]:
        """Train claimed instances (those another process logged meanwhile are read instead)."""
        import time

        from robustcli.tracking.provenance import provenance_tags

        if not requests:
            return
        logged = self.known(sorted({c.id for c, _ in requests})) if self.existing_experiment() else {}
        todo = []
        for cand, index in requests:
            rec = logged.get(cand.id, {}).get(index)
            if rec is not None:
                yield cand, rec  # finished by another process between the caller's read and the claim
            else:
                todo.append((cand, index))
        if not todo:
            return
        if executor is None:
            if self._executor is None:
                self._executor = self.executor()
            executor = self._executor
        data = self.data
        device = threads = policy = None
        tags: dict[str, str] = {}
        jobs = [(c, self.spec(c, i)) for c, i in todo]
        settings_json = self.settings_json()
        touched: dict[str, Candidate] = {}
        # A run handed to the store is journaled at once and written by a background thread
        # (see robustcli.tracking.writer): flush before returning, so that what was yielded is
        # in MLflow for the next reader. On an exception (Ctrl-C included) flush too, without
        # hiding the exception: whatever cannot be written stays in the journal for the next command.
        try:
            for candidate, result in executor.run(self.task, data, jobs, self.settings.training):
                end = int(time.time() * 1000)
                if (device, threads, policy) != (result.device, result.threads, result.wait_policy):
                    device, threads, policy = result.device, result.threads, result.wait_policy
                    tags = provenance_tags(self.plugin.distribution, device, threads, policy)
                key = self.store.log_instance(
                    self.experiment(),
                    self._candidate_spec(candidate),
                    candidate=candidate,
                    name=f"{self.candidate_label(candidate)}/{result.spec.index}",
                    result=result,
                    end_time=end,
                    fingerprint=self.fingerprint,
                    settings_json=settings_json,
                    provenance={
                        **tags,
                        T.TASK: str(self.settings.task),
                        T.STUDY_NAME: self.settings.study_name,
                        T.LOSS_NAME: self.task.loss.name,
                    },
                )
                touched[candidate.id] = candidate
                if on_result is not None:
                    on_result(candidate, result)
                yield candidate, InstanceRecord.from_result(key, candidate.id, result, end)
        except BaseException:
            try:
                self.store.flush()
            except Exception:  # noqa: BLE001 - the journal keeps the runs; report the first error
                pass
            raise
        self.store.flush()
        self._update_candidate_runs(touched.values())


def _resolved(settings: StudySettings, cls: type[Task]) -> StudySettings:
    """``settings`` with the task's default sizes filled in (and ``test_size = "train"`` as the
    training sample's size), so that fingerprints do not depend on how they were given."""
    train_size = settings.training.train_size or cls.default_train_size
    test_size = settings.training.test_size or cls.default_test_size
    test_size = train_size if test_size == "train" else test_size
    training = settings.training.model_copy(update={"train_size": train_size, "test_size": test_size})
    return settings.model_copy(update={"training": training})
