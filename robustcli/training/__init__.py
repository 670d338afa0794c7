"""Training of instances: seeds, He initialisation, early stopping, the one-instance loop.

Submodules import torch; import them lazily from the CLI.
"""
