"""Training of instances: seeds (:mod:`.seeds`), He initialisation (:mod:`.init`), early stopping
(:mod:`.early_stopping`), the one-instance loop (:mod:`.instance`) and the stacked engine, which
trains many instances as one vectorised model (:mod:`.stacked`, its optimisers in
:mod:`.stacked_optim`, the CPU memory it keeps in :mod:`.cpu_memory`).

Submodules import torch; import them lazily from the CLI. This package file itself does not.
"""

#: candidate parameters that may differ between the instances of one stack: the stacked
#: optimisers take them per instance; every other parameter must be equal within a stack
PER_INSTANCE_KEYS = ("lr", "weight_decay", "momentum")
