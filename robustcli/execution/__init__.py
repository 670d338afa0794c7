"""Where and how instances train, and the session that logs them.

* the executors (:mod:`.protocol` is their contract): in this process, one instance at a time
  (:mod:`.inprocess`) or in stacks (:mod:`.stacked`); a local pool of worker processes
  (:mod:`.pool`); a Ray cluster (:mod:`.ray_executor`); ``auto``, which picks the pool or this
  process per run (:mod:`.auto`); the executor a study's settings ask for is made by :mod:`.factory`;
* the planner of stacks every executor trains by (:mod:`.planning`) and the CPU cores they use
  (:mod:`.cores`);
* the study session (:mod:`.session`): the task, its data, the store, and the instances missing
  from it; the baselines' fits (:mod:`.baselines`).
"""

# The old name of .factory (issue 22), kept only for the import in robustcli/execution/session.py
# (line 275, a file another branch is moving): delete these lines once that import names .factory.
import sys as _sys  # noqa: E402

from robustcli.execution import factory as _factory  # noqa: E402

_sys.modules[f"{__name__}.select_executor"] = _factory
