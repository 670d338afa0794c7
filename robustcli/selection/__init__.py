"""Algorithm 1 (robust model selection) as a pure loop over a store and an executor.

The loop knows nothing of MLflow or torch: it asks a :class:`Store` what is known, an
:class:`Executor` for the missing instances and a :class:`Rule` who survives. The in-memory
store and the table executor run it on a table of losses in milliseconds::

    from robustcli.selection import MemoryStore, TableExecutor, make_rule, select

    store = MemoryStore()
    result = select(table.candidates, store, TableExecutor(table, store), make_rule("paper"), "mean")
    print(result.selected, result.trainings, result.survivors_per_step)
"""

from robustcli.selection._base import Executor, LossView, Rule, StepRecord, Store
from robustcli.selection.loop import SelectionResult, sample_candidates, select
from robustcli.selection.memory import MemoryStore, TableExecutor
from robustcli.selection.replay import (
    REQUIRED_COLUMNS,
    LossTable,
    loss_table_from_array,
    read_loss_table,
    write_loss_table,
)
from robustcli.selection.rules import RULES, HalvingRule, PaperRule, QuantileRule, RaceRule, make_rule

__all__ = [
    "REQUIRED_COLUMNS",
    "RULES",
    "Executor",
    "HalvingRule",
    "LossTable",
    "LossView",
    "MemoryStore",
    "PaperRule",
    "QuantileRule",
    "RaceRule",
    "Rule",
    "SelectionResult",
    "sample_candidates",
    "StepRecord",
    "Store",
    "TableExecutor",
    "loss_table_from_array",
    "make_rule",
    "read_loss_table",
    "select",
    "write_loss_table",
]
