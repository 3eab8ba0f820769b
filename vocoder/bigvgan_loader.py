"""Load BigVGAN-v2 from a folder in NVIDIA's layout (or a hub id) into a ready-to-run :class:`Vocoder`.

NVIDIA's layout: ``config.json`` + ``bigvgan_generator.pt`` holding ``{"generator": state_dict}``.
The wheel's ``BigVGAN.from_pretrained`` breaks with huggingface_hub >= 1, so the generator is
built from the config and the weights are read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
import torch.nn as nn
from bigvgan.bigvgan import BigVGAN
from bigvgan.env import AttrDict

from dcae.atomic import atomic_torch_save, atomic_write_json
from dcae.hub import resolve_vocoder_dir
from dcae.precision import precision_dtype
from vocoder.fast_activation import use_fast_activations
from vocoder.mel import MelSpectrogram, load_bigvgan_config
from vocoder.staged import generate

GENERATOR_FILE = "bigvgan_generator.pt"


class Vocoder(nn.Module):
    """BigVGAN generator (weight norm removed, eval) plus its mel front end.

    ``forward``: mel (B, n_mels, T) -> audio (B, T * hop_length), float32, equal to the
    generator's own forward. The generator runs in the dtype of its weights (see
    :func:`load_vocoder`'s ``precision``); on CPU stage by stage in windows (:mod:`vocoder.staged`:
    same samples, no page-fault storm on long inputs). The mel front end always runs in float32.
    """

    def __init__(self, generator: BigVGAN, config: AttrDict):
        super().__init__()
        self.generator = generator
        self.config = config
        self.mel = MelSpectrogram(config)
        self.sample_rate = self.mel.sample_rate
        self.hop_length = self.mel.hop_length

    @property
    def dtype(self) -> torch.dtype:
        return self.generator.conv_pre.weight.dtype

    @torch.inference_mode()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        weight = self.generator.conv_pre.weight
        mel = mel.to(weight.device, weight.dtype)
        audio = generate(self.generator, mel) if weight.device.type == "cpu" else self.generator(mel)
        return audio.squeeze(1).float()


def build_generator(config: AttrDict, state_dict: dict | None = None, use_cuda_kernel: bool = False) -> BigVGAN:
    """A BigVGAN generator from ``config`` (the wheel's class), with weight norm still applied."""
    with warnings.catch_warnings():  # the wheel's torch.nn.utils.weight_norm: deprecated, users cannot act on it
        warnings.filterwarnings("ignore", message=".*weight_norm.* is deprecated", category=FutureWarning)
        generator = BigVGAN(AttrDict(dict(config)), use_cuda_kernel=use_cuda_kernel)
    if state_dict is not None:
        generator.load_state_dict(state_dict)
    return generator


def read_generator_weights(path: str | Path) -> dict:
    """The generator state dict from ``bigvgan_generator.pt`` (``{"generator": state_dict}``)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or "generator" not in checkpoint:
        raise ValueError(f"{path}: not a BigVGAN generator file (expected a dict with a 'generator' entry)")
    return checkpoint["generator"]


def load_vocoder(path_or_id: str | Path | None = None, device: str | torch.device = "cpu",
                 precision: str = "fp32", use_cuda_kernel: bool = False) -> Vocoder:
    """Load BigVGAN from a local folder or hub id (``None``: nvidia/bigvgan_v2_22khz_80band_256x).

    Raises ``dcae.hub.ModelNotFound`` (one clear message) when the folder is missing and the
    hub cannot be reached. ``precision`` "fp32" runs the wheel's generator unchanged;
    "bf16" (CPU/GPU) and "fp16" (GPU) cast the weights and swap in
    :class:`vocoder.fast_activation.FastActivation1d` (profiling showed the anti-aliased
    activation dominating once the convolutions run in bf16). ``use_cuda_kernel`` selects
    BigVGAN's own fused CUDA activation instead (GPU only).
    """
    device = torch.device(device)
    dtype = precision_dtype(precision, device)
    if use_cuda_kernel and device.type != "cuda":
        raise ValueError("use_cuda_kernel=True needs a CUDA device")
    folder = resolve_vocoder_dir(path_or_id)
    config = load_bigvgan_config(folder)
    generator = build_generator(config, read_generator_weights(folder / GENERATOR_FILE), use_cuda_kernel)
    with contextlib.redirect_stdout(io.StringIO()):  # the wheel prints "Removing weight norm..."
        generator.remove_weight_norm()
    generator.eval().requires_grad_(False)
    if dtype != torch.float32 and not use_cuda_kernel:
        use_fast_activations(generator)
    vocoder = Vocoder(generator.to(device, dtype), config)
    vocoder.mel.to(device)
    return vocoder


def save_vocoder_folder(folder: str | Path, generator: BigVGAN, config: dict) -> Path:
    """Write ``generator`` (weight norm still applied, as trained) in NVIDIA's layout."""
    folder = Path(folder)
    atomic_write_json(folder / "config.json", {k: v for k, v in dict(config).items() if k != "use_cuda_kernel"})
    atomic_torch_save({"generator": generator.state_dict()}, folder / GENERATOR_FILE)
    return folder
