"""End to end on recorded speech: audio -> tiny VAE latents (dcae export) -> tiny TTS -> dcae tts -o out.wav.

Quality is not the point (random tiny autoencoder and a small random BigVGAN in NVIDIA's layout);
the pipeline must run and write audio whose length matches the latent frames it made.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dcae.cli import main as dcae_main
from dcae.corpus import load_latent
from tests.conftest import TINY_CONFIG, export_short_speech
from tts.train import main as train_main

SAMPLES_PER_FRAME = 256 * 16


@pytest.fixture(scope="module")
def latents(tiny_generator, small_vocoder, speech_dir, tmp_path_factory) -> Path:
    return export_short_speech(tmp_path_factory.mktemp("speech_latents"), speech_dir, 24, tiny_generator,
                               small_vocoder, min_seconds=0.5)


@pytest.mark.parametrize("kind", ["ar", "flow"])
def test_speech_latents_to_tts_audio(kind, latents, tiny_generator, small_vocoder, tmp_path, on_device):
    """Trained and synthesized on the device under test; the streamed audio checked against a CPU decode."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert train_main(["--model", kind, "--manifest", str(latents), "--output-dir", str(tmp_path / "run"),
                           "--preset", "tiny", "--max-steps", "20", "--batch-size", "8", "--save-interval", "20",
                           "--device", str(on_device)]) == 0
    finally:
        torch.set_num_threads(before)
    wav, latent_file = tmp_path / "out.wav", tmp_path / "out.safetensors"
    args = ["tts", "--checkpoint", str(tmp_path / "run"), "--text", "agent logged on", "-o", str(wav),
            "--out-latent", str(latent_file), "--ae-model", str(tiny_generator), "--ae-config", str(TINY_CONFIG),
            "--vocoder", str(small_vocoder), "--device", str(on_device), "--steps", "4", "--max-frames", "30"]
    result = CliRunner().invoke(dcae_main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    latent, meta = load_latent(latent_file)
    audio, sr = sf.read(wav)
    assert latent.shape[0] == 80 and latent.shape[1] >= 1 and torch.isfinite(latent).all()
    assert sr == 22050 and audio.ndim == 1
    assert len(audio) == latent.shape[1] * SAMPLES_PER_FRAME == meta.num_samples
    if kind == "ar":  # audio decoded chunk by chunk while frames stream == decoding the whole latent
        from dcae.pipeline import DCAEInferenceWrapper

        wrapper = DCAEInferenceWrapper(tiny_generator, TINY_CONFIG, small_vocoder, device="cpu")
        whole = wrapper.decode(latent[None])[0].clamp(-1, 1).numpy()
        assert abs(whole - audio).max() < 2e-4  # 16-bit WAV rounding
    if kind == "flow":  # the duration rule: frames per character fitted on the corpus
        rate = json.loads((tmp_path / "run" / "latent.json").read_text())["frames_per_token"]
        assert latent.shape[1] == max(1, round(rate * len("agent logged on")))
    # a fixed length is honoured by both models
    result = CliRunner().invoke(dcae_main, [*args[:-4], "--frames", "5", "--steps", "2"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(sf.read(wav)[0]) == 5 * SAMPLES_PER_FRAME
