"""What a function that takes a study by name or as a :class:`~robustcli.api.Study` reads of it.

A base with no code of its own, so that :mod:`robustcli.api.report` and :mod:`robustcli.api.store`
can tell a Study from a name without importing :mod:`robustcli.api.study`, which imports them.
"""

from __future__ import annotations

__all__ = ["StudyHandle"]


class StudyHandle:
    """A study already opened: its ``name`` and its store (``tracking_uri``)."""

    name: str
    tracking_uri: str
