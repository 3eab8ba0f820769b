"""End to end on recorded speech, two-stage shape: audio -> latents (dcae export) + speech tokens (our
FSQ tokenizer) -> token-flow (tiny, brief training) -> streaming audio.

Quality is not the point (random tiny autoencoder, random tiny FSQ tokenizer, a small random BigVGAN
in NVIDIA's layout, a few training steps); the pipeline must run, stream, and give audio of the
length the tokens imply, with the first audio chunk out before the last token was read.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dcae.cli import main as dcae_main
from dcae.corpus import load_latent, read_manifest, write_manifest
from tests.conftest import TINY_CONFIG, export_short_speech
from tts.run import load_run
from tts.token_flow.streaming import stream_audio
from tts.train import main as train_main

SAMPLES_PER_FRAME = 256 * 16

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py: small models, shared CPU


@pytest.fixture(scope="module")
def corpus(tiny_generator, small_vocoder, speech_dir, tmp_path_factory) -> Path:
    """Manifest of ~12 short recordings with latents and FSQ token files (token_path, num_tokens, token_rate)."""
    from dcae.audio import load_audio
    from tts.tokenizers import FSQTokenizer, fsq_preset

    root = tmp_path_factory.mktemp("speech_tokens")
    manifest = export_short_speech(root, speech_dir, 12, tiny_generator, small_vocoder, with_text=False)
    torch.manual_seed(0)
    tokenizer = FSQTokenizer(fsq_preset("tiny")).eval()  # random weights: deterministic tokens all the same
    rows = read_manifest(manifest)
    for row in rows:
        tokens = tokenizer.tokenize(load_audio(row["audio_path"], 22050), 22050)[0]
        path = Path(row["latent_path"]).with_suffix(".tokens.safetensors")
        tokenizer.save_tokens(path, tokens)
        row.update(token_path=str(path), num_tokens=tokens.numel(), token_rate=tokenizer.token_rate)
    write_manifest(manifest, rows)
    return manifest


def test_speech_to_tokens_to_streaming_audio(corpus, tiny_generator, small_vocoder, tmp_path, on_device):
    """Trained, streamed and synthesized on the device under test."""
    from dcae.corpus import load_tokens
    from dcae.pipeline import DCAEInferenceWrapper

    assert train_main(["--model", "token-flow", "--manifest", str(corpus), "--output-dir", str(tmp_path / "run"),
                       "--preset", "tiny", "--max-steps", "20", "--batch-size", "8", "--save-interval", "20",
                       "--device", str(on_device)]) == 0
    run = load_run(tmp_path / "run", device=on_device)
    assert run.token_rate == pytest.approx(22050 / 256 / 4) and run.model.cfg.tokens_per_frame == pytest.approx(4.0)

    rows = sorted(read_manifest(corpus), key=lambda r: -int(r["num_tokens"]))
    row = rows[0]  # the longest clip: more frames than the tiny decoder's exact lookahead (6) + a chunk
    tokens = load_tokens(row["token_path"])[0]
    wrapper = DCAEInferenceWrapper(tiny_generator, TINY_CONFIG, small_vocoder, device=on_device)
    read, first_at = [0], None

    def token_source():  # as a language model would hand them over: one at a time, counted
        for token in tokens.tolist():
            read[0] += 1
            yield token

    pieces, latents = [], []
    for audio in stream_audio(run, wrapper, token_source(), on_latent=latents.append, seed=0):
        if first_at is None:
            first_at = read[0]
        pieces.append(audio)
    frames = round(tokens.numel() / 4.0)
    print(f"{tokens.numel()} tokens -> {frames} latent frames; first audio chunk after {first_at} tokens read; "
          f"{len(pieces)} audio chunks")
    assert first_at is not None and first_at < tokens.numel()  # audio before the last token was read
    assert len(pieces) > 1
    audio = torch.cat(pieces)
    assert audio.shape == (frames * SAMPLES_PER_FRAME,) and torch.isfinite(audio).all()
    latent = torch.cat(latents, dim=1)
    assert latent.shape == (80, frames)
    assert abs(frames - int(row["num_frames"])) <= 1  # the tokens' length rule matches the exported latent

    # the same through the command line, the clip's own latent and tokens as the voice prompt
    other = rows[-1]
    result = CliRunner().invoke(dcae_main, [
        "tts", "--checkpoint", str(tmp_path / "run"), "--tokens", row["token_path"], "--prompt-latent",
        other["latent_path"], "--prompt-tokens", other["token_path"], "--stream", "-o", str(tmp_path / "out.wav"),
        "--out-latent", str(tmp_path / "out.safetensors"), "--ae-model", str(tiny_generator), "--ae-config",
        str(TINY_CONFIG), "--vocoder", str(small_vocoder), "--device", str(on_device)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert len(sf.read(tmp_path / "out.wav")[0]) == frames * SAMPLES_PER_FRAME
    assert load_latent(tmp_path / "out.safetensors")[0].shape == (80, frames)
