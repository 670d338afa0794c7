"""Retrain one logged instance from what its MLflow run holds and compare it bit for bit."""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from typing import Any

from robustcli.api._args import checked
from robustcli.results import TableResult

__all__ = ["Reproduction", "reproduce_run"]


@dataclass(repr=False)
class Reproduction(TableResult):
    """``reproduce_run``: the logged and the retrained test loss, and what differs if they do."""

    run_id: str
    task: str
    candidate: str
    candidate_description: str
    instance_index: int
    logged_test_loss: float | None
    reproduced_test_loss: float | None
    logged_stop_reason: str | None
    reproduced_stop_reason: str
    logged_epochs: int
    reproduced_epochs: int
    bitwise_equal: bool
    #: recorded versions or settings that differ now: tag -> {"logged", "now"}
    differences: dict[str, dict[str, Any]]

    def summary_line(self) -> str:
        same = "bit for bit" if self.bitwise_equal else f"differs ({', '.join(self.differences) or 'no recorded cause'})"
        return (f"{self.candidate_description}/{self.instance_index} (run {self.run_id}): logged {self.logged_test_loss}, "
                f"retrained {self.reproduced_test_loss}: {same}")  # fmt: skip


def _bits(x: float) -> str:
    return struct.pack(">d", x).hex()


@checked
def reproduce_run(run_id: str, *, tracking_uri: str | None = None, device: str | None = None, task: Any = None) -> Reproduction:
    """Retrain the instance of run ``run_id`` (task, candidate, seeds and settings from the run; its
    whole stack if it trained stacked; the logged number of torch threads) and compare the test
    loss bit for bit. Nothing of the instance is written to the store. ``task``: the Task class
    (or object) of a run trained by a task given as code (``Study(MyTask)``), not installed.

    Example: ``reproduce_run(study.runs().rows[0]["run_id"]).bitwise_equal``"""
    from robustcli.config import StudySettings
    from robustcli.errors import InputError
    from robustcli.plugins import build_task, load_task_class, load_task_data
    from robustcli.task import Candidate, candidate_label
    from robustcli.tracking import tags as T
    from robustcli.tracking.mlflow_store import MlflowStore, resolve_tracking_uri
    from robustcli.tracking.provenance import COMPARED_TAGS, provenance_tags
    from robustcli.training.instance import InstanceSpec, train_instance

    store = MlflowStore(resolve_tracking_uri(tracking_uri))
    run = store.get_run(run_id)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    if tags.get(T.KIND) != T.INSTANCE:
        raise InputError(f"run {run_id} is not an instance run of robust (tag {T.KIND}={tags.get(T.KIND)!r})")
    settings = StudySettings.model_validate(json.loads(tags[T.SETTINGS_JSON]))
    if device:
        if device not in ("cpu", "cuda", "auto"):
            raise InputError(f"--device {device!r} is not valid (valid: cpu, cuda, auto)")
        settings = settings.model_copy(update={"training": settings.training.model_copy(update={"device": device})})
    if settings.task_code is not None or task is not None:  # a task given as code: the caller hands it again
        from robustcli.task_code import inline_task

        if task is None:
            raise InputError(f"run {run_id} was trained by task {settings.task!r} given as code, not installed: "
                             f"pass task=TheTaskClass")  # fmt: skip
        task, info, code = inline_task(task, settings.task_options or None)
        if code != settings.task_code:
            raise InputError(f"task={type(task).__qualname__}: its code (hash {code}) is not the code that trained run "
                             f"{run_id} (hash {settings.task_code}): it was edited since")  # fmt: skip
    else:
        cls, info = load_task_class(str(settings.task), where=f"run {run_id}")
        task = build_task(cls, info, settings.task_options)
    candidate = Candidate.from_params(json.loads(tags[T.CANDIDATE_JSON]))
    candidate = next((c for c in task.search_space().named.values() if c.id == candidate.id), candidate)  # its name
    spec = InstanceSpec(
        index=int(params["instance_index"]),
        init_seed=int(params["init_seed"]),
        data_seed=int(params["data_seed"]),
        train_size=int(params["train_size"]),
        test_size=None if params.get("test_size", "all") == "all" else int(params["test_size"]),
    )
    data = load_task_data(task, str(settings.task))
    logged_threads = tags.get(T.TORCH_THREADS, "")
    if logged_threads.isdigit():
        import torch

        # the logged thread count: some kernels sum in another order with another count
        torch.set_num_threads(int(logged_threads))
    members = _stack_members(tags.get(T.STACK, ""), candidate, task, run_id)
    if tags.get(T.ENGINE) == "stacked" and members:
        # a stacked instance is reproduced by retraining its whole stack, in the same order, with
        # the same members (instances of other candidates included)
        from robustcli.training.seeds import study_seeds
        from robustcli.training.stacked import train_stacked

        specs = []
        for member, index in members:
            seeds = study_seeds(settings.seed, index, member.id if settings.mix_candidate_seed else None, settings.vary)
            specs.append(InstanceSpec(index, seeds.init_seed, seeds.data_seed, spec.train_size, spec.test_size))
        own = [i for i, (member, index) in enumerate(members) if member.id == candidate.id and index == spec.index]
        if not own or specs[own[0]] != spec:
            raise InputError(f"run {run_id}: its seeds do not derive from the study seed; cannot rebuild its stack")
        result = train_stacked(task, [m for m, _ in members], data, specs, settings.training)[own[0]]
    else:
        result = train_instance(task, candidate, data, spec, settings.training)
    logged = metrics.get("test_loss", math.nan)
    same = (math.isnan(logged) and math.isnan(result.test_loss)) or _bits(logged) == _bits(result.test_loss)
    now = provenance_tags(info.distribution, result.device, result.threads, result.wait_policy)
    differences = {k: {"logged": tags.get(k), "now": now[k]} for k in COMPARED_TAGS if tags.get(k) != now[k]}
    return Reproduction(**{
        "run_id": run_id,
        "task": str(settings.task),
        "candidate": candidate.id,
        "candidate_description": candidate_label(task, candidate, with_id=False),
        "instance_index": spec.index,
        "logged_test_loss": None if math.isnan(logged) else logged,
        "reproduced_test_loss": None if math.isnan(result.test_loss) else result.test_loss,
        "logged_stop_reason": tags.get(T.STOP_REASON),
        "reproduced_stop_reason": result.stop_reason,
        "logged_epochs": int(metrics.get("epochs", 0)),
        "reproduced_epochs": result.epochs,
        "bitwise_equal": same,
        "differences": differences,
    })


def _stack_members(entry: str, candidate: Any, task: Any, run_id: str) -> list[tuple[Any, int]]:
    """The (candidate, index) members of a ``robust.stack`` tag: "3" is an instance of the run's own
    candidate, "candidate_id:3" one of another candidate, found in the task's search space."""
    from robustcli.errors import InputError, UnknownNameError

    members: list[tuple[Any, int]] = []
    space = None
    for item in filter(None, entry.split(",")):
        cid, _, index = item.rpartition(":")
        if not cid or cid == candidate.id:
            members.append((candidate, int(index)))
            continue
        space = space or task.search_space()
        try:
            members.append((space.get(cid), int(index)))
        except UnknownNameError:
            raise InputError(
                f"run {run_id} was trained in a stack with candidate {cid}, which task {task.name!r} no longer "
                f"defines: its stack cannot be rebuilt"
            ) from None
    return members
