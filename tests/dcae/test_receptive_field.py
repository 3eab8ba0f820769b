"""Receptive fields computed from the modules bound the true dependence, found by perturbation:
change one input frame, see which output frames move (random weights, float32)."""
from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch

from dcae import DCAEWrapper
from dcae.model.field import dcae_receptive_fields
from dcae.receptive_field import GlobalDependence, ReceptiveField, input_span
from tests.conftest import DEFAULT_CONFIG, TINY_CONFIG, VOCODER_CONFIG
from vocoder.bigvgan_loader import build_generator
from vocoder.fast_activation import FastActivation1d, use_fast_activations
from vocoder.field import vocoder_receptive_field
from vocoder.mel import load_bigvgan_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = json.loads(TINY_CONFIG.read_text())
# Every convolutional option (no attention): pixel_unshuffle / pixel_shuffle resampling, no blocks
# at full resolution (conv_in / conv_out are resampling blocks), batch_norm, relu / gelu / mish,
# shortcuts off, 4 stages (compression 8).
CONV_OPTIONS = {**TINY, "encoder_block_out_channels": [8, 16, 16, 32], "decoder_block_out_channels": [8, 16, 16, 32],
                "encoder_layers_per_block": [0, 1, 2, 1], "decoder_layers_per_block": [0, 2, 1, 1],
                "encoder_block_types": "ResBlock", "decoder_block_types": "ResBlock",
                "encoder_qkv_multiscales": [[]] * 4, "decoder_qkv_multiscales": [[]] * 4,
                "downsample_block_type": "pixel_unshuffle", "upsample_block_type": "pixel_shuffle",
                "decoder_norm_types": ["rms_norm", "batch_norm", "rms_norm", "batch_norm"],
                "decoder_act_fns": ["silu", "relu", "gelu", "mish"], "latent_channels": 8,
                "encoder_out_shortcut": False, "decoder_in_shortcut": False, "decoder_conv_act_fn": "relu"}
# The tiny model with linear attention (EfficientViTBlock) in the deepest encoder and decoder stages.
ATTENTION = {**TINY, "encoder_block_types": ["ResBlock"] * 4 + ["EfficientViTBlock"],
             "decoder_block_types": ["ResBlock"] * 4 + ["EfficientViTBlock"],
             "encoder_qkv_multiscales": [[], [], [], [], [5]], "decoder_qkv_multiscales": [[], [], [], [], [5]]}


def moved(before: torch.Tensor, after: torch.Tensor) -> tuple[int, int]:
    """First and last index along the last axis where the outputs differ at all."""
    changed = (before != after).flatten(0, -2).any(dim=0).nonzero().flatten()
    return int(changed.min()), int(changed.max())


def probe_dcae(model: DCAEWrapper, frames: int = 32) -> tuple[ReceptiveField, ReceptiveField]:
    """(encoder, decoder) dependence in latent frames, measured around frame ``frames // 2``."""
    for m in model.modules():  # batch norm with non-trivial statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2)
    r, t0 = model.compression, frames // 2
    mel = torch.randn(1, 80, frames * r) * 2 - 5
    with torch.inference_mode():
        z = model.encode(mel)
        poked = mel.clone()
        poked[..., t0 * r: (t0 + 1) * r] += 3 * torch.randn(80, r)
        first, last = moved(z, model.encode(poked))           # outputs j in [t0 - right, t0 + left]
        encoder = ReceptiveField(last - t0, t0 - first)
        poked = z.clone()
        poked[..., t0] += 2 * torch.randn_like(z[..., t0])
        first, last = moved(model.decode(z), model.decode(poked))
        decoder = ReceptiveField(last // r - t0, t0 - first // r)
    return encoder, decoder


@pytest.mark.parametrize("name,config", [("tiny", TINY), ("conv_options", CONV_OPTIONS), ("default", DEFAULT_CONFIG)])
def test_dcae_field_bounds_the_measured_dependence(name, config):
    model = DCAEWrapper(config).eval()
    computed = dcae_receptive_fields(model.model)
    measured = probe_dcae(model)
    print(f"{name}: computed encoder {computed[0]} decoder {computed[1]}; measured {measured[0]} / {measured[1]}")
    for c, m in zip(computed, measured):
        assert not c.is_global
        assert c.left >= m.left and c.right >= m.right        # an upper bound ...
        assert c.left - m.left <= 1 and c.right - m.right <= 1  # ... and a tight one


def test_attention_makes_the_field_global():
    model = DCAEWrapper(ATTENTION).eval()
    encoder, decoder = dcae_receptive_fields(model.model)
    assert encoder.is_global and decoder.is_global and "EfficientViTBlock" in encoder.reason
    frames = 16
    measured_encoder, measured_decoder = probe_dcae(model, frames)
    # one changed frame moves every output frame: nothing short of the whole signal is exact
    assert measured_encoder.left >= frames // 2 - 1 and measured_encoder.right >= frames // 2
    assert measured_decoder.left >= frames // 2 - 1 and measured_decoder.right >= frames // 2


def test_unknown_module_is_global():
    class Mystery(torch.nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(GlobalDependence, match="Mystery"):
        input_span(torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3, padding=1), Mystery()), (0, 0))


def small_bigvgan(channels: int = 128):
    """BigVGAN-v2 22 kHz's structure (kernels, dilations, upsampling, anti-aliasing) with few channels."""
    torch.manual_seed(0)
    generator = build_generator(dict(load_bigvgan_config(VOCODER_CONFIG), upsample_initial_channel=channels))
    with contextlib.redirect_stdout(io.StringIO()):
        generator.remove_weight_norm()
    return generator.eval()


def test_vocoder_field_bounds_the_measured_dependence():
    generator = small_bigvgan()
    computed = vocoder_receptive_field(generator)
    use_fast_activations(generator)  # the same function (tested in test_vocoder_loader), faster to probe
    assert vocoder_receptive_field(generator) == computed
    hop, frames, t0 = 256, 100, 50
    mel = torch.randn(1, 80, frames) - 5
    poked = mel.clone()
    poked[..., t0] += 3 * torch.randn(80)
    with torch.inference_mode():
        first, last = moved(generator(mel), generator(poked))
    measured = ReceptiveField(last // hop - t0, t0 - first // hop)
    print(f"BigVGAN-v2 22 kHz structure: computed {computed}, measured {measured} mel frames")
    assert computed.left >= measured.left and computed.right >= measured.right
    # the structural field counts every filter tap; the farthest ones move the output below float32 rounding
    assert computed.left - measured.left <= 10


def test_fast_activation_has_the_same_span():
    from bigvgan.activations import SnakeBeta
    from bigvgan.alias_free_activation.torch.act import Activation1d

    original = Activation1d(SnakeBeta(4, alpha_logscale=True))
    fast = FastActivation1d(original)
    for span in [(0, 0), (1, 1), (0, 1), (5, 12), (-3, 8)]:
        assert input_span(fast, span) == input_span(original, span)
