"""The run of an analysis (sample size, variance) in MLflow: found by its key, written whole.

An analysis's run (:data:`~robustcli.tracking.tags.ANALYSIS`, stored as ``robust.kind = "study"``)
holds its description as params, its table and figure as artifacts and its headline numbers as
metrics. It is written through the store's journal
(:meth:`~robustcli.tracking.mlflow_store.MlflowStore.write_journaled`), so a kill while it is
written leaves it to the next command, never half-written; the same analysis run again completes
its existing run rather than adding one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from robustcli.tracking import tags as T

if TYPE_CHECKING:
    from robustcli.session import StudySession

__all__ = ["write_analysis_run"]


def write_analysis_run(
    session: StudySession,
    kind: str,
    key: str,
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    artifacts: Mapping[str, bytes],
    started: int | None = None,
) -> str:
    """Write the run of analysis ``kind`` with key ``key`` (new, or the one logged before completed
    again with these metrics and artifacts): its id. ``started``: when the analysis began (ms)."""
    store = session.store
    exp_id = session.experiment()
    found = store.find_run(exp_id, T.ANALYSIS, {T.ANALYSIS_KEY: key})
    now = int(time.time() * 1000)
    rows = [(k, float(v), now, 0) for k, v in metrics.items()]
    name = f"{T.ANALYSIS}/{kind}"  # the run's name, "study/KIND" as earlier versions wrote it
    if found is not None:
        return store.write_journaled(exp_id, name, {}, metrics=rows, artifacts=artifacts,
                                     run_id=found.info.run_id, end=now)
    tags = {
        T.KIND: T.ANALYSIS,
        T.ANALYSIS_KIND: kind,
        T.ANALYSIS_KEY: key,
        T.TASK: str(session.settings.task),
        T.STUDY_NAME: session.settings.study_name,
    }
    return store.write_journaled(exp_id, name, tags, params, metrics=rows, artifacts=artifacts,
                                 start=started or now, end=now)
