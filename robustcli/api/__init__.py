"""robustcli as a library: the same studies as the `robust` command, for scripts and notebooks.

Example::

    from robustcli.api import Study

    study = Study("synthetic", tracking_uri="sqlite:///mlruns/mlflow.db", train_size=200,
                  min_epochs=10, window=5, max_epochs=30)    # a short early stopping (the paper's: min_epochs=100)
    print([c.name or c.description for c in study.candidates()][:3])
    small = study.assess("small", instances=5)            # trains what MLflow lacks, then statistics
    print(small.statistics["mean"], small.to_frame())      # a dataclass; to_frame() needs pandas
    chosen = study.select(rule="race", candidates=["small", "wide"], max_steps=6)   # Algorithm 1, resumable
    print(chosen.selected_name, [s.quote() for s in chosen.summary])
    study.report("synthetic.html")

A task defined in the notebook works the same: ``Study(MyTask)`` or ``Study(task=MyTask())``
with a :class:`robustcli.task.Task` subclass (see the README's "From Python").

Results are plain dataclasses with ``as_dict()`` (what ``--json`` prints), ``records()`` and
``to_frame()``. Bad input raises :class:`robustcli.errors.InputError` (a ``RobustError``) with the
one line the CLI prints. Nothing draws progress unless ``progress=True`` (or a :class:`Progress`).
"""

from __future__ import annotations

import importlib
import typing as _typing

if _typing.TYPE_CHECKING:  # what type checkers and IDEs see
    from robustcli.analyses.sample_size import SampleSizeResult
    from robustcli.analyses.variance import VarianceResult
    from robustcli.api.progress import Progress, Silent
    from robustcli.api.report import build_report
    from robustcli.api.reproduce import Reproduction, reproduce_run
    from robustcli.api.results import (
        Assessment,
        BaselineFits,
        CandidateInfo,
        CandidateSummary,
        NasOutcome,
        ReplayOutcome,
        SelectionOutcome,
        StudyInfo,
        StudyReport,
        StudyRuns,
    )
    from robustcli.api.selection import replay_selection
    from robustcli.api.store import export_losses, list_studies
    from robustcli.api.study import Study, list_candidates
    from robustcli.api.tasks import TaskInfo, list_tasks
    from robustcli.errors import InputError, RobustError
    from robustcli.task import Baseline, Candidate, Loss, SearchSpace, Task, TaskData

# Names are imported on first use (PEP 562): `robust tasks` and `robust --help` import this package
# and must not pay for numpy, MLflow and the analyses they never touch.
_HOME = {
    "Assessment": "robustcli.api.results",
    "Baseline": "robustcli.task",
    "BaselineFits": "robustcli.api.results",
    "Candidate": "robustcli.task",
    "CandidateInfo": "robustcli.api.results",
    "CandidateSummary": "robustcli.api.results",
    "InputError": "robustcli.errors",
    "Loss": "robustcli.task",
    "NasOutcome": "robustcli.api.results",
    "Progress": "robustcli.api.progress",
    "ReplayOutcome": "robustcli.api.results",
    "Reproduction": "robustcli.api.reproduce",
    "RobustError": "robustcli.errors",
    "SampleSizeResult": "robustcli.analyses.sample_size",
    "SearchSpace": "robustcli.task",
    "SelectionOutcome": "robustcli.api.results",
    "Silent": "robustcli.api.progress",
    "Study": "robustcli.api.study",
    "StudyInfo": "robustcli.api.results",
    "StudyReport": "robustcli.api.results",
    "StudyRuns": "robustcli.api.results",
    "Task": "robustcli.task",
    "TaskData": "robustcli.task",
    "TaskInfo": "robustcli.api.tasks",
    "VarianceResult": "robustcli.analyses.variance",
    "build_report": "robustcli.api.report",
    "export_losses": "robustcli.api.store",
    "list_candidates": "robustcli.api.study",
    "list_studies": "robustcli.api.store",
    "list_tasks": "robustcli.api.tasks",
    "replay_selection": "robustcli.api.selection",
    "reproduce_run": "robustcli.api.reproduce",
}

__all__ = [
    "Assessment",
    "Baseline",
    "BaselineFits",
    "Candidate",
    "CandidateInfo",
    "CandidateSummary",
    "InputError",
    "Loss",
    "NasOutcome",
    "Progress",
    "ReplayOutcome",
    "Reproduction",
    "RobustError",
    "SampleSizeResult",
    "SearchSpace",
    "SelectionOutcome",
    "Silent",
    "Study",
    "StudyInfo",
    "StudyReport",
    "StudyRuns",
    "Task",
    "TaskData",
    "TaskInfo",
    "VarianceResult",
    "build_report",
    "export_losses",
    "list_candidates",
    "list_studies",
    "list_tasks",
    "replay_selection",
    "reproduce_run",
]


def __getattr__(name: str) -> _typing.Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
