"""The hub of a study: its task, data, settings, store and executor, and the one place its
instances are trained and logged (:class:`StudySession`); the selection loop's loss source over
it is :class:`robustcli.session.losses.SessionLosses` (imported where a selection runs: it needs numpy).

It sits above ``execution/`` (which it drives) and ``tracking/`` (which it writes through), and
below the layers that hold a session: ``api/``, ``analyses/`` and the selection's store. Those
name it in their signatures; none below it imports it at run time.
"""

from robustcli.session.study import StudySession

__all__ = ["StudySession"]
