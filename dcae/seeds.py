"""Seeds derived from several numbers (run seed, epoch, rank, position ...): the randomness of data
order, per-item choices and per-frame noise depends only on them, not on processes or restarts."""
from __future__ import annotations

_MIX = 0x9E3779B97F4A7C15  # 64-bit golden-ratio constant for seed mixing


def mix_seed(*values: int) -> int:
    """A 63-bit seed that depends on every value (splitmix64-style mixing)."""
    state = 0
    for v in values:
        state = (state + _MIX + (int(v) & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        state = z ^ (z >> 31)
    return state >> 1
