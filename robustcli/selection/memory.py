"""An in-memory :class:`SelectionStore` and an :class:`LossSource` that replays a table of losses.

Together they run Algorithm 1 on a table in milliseconds: the tests, ``robust select --replay``
and the selection-efficiency benchmark use them. The MLflow store and the training executor
live elsewhere and follow the same contracts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType

import numpy as np

from robustcli.errors import InputError
from robustcli.selection._base import LossSource, SelectionStore, StepRecord

__all__ = ["MemorySelectionStore", "TableLosses"]


class MemorySelectionStore(SelectionStore):
    """Losses and history in dictionaries. ``losses`` seeds it (e.g. a resumed study)."""

    def __init__(
        self,
        losses: Mapping[str, Mapping[int, float]] | None = None,
        baseline: float | None = None,
    ) -> None:
        self._losses: dict[str, dict[int, float]] = {}
        self._views: dict[str, Mapping[int, float]] = {}
        self._history: dict[int, StepRecord] = {}
        self._baseline = baseline
        for cid, per in (losses or {}).items():
            for j, loss in per.items():
                self.add(cid, j, loss)

    def add(self, candidate: str, instance: int, loss: float) -> None:
        """Record a finished instance; a known loss never changes."""
        per = self._losses.get(candidate)
        if per is None:
            per = self._losses[candidate] = {}
            self._views[candidate] = MappingProxyType(per)
        if instance in per:
            old, new = per[instance], float(loss)
            if not (old == new or (np.isnan(old) and np.isnan(new))):
                raise InputError(f"candidate {candidate!r} instance {instance} is already known with loss {old}, not {new}")
            return
        per[int(instance)] = float(loss)

    def known_losses(self) -> Mapping[str, Mapping[int, float]]:
        return MappingProxyType(self._views)

    def record_step(self, record: StepRecord) -> None:
        self._history[record.step] = record

    def baseline_loss(self) -> float | None:
        return self._baseline

    @property
    def history(self) -> list[StepRecord]:
        """The recorded steps in order."""
        return [self._history[k] for k in sorted(self._history)]

    def __len__(self) -> int:
        return sum(len(v) for v in self._losses.values())


class TableLosses(LossSource):
    """"Trains" an instance by looking its loss up in a table and writing it to ``store``.

    ``table`` maps candidate id -> losses by instance index (a sequence or a mapping), or is a
    :class:`~robustcli.selection.replay.LossTable`. ``trained`` counts the lookups and
    ``requests`` keeps every pair asked for, so tests can check what a run would have trained.
    """

    def __init__(self, table: object, store: MemorySelectionStore) -> None:
        if hasattr(table, "as_mapping"):
            table = table.as_mapping()  # type: ignore[attr-defined]
        self._table: Mapping[str, object] = table  # type: ignore[assignment]
        self.store = store
        self.trained = 0
        self.requests: list[tuple[str, int]] = []

    def _lookup(self, candidate: str, instance: int) -> float:
        row = self._table.get(candidate)
        if row is None:
            raise InputError(f"the loss table has no candidate {candidate!r}")
        try:
            if isinstance(row, Mapping):
                return float(row[instance])
            if instance < 0:
                raise IndexError(instance)
            return float(row[instance])  # type: ignore[index]
        except (KeyError, IndexError):
            n = len(row)  # type: ignore[arg-type]
            raise InputError(
                f"the loss table has no instance {instance} for candidate {candidate!r} (it has {n})"
            ) from None

    def run(self, requests: Sequence[tuple[str, int]]) -> Iterator[tuple[str, int, float]]:
        for candidate, instance in requests:
            loss = self._lookup(candidate, instance)
            self.store.add(candidate, instance, loss)
            self.trained += 1
            self.requests.append((candidate, instance))
            yield candidate, instance, loss

