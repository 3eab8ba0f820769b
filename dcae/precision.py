"""Numeric precision, one table for the whole project: names, dtypes, and what is native where.

Names: ``"fp32"`` everywhere, ``"bf16"`` on CPU or GPU, ``"fp16"`` on GPU only, and ``"auto"``:
bf16 where the hardware computes it natively (CUDA GPUs with bf16, CPUs with AVX512-BF16 or AMX
that torch dispatches to), fp32 elsewhere. On a CPU without native bf16 (AVX2 and older) every
bf16 matmul is emulated and ~30x slower than fp32: an explicit ``"bf16"`` still runs there, with
a one-line warning printed once per process.

    >>> resolve_precision("auto", "cpu")     # "bf16" on an AVX512-BF16 / AMX CPU, else "fp32"
    >>> precision_dtype("bf16", "cuda")      # torch.bfloat16
"""
from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# The names are importable without torch (the commands' --help answers at once); torch is imported
# by the functions that need it.
DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
PRECISIONS = ("auto", *DTYPE_NAMES)

_warned: set[str] = set()


def cpu_capability() -> str:
    """The instruction set torch dispatches CPU kernels to (``"AVX2"``, ``"AVX512"``, ...).

    It follows ``ATEN_CPU_CAPABILITY``, so ``ATEN_CPU_CAPABILITY=avx2`` (with
    ``ONEDNN_MAX_CPU_ISA=AVX2``) makes an AVX512 machine behave like an AVX2 one.
    """
    import torch

    return torch.backends.cpu.get_cpu_capability()


@functools.lru_cache(maxsize=None)
def _native_bf16_cpu() -> bool:
    import torch

    if not cpu_capability().upper().startswith(("AVX512", "AMX")):
        return False
    has_bf16_units = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return bool(has_bf16_units and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """True when bf16 matmuls/convolutions run natively (not emulated) on ``device``."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        return _native_bf16_cpu()
    return False


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``"auto"`` -> ``"bf16"`` or ``"fp32"`` for ``device``; other names are checked and returned.

    Raises ValueError (one line) for unknown names and fp16 off CUDA; warns once, in one line on
    stderr, for bf16 on a CPU that only emulates it.
    """
    import torch

    device = torch.device(device)
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision not in DTYPE_NAMES:
        raise ValueError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device; use bf16 (or auto) on CPU")
    if precision == "bf16" and device.type == "cpu" and not native_bf16(device) and "bf16-cpu" not in _warned:
        _warned.add("bf16-cpu")
        print(f"warning: bf16 is emulated on this CPU (torch capability {cpu_capability()}, no AVX512-BF16/AMX) "
              f"and runs far slower than fp32; use --precision auto or fp32", file=sys.stderr)
    return precision


def precision_dtype(precision: str, device: str | torch.device) -> torch.dtype:
    """The compute dtype of ``precision`` (``"auto"`` resolved) on ``device``."""
    import torch

    return getattr(torch, DTYPE_NAMES[resolve_precision(precision, device)])


def fast_matmul_dtype(device: str | torch.device) -> torch.dtype:
    """The cheaper of bf16 and fp32 for matmul-bound work that tolerates bf16 (e.g. Muon's
    Newton-Schulz orthogonalization): bf16 where native, else fp32."""
    import torch

    return torch.bfloat16 if native_bf16(device) else torch.float32
