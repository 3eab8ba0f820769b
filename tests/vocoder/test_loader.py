"""vocoder.bigvgan_loader: NVIDIA's folder layout, same output as the wheel's BigVGAN loaded the reference way."""
from __future__ import annotations

import contextlib
import io

import pytest
import torch
from bigvgan.activations import Snake, SnakeBeta
from bigvgan.alias_free_activation.torch.act import Activation1d
from bigvgan.bigvgan import BigVGAN
from bigvgan.env import AttrDict

from dcae.hub import ModelNotFound
from vocoder.bigvgan_loader import build_generator, load_vocoder, save_vocoder_folder
from vocoder.fast_activation import FastActivation1d
from vocoder.mel import load_bigvgan_config


def reference_bigvgan(folder) -> BigVGAN:
    """What the reference's VocoderWrapper does (from_pretrained on a local folder), spelled out."""
    h = load_bigvgan_config(folder)
    model = BigVGAN(AttrDict(dict(h)))
    model.load_state_dict(torch.load(folder / "bigvgan_generator.pt", map_location="cpu", weights_only=True)["generator"])
    with contextlib.redirect_stdout(io.StringIO()):
        model.remove_weight_norm()
    return model.eval()


@pytest.fixture(scope="module")
def real_config_folder(tmp_path_factory):
    """The real 22 kHz BigVGAN-v2 config (112M params) with random weights, in NVIDIA's layout."""
    torch.manual_seed(1)
    h = load_bigvgan_config()
    return save_vocoder_folder(tmp_path_factory.mktemp("bigvgan"), build_generator(h), h)


def test_loader_matches_wheel_reference(real_config_folder):
    vocoder = load_vocoder(real_config_folder)
    mel = torch.randn(2, 80, 12) - 4
    with torch.inference_mode():
        expected = reference_bigvgan(real_config_folder)(mel).squeeze(1)
    audio = vocoder(mel)
    assert audio.shape == (2, 12 * 256) and vocoder.sample_rate == 22050 and vocoder.hop_length == 256
    torch.testing.assert_close(audio, expected, rtol=0, atol=1e-6)
    bf16 = load_vocoder(real_config_folder, precision="bf16")(mel)
    assert ((bf16 - expected).norm() / expected.norm()).item() < 0.05


@pytest.mark.parametrize("snake_class", [Snake, SnakeBeta])
@pytest.mark.parametrize("logscale", [True, False])
def test_fast_activation_equals_wheel(snake_class, logscale):
    snake = snake_class(16, alpha_logscale=logscale)
    with torch.no_grad():
        for p in snake.parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (0 if logscale else 1))
    original = Activation1d(activation=snake)
    x = torch.randn(3, 16, 101) * 2
    with torch.inference_mode():
        torch.testing.assert_close(FastActivation1d(original)(x), original(x), rtol=0, atol=1e-5)


def test_errors(tmp_path):
    with pytest.raises(ModelNotFound, match="vocoder folder lacks"):
        load_vocoder(tmp_path)
    with pytest.raises(ModelNotFound, match="not found"):
        load_vocoder(tmp_path / "missing")
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        load_vocoder(tmp_path, precision="fp16")
    (tmp_path / "config.json").write_text("{}")
    torch.save({"not_generator": {}}, tmp_path / "bigvgan_generator.pt")
    with pytest.raises(ValueError, match="not a BigVGAN generator file"):
        load_vocoder(tmp_path)


def test_loading_shows_no_weight_norm_deprecation(small_vocoder):
    """The wheel calls the deprecated ``torch.nn.utils.weight_norm``; users cannot act on its warning, so
    loading does not show it (a fresh interpreter: warnings show once per place). The wheel's own
    constructor, after, still warns: the check can tell."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = ("import sys; from vocoder.bigvgan_loader import load_vocoder; "
            f"load_vocoder({str(small_vocoder)!r}); print('LOADED', file=sys.stderr, flush=True); "
            "from bigvgan.bigvgan import BigVGAN; from bigvgan.env import AttrDict; "
            "from vocoder.mel import load_bigvgan_config; BigVGAN(AttrDict(dict(load_bigvgan_config())))")
    out = subprocess.run([sys.executable, "-W", "default", "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    ours, wheel = out.stderr.split("LOADED")
    assert "weight_norm" not in ours, ours
    assert "weight_norm" in wheel and "deprecated" in wheel
