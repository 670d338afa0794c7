"""How the settings' fields are spelt as command-line options (and study-file keys).

The settings (:mod:`robustcli.config`) hold what a study is; this module holds only the names a
user types for them where a name differs from its field, so that reading a study file and naming
a field in an error line use one table. A leaf: it imports nothing of ``robustcli``.
"""

from __future__ import annotations

__all__ = ["FIELD_OF_OPTION", "FILE_ONLY", "option_of"]

#: command-line names of fields whose name differs, as a study file may spell them too
FIELD_OF_OPTION = {"address": "ray_address", "stop_mode": "mode"}
#: fields a study file sets that have no command-line option
FILE_ONLY = ("mix_candidate_seed", "monitor", "baseline_margin")
#: command-line options whose name differs from their field's
_OPTION_OF_FIELD = {"ray_address": "address", "task_options": "task-option", "mode": "stop-mode"}


def option_of(field: str) -> str:
    """The command-line option of a settings field: ``"--stop-mode"`` for ``mode``."""
    return "--" + _OPTION_OF_FIELD.get(field, field).replace("_", "-")
