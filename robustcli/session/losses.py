"""The selection loop's :class:`~robustcli.selection.LossSource` over a study session.

It trains the (candidate id, index) pairs the loop asks for with the session's executor (or the one given),
and tells the selection store each loss the moment its run is logged, so an interrupted selection loses
nothing it was told about.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from robustcli.selection import LossSource

if TYPE_CHECKING:
    from robustcli.execution.protocol import TrainingExecutor
    from robustcli.session.study import StudySession
    from robustcli.tracking.selection_store import MlflowSelectionStore

__all__ = ["SessionLosses"]


class SessionLosses(LossSource):
    def __init__(
        self,
        session: StudySession,
        store: MlflowSelectionStore,
        *,
        executor: TrainingExecutor | None = None,
        on_start: Callable[[int], None] | None = None,
        on_done: Callable[[str, int, float], None] | None = None,
    ) -> None:
        self.session = session
        self.store = store
        self.executor = executor
        self.on_start = on_start
        self.on_done = on_done
        #: instances this process trained (not those another process trained meanwhile, waited for and read)
        self.trained_here = 0

    def run(self, requests: Sequence[tuple[str, int]]) -> Iterator[tuple[str, int, float]]:
        if self.on_start is not None:
            self.on_start(len(requests))
        jobs = [(self.session.candidate(cid), index) for cid, index in requests]
        for candidate, record in self.session.train(jobs, executor=self.executor):
            self.trained_here += record.fresh
            self.store.add(candidate.id, record.index, record.loss)
            if self.on_done is not None:
                self.on_done(candidate.id, record.index, record.loss)
            yield candidate.id, record.index, record.loss
