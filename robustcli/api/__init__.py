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
    TaskInfo,
)
from robustcli.api.selection import replay_selection
from robustcli.api.store import export_losses, list_studies
from robustcli.api.study import Study, list_candidates, list_tasks
from robustcli.errors import InputError, RobustError
from robustcli.task import Baseline, Candidate, Loss, SearchSpace, Task, TaskData

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
