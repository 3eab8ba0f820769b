"""Codebook usage of a set of tokens: how many codes occur, and the perplexity of their histogram."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class CodebookUsage:
    num_tokens: int
    codes_used: int          # distinct ids seen
    used_fraction: float     # codes_used / codebook_size
    perplexity: float        # exp(entropy of the id histogram): codebook_size when all are equally used

    def __str__(self) -> str:
        return (f"{self.codes_used} codes used ({100 * self.used_fraction:.1f}%), perplexity {self.perplexity:.1f}, "
                f"over {self.num_tokens} tokens")


def codebook_usage(tokens: torch.Tensor | Sequence[torch.Tensor], codebook_size: int) -> CodebookUsage:
    """Usage of ids in ``tokens`` (a tensor of any shape, or a list of (N_i,)); negative ids (padding) are ignored."""
    if not isinstance(tokens, torch.Tensor):
        tokens = torch.cat([torch.as_tensor(t).reshape(-1) for t in tokens]) if len(tokens) else torch.zeros(0)
    ids = tokens.reshape(-1).long()
    ids = ids[ids >= 0]
    if ids.numel() and int(ids.max()) >= codebook_size:
        raise ValueError(f"token id {int(ids.max())} is outside the codebook of {codebook_size}")
    counts = torch.bincount(ids.cpu(), minlength=codebook_size).double()
    n = int(counts.sum())
    if n == 0:
        return CodebookUsage(0, 0, 0.0, 0.0)
    p = counts[counts > 0] / n
    entropy = float(-(p * p.log()).sum())
    used = int((counts > 0).sum())
    return CodebookUsage(n, used, used / codebook_size, math.exp(entropy))
