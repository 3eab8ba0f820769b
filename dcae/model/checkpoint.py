"""Loading and saving DC-AE generator weights.

Accepted without conversion:
- the official ``generator_*.pt``: ``torch.save`` of the DCAEWrapper state dict, keys
  ``model.encoder.*`` / ``model.decoder.*``, Conv2d weights weight-norm parametrized
  (``...parametrizations.weight.original0/original1``);
- the same with plain (folded) conv weights, and either one as ``.safetensors``;
- prefixes left by DDP (``module.``) or ``torch.compile`` (``_orig_mod.``), and bare
  ``AutoencoderDC`` state dicts (``encoder.*`` / ``decoder.*``).
Nothing pickled is executed: ``torch.load(weights_only=True)`` or safetensors.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from dcae.atomic import atomic_save_safetensors, atomic_torch_save
from dcae.model.config import DCAEConfig, packaged_configs
from dcae.model.weight_norm import fold_weight_norm
from dcae.model.wrapper import DCAEWrapper
from dcae.precision import precision_dtype


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the reason."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pt``/``.pth``/``.ckpt`` (weights only) or ``.safetensors``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unsupported content"
        raise CheckpointError(f"{path}: refused to load: the pickle holds more than tensors "
                              f"(only plain state dicts are loaded; {first})") from None
    except Exception as e:  # noqa: BLE001 - truncated/corrupt files raise various errors
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    if isinstance(obj, dict) and "generator" in obj and isinstance(obj["generator"], dict):
        obj = obj["generator"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    return obj


def normalise_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip DDP / torch.compile prefixes and add ``model.`` to bare AutoencoderDC keys."""
    out = {}
    for key, value in state.items():
        key = key.replace("_orig_mod.", "")
        if key.startswith("module."):
            key = key[len("module."):]
        if key.startswith(("encoder.", "decoder.")):
            key = "model." + key
        out[key] = value
    return out


def is_weight_norm_layout(state: dict[str, torch.Tensor]) -> bool:
    return any(".parametrizations.weight.original" in k for k in state)


def _state_shapes(module: DCAEWrapper) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _differences(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor]
                 ) -> tuple[list[str], list[str], list[str]]:
    """(missing keys, unexpected keys, "key (got) vs (expected)" for mis-shaped tensors)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {shape}" for k, shape in expected.items()
             if k in state and tuple(state[k].shape) != shape]
    return missing, unexpected, wrong


def packaged_config_for(state: dict[str, torch.Tensor]) -> Path | None:
    """The packaged config (``dcae/configs/*.json``) whose model has exactly the tensors of ``state``
    (models are built on the meta device: no memory, no weights), or None."""
    for path in packaged_configs():
        with torch.device("meta"):
            module = DCAEWrapper(DCAEConfig.from_json(path))
        if not is_weight_norm_layout(state):
            fold_weight_norm(module)
        if not any(_differences(_state_shapes(module), state)):
            return path
    return None


def mismatch_message(source: str, config: DCAEConfig, state: dict[str, torch.Tensor],
                     differences: tuple[list[str], list[str], list[str]], config_flag: str = "--ae-config") -> str:
    """One line: how ``state`` differs from ``config``'s model, and which packaged config it fits
    (to give as ``config_flag``)."""
    missing, unexpected, wrong = differences
    fit = packaged_config_for(state)
    if fit is not None:
        counts = ", ".join(f"{len(keys)} {label}" for label, keys in
                           (("missing", missing), ("unexpected", unexpected), ("mis-shaped", wrong)) if keys)
        ours, theirs = config.to_dict(), DCAEConfig.from_json(fit).to_dict()
        fields = [k for k in theirs if not k.startswith("_") and theirs[k] != ours.get(k)]
        return (f"{source}: does not fit {config.source} ({counts} tensors); it fits the packaged {fit.name} "
                f"({config_flag} {fit.stem}), which differs in {', '.join(fields)}")
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
        if keys:
            problems.append(f"{len(keys)} {label}: {keys[0]}" + (f" (+{len(keys) - 1} more)" if len(keys) > 1 else ""))
    names = ", ".join(p.name for p in packaged_configs())
    return (f"{source}: does not fit {config.source} ({'; '.join(problems)}); it fits none of the packaged "
            f"configs ({names}) either: pass the config it was trained with ({config_flag})")


def check_fits(config: DCAEConfig, state: dict[str, torch.Tensor], source: str,
               config_flag: str = "--ae-config") -> None:
    """Raise :class:`CheckpointError` (one line) unless ``state`` (either weight layout) fits ``config``'s
    model; the model is built on the meta device (no memory, no weights)."""
    with torch.device("meta"):
        module = DCAEWrapper(config)
    if not is_weight_norm_layout(state):
        fold_weight_norm(module)
    differences = _differences(_state_shapes(module), state)
    if any(differences):
        raise CheckpointError(mismatch_message(source, config, state, differences, config_flag))


def load_state_into(module: DCAEWrapper, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with one clear line for missing/unexpected/mis-shaped keys."""
    differences = _differences(_state_shapes(module), state)
    if any(differences):
        raise CheckpointError(mismatch_message(source, module.config, state, differences))
    module.load_state_dict(state, strict=True)


def load_dcae(model_path: str | Path, config: str | Path | dict | DCAEConfig, device: str | torch.device = "cpu",
              precision: str = "fp32") -> DCAEWrapper:
    """A DCAEWrapper ready for inference: weights loaded strictly, weight norm folded, eval mode,
    parameters in ``precision`` ("auto", "fp32", "bf16"; "fp16" on GPU only: :mod:`dcae.precision`)."""
    device = torch.device(device)
    dtype = precision_dtype(precision, device)
    state = normalise_keys(read_state_dict(model_path))
    wrapper = DCAEWrapper(config)
    if not is_weight_norm_layout(state):
        fold_weight_norm(wrapper)
    load_state_into(wrapper, state, str(model_path))
    fold_weight_norm(wrapper)
    return wrapper.eval().to(device=device, dtype=dtype)


def save_generator(module: DCAEWrapper, path: str | Path) -> None:
    """Save the generator in the official layout (``.pt``) or as ``.safetensors``, atomically."""
    state = {k: v.detach().cpu() for k, v in normalise_keys(module.state_dict()).items()}
    if Path(path).suffix == ".safetensors":
        atomic_save_safetensors(state, path)
    else:
        atomic_torch_save(state, path)
