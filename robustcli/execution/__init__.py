"""Where and how instances train (the study session that drives them is :mod:`robustcli.session`).

* the executors (:mod:`.protocol` is their contract): in this process, one instance at a time
  (:mod:`.inprocess`) or in stacks (:mod:`.stacked`); a local pool of worker processes
  (:mod:`.pool`); a Ray cluster (:mod:`.ray_executor`); ``auto``, which picks the pool or this
  process per run (:mod:`.auto`); the executor a study's settings ask for is made by :mod:`.factory`;
* the planner of stacks every executor trains by (:mod:`.planning`) and the CPU cores they use
  (:mod:`.cores`);
* the baselines' fits on the instances' samples (:mod:`.baselines`).
"""
