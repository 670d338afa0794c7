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
