"""DCAEInferenceWrapper vs the reference pipeline (diffusers AutoencoderDC + weight norm + LayerNorm, wheel BigVGAN)."""
from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
import torch.nn as nn

from dcae import DCAEWrapper, save_generator
from dcae.audio import load_audio
from dcae.pipeline import DCAEInferenceWrapper
from tests.conftest import DEFAULT_CONFIG, write_small_vocoder, write_tiny_generator
from vocoder.mel import load_bigvgan_config

TINY = "dcae/configs/tiny.json"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """generator.pt and vocoder/ in one folder, as reference_models reads them; [[1, 3]]: two dilations per resblock."""
    torch.manual_seed(3)
    root = tmp_path_factory.mktemp("models")
    write_tiny_generator(root / "generator.pt")
    write_small_vocoder(root / "vocoder", dilations=[[1, 3]])
    return root


def reference_pipeline(root, config_path, audio: torch.Tensor, models=None):
    """The reference inference.py, written out with diffusers and the bigvgan wheel -> (audio, latent)."""
    ae, norm, voc, h = models if models is not None else reference_models(root, config_path)
    with torch.inference_mode():
        x = audio.unsqueeze(0)
        x = torch.nn.functional.pad(x, (0, (-x.shape[-1]) % 4096))
        from bigvgan.meldataset import get_mel_spectrogram
        latent = ae.model.encode(get_mel_spectrogram(x, h).unsqueeze(1)).latent
        latent = norm(latent.transpose(1, -1)).transpose(1, -1)
        return voc(ae.model.decode(latent).sample.squeeze(1)).squeeze(1), latent


def reference_models(root, config_path):
    """(AE with weight norm removed, latent LayerNorm, BigVGAN, BigVGAN config) loaded the reference way."""
    from bigvgan.bigvgan import BigVGAN
    from bigvgan.env import AttrDict
    from diffusers import AutoencoderDC
    from torch.nn.utils.parametrizations import weight_norm
    from torch.nn.utils.parametrize import remove_parametrizations

    config = {k: v for k, v in json.loads(open(config_path).read()).items() if k != "_comment"}
    ae = nn.Module()
    ae.model = AutoencoderDC.from_config(config)
    for m in ae.model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            weight_norm(m)
    ae.load_state_dict(torch.load(root / "generator.pt", weights_only=True))
    for m in ae.model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            remove_parametrizations(m, "weight")
    ae.eval()
    norm = nn.LayerNorm(ae.model.config.latent_channels, elementwise_affine=False)
    h = load_bigvgan_config(root / "vocoder")
    voc = BigVGAN(AttrDict(dict(h)))
    voc.load_state_dict(torch.load(root / "vocoder" / "bigvgan_generator.pt", weights_only=True)["generator"])
    with contextlib.redirect_stdout(io.StringIO()):
        voc.remove_weight_norm()
    return ae, norm, voc.eval(), h


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def test_parity_with_reference_on_real_speech(models, speech_files, on_device):
    """Ours on the device under test, the reference on the CPU."""
    w = DCAEInferenceWrapper(models / "generator.pt", TINY, models / "vocoder", device=on_device)
    assert (w.sample_rate, w.latent_dim, w.frame_rate) == (22050, 80, 22050 / 256 / 16)
    audio = load_audio(speech_files[0], 22050)
    expected_audio, expected_latent = reference_pipeline(models, TINY, audio)
    latent = w.encode(audio, 22050, return_1d=False)
    assert latent.device.type == on_device.type
    assert rel(latent.cpu(), expected_latent) < 1e-4
    assert rel(w.encode(audio, 22050).cpu(), expected_latent.flatten(1, 2)) < 1e-4
    decoded = w.decode(latent)
    assert decoded.shape == expected_audio.shape and rel(decoded, expected_audio) < 1e-4
    out = w(audio, 22050)
    assert out.shape == (1, audio.shape[0])  # input length, not the padded length
    assert rel(out, expected_audio[..., : audio.shape[0]]) < 1e-4


def test_batch_of_different_lengths_and_resampling(models, speech_files, on_device):
    w = DCAEInferenceWrapper(models / "generator.pt", TINY, models / "vocoder", device=on_device)
    a, b = load_audio(speech_files[0], 16000)[:9000], load_audio(speech_files[1], 16000)[:20000]
    latents = w.encode([a, b], 16000)
    assert [z.shape for z in latents] == [(80, 4), (80, 7)]  # ceil(n * 22050 / 16000 / 4096)
    torch.testing.assert_close(latents[1], w.encode(b, 16000)[0])
    outs = w([a, b], 16000)
    assert [o.shape[-1] for o in outs] == [-(-9000 * 22050 // 16000), -(-20000 * 22050 // 16000)]


def test_precision_errors(models):
    with pytest.raises(ValueError, match="fp16"):
        DCAEInferenceWrapper(models / "generator.pt", TINY, models / "vocoder", precision="fp16", device="cpu")
    w = DCAEInferenceWrapper(models / "generator.pt", TINY, models / "vocoder", precision="bf16", device="cpu")
    assert w.encode(torch.randn(5000) * 0.1, 22050).dtype == torch.float32


def test_default_config_parity(models, speech_files, tmp_path, on_device):
    """The published 190M DC-AE configuration, end to end on real speech (ours on the device under test)."""
    torch.manual_seed(4)
    save_generator(DCAEWrapper(DEFAULT_CONFIG), tmp_path / "generator.pt")
    (tmp_path / "vocoder").symlink_to(models / "vocoder")
    w = DCAEInferenceWrapper(tmp_path / "generator.pt", DEFAULT_CONFIG, tmp_path / "vocoder", device=on_device)
    audio = load_audio(speech_files[0], 22050)
    expected_audio, _ = reference_pipeline(tmp_path, DEFAULT_CONFIG, audio)
    assert rel(w(audio, 22050), expected_audio[..., : audio.shape[0]]) < 1e-4
