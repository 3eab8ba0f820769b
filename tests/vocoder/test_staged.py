"""BigVGAN stage by stage in windows (vocoder/staged.py) equals the wheel's one pass."""
from __future__ import annotations

import math

import pytest
import torch

from tests.dcae.test_receptive_field import small_bigvgan
from vocoder.field import stage_fields
from vocoder.staged import generate, stage_window

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_staged_windows_equal_one_pass():
    generator = small_bigvgan(128)  # BigVGAN-v2 22 kHz structure, fewer channels
    mel = torch.randn(2, 80, 300) - 5
    limit = 2**16
    for i, field in enumerate(stage_fields(generator)):  # several windows in every stage
        length = mel.shape[-1] * math.prod(generator.h.upsample_rates[:i])
        assert length > stage_window(generator, i, field, 4, limit) + field.left + field.right
    with torch.inference_mode():
        expected = generator(mel)
        for tensor_limit in (limit, None):
            audio = generate(generator, mel, tensor_limit)
            assert audio.shape == expected.shape == (2, 1, 300 * 256)
            assert ((audio - expected).abs().max() / expected.abs().max()).item() < 1e-5
