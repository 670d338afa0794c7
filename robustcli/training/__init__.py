"""Training of instances: seeds, He initialisation, early stopping, the one-instance loop.

Submodules import torch; import them lazily from the CLI. This package file itself does not.
"""

#: candidate parameters that may differ between the instances of one stack: the stacked
#: optimisers take them per instance; every other parameter must be equal within a stack
PER_INSTANCE_KEYS = ("lr", "weight_decay", "momentum")
