"""Weight norm on every Conv2d, as the reference trains it, and folding it away for inference."""
from __future__ import annotations

import torch.nn as nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

CONV_TYPES = (nn.Conv2d, nn.ConvTranspose2d)


def add_weight_norm(module: nn.Module) -> nn.Module:
    """Parametrize every Conv2d weight as g * v / ||v|| (state dict keys
    ``...parametrizations.weight.original0`` (g) and ``original1`` (v))."""
    for m in module.modules():
        if isinstance(m, CONV_TYPES) and not parametrize.is_parametrized(m, "weight"):
            weight_norm(m)
    return module


def fold_weight_norm(module: nn.Module) -> nn.Module:
    """Replace every weight-norm parametrization by the plain weight it computes (for inference)."""
    for m in module.modules():
        if isinstance(m, CONV_TYPES) and parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return module


def has_weight_norm(module: nn.Module) -> bool:
    return any(parametrize.is_parametrized(m, "weight") for m in module.modules() if isinstance(m, CONV_TYPES))
