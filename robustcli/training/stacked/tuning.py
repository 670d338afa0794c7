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

from robustcli.training.instance import EVAL_CHUNK

__all__ = ["CPU_EVAL_CHUNK", "SHARED_CONV_POOL_TILE_FLOATS", "eval_chunk"]

#: examples (summed over the stack) per evaluation chunk on the CPU. With the shared-input first
#: convolution (``SharedInputConv``) and freed memory kept (``cpu_memory``), 4096-16384 measured
#: flat and 512 up to 1.5x slower (K=64, calorimeter Model 2, 2 cores). On CUDA the plain loop's
#: ``EVAL_CHUNK`` is used (never measured on a GPU).
CPU_EVAL_CHUNK = 8192

#: floats per tile of the fused evaluation convolution + pooling on the CPU (``SharedConvPool``):
#: 8 MB, 256 output rows x a 2x2 window x K*O = 2048 filters; tiles of 64-256 rows measured
#: alike, the whole 4608-row chunk 2-3x slower (K=64, calorimeter layer 1, 2 cores)
SHARED_CONV_POOL_TILE_FLOATS = 256 * 4 * 2048


def eval_chunk(device_type: str) -> int:
    """Examples, summed over the stack, per evaluation chunk on this kind of device."""
    return EVAL_CHUNK if device_type == "cuda" else CPU_EVAL_CHUNK
