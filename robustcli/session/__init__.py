"""The hub of a study: its task, data, settings, store and executor, and the one place its
instances are trained and logged (:class:`StudySession`), with the selection loop's loss source
over it (:class:`SessionLosses`).

It sits above ``execution/`` (which it drives) and ``tracking/`` (which it writes through), and
below the layers that hold a session: ``api/``, ``analyses/`` and the selection's store. Those
name it in their signatures; none below it imports it at run time.
"""

from robustcli.session.losses import SessionLosses
from robustcli.session.study import StudySession

__all__ = ["SessionLosses", "StudySession"]
