"""Algorithm 1 (robust model selection) as a pure loop over a selection store and a loss source.

The loop knows nothing of MLflow or torch: it asks a :class:`SelectionStore` what is known, an
:class:`LossSource` for the missing instances and a :class:`Rule` who survives. The in-memory
selection store and the table loss source run it on a table of losses in milliseconds::

    from robustcli.selection import MemorySelectionStore, TableLosses, make_rule, select

    store = MemorySelectionStore()
    result = select(table.candidates, store, TableLosses(table, store), make_rule("paper"), "mean")
    print(result.selected, result.trainings, result.survivors_per_step)
"""

from robustcli.selection._base import LossSource, LossView, Rule, SelectionStore, StepRecord
from robustcli.selection.loop import SelectionResult, draw_candidate_ids, select
from robustcli.selection.memory import MemorySelectionStore, TableLosses
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
    "LossSource",
    "HalvingRule",
    "LossTable",
    "LossView",
    "MemorySelectionStore",
    "PaperRule",
    "QuantileRule",
    "RaceRule",
    "Rule",
    "SelectionResult",
    "SelectionStore",
    "StepRecord",
    "TableLosses",
    "draw_candidate_ids",
    "loss_table_from_array",
    "make_rule",
    "read_loss_table",
    "select",
    "write_loss_table",
]
