"""Inference precisions: "fp32" everywhere, "bf16" on CPU or GPU, "fp16" on GPU only."""
from __future__ import annotations

import torch

PRECISION_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def precision_dtype(precision: str, device: str | torch.device) -> torch.dtype:
    """The compute dtype for ``precision`` on ``device``; ValueError for unknown or unsupported pairs."""
    if precision not in PRECISION_DTYPES:
        raise ValueError(f"unknown precision {precision!r} (choose from {', '.join(PRECISION_DTYPES)})")
    if precision == "fp16" and torch.device(device).type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device; use bf16 on CPU")
    return PRECISION_DTYPES[precision]
