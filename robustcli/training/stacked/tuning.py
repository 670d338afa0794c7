"""The stacked engine's tuning constants, with how they were measured.

Each value is a speed setting, not a result: changing one changes no number a training returns
beyond floating-point rounding (chunking changes no value; the tile of the fused evaluation
changes none either: the max over a window is exact in any order). They were measured on the
project's shared 2-vCPU development VMs (AMD EPYC, torch 2.13 CPU build) with the calorimeter's
Model 2 (conv 1->32 3x3, max-pool 2, conv 32->64 3x3, max-pool 2/1, dense 576-9-1), K = 64
instances per stack: another machine (more cores, larger caches, a GPU) may want other values.
Re-measure with ``benchmarks/train_throughput.py`` before changing one.
"""

from __future__ import annotations

from dataclasses import dataclass

from robustcli.training.instance import EVAL_CHUNK

__all__ = ["ACCELERATOR", "CPU", "CPU_EVAL_CHUNK", "SHARED_CONV_POOL_TILE_FLOATS", "DeviceChoices", "for_device"]

#: examples (summed over the stack) per evaluation chunk on the CPU. With the shared-input first
#: convolution (``SharedInputConv``) and freed memory kept (``cpu_memory``), 4096-16384 measured
#: flat and 512 up to 1.5x slower (K=64, calorimeter Model 2, 2 cores)
CPU_EVAL_CHUNK = 8192

#: floats per tile of the fused evaluation convolution + pooling on the CPU (``SharedConvPool``):
#: 8 MB, 256 output rows x a 2x2 window x K*O = 2048 filters; tiles of 64-256 rows measured
#: alike, the whole 4608-row chunk 2-3x slower (K=64, calorimeter layer 1, 2 cores)
SHARED_CONV_POOL_TILE_FLOATS = 256 * 4 * 2048


@dataclass(frozen=True)
class DeviceChoices:
    """What the engine does differently on the CPU and on an accelerator; the logic around each
    choice is shared, so a CPU test can run the accelerator's choices (``for_device`` patched)."""

    #: examples, summed over the stack, per evaluation chunk
    eval_chunk: int
    #: ``SharedConvPool`` in tiles of :data:`SHARED_CONV_POOL_TILE_FLOATS` (else one tile)
    tile_conv_pool: bool
    #: ``StackedPool`` copies a channels-first input to channels-last before pooling
    channels_last_pool: bool


#: the CPU's choices (measured as above)
CPU = DeviceChoices(eval_chunk=CPU_EVAL_CHUNK, tile_conv_pool=True, channels_last_pool=True)
#: a GPU's choices: the plain loop's evaluation chunk, no tiling, no layout copy (never measured:
#: no GPU has been at hand)
ACCELERATOR = DeviceChoices(eval_chunk=EVAL_CHUNK, tile_conv_pool=False, channels_last_pool=False)


def for_device(device_type: str) -> DeviceChoices:
    """The choices for a device type (``"cpu"``, ``"cuda"``...)."""
    return CPU if device_type == "cpu" else ACCELERATOR
