"""Two-stage TTS end to end on recorded speech: prompts named after what they say (~/.cache/dcae-speech/en,
'agent-loggedoff.wav' -> 'agent loggedoff') -> latents (dcae export, tiny random DC-AE) + speech tokens
(dcae tokens, a tiny random FSQ tokenizer) -> token-flow and token-lm (tiny, trained briefly) -> text ->
tokens -> latents -> audio, streamed.

Quality is not the point. What must hold: the audio has the duration the LM's tokens imply
(frames = round(tokens / tokens-per-frame), frames x 4096 samples), the LM's length stays within its
rule, and with streaming the first audio chunk comes out while the LM is still writing tokens
(instrumented: tokens written at the first audio chunk < tokens written in all).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dcae.cli import main as dcae_main
from dcae.corpus import load_latent, load_tokens, read_manifest
from tests.conftest import TINY_CONFIG, export_short_speech, text_from_name
from tts.run import load_run
from tts.token_flow.length_regulator import frames_for_tokens
from tts.train import main as train_main
from tts.two_stage import prompt_from_audio, speak

SAMPLES_PER_FRAME = 256 * 16
TEXT = "agent logged off, all circuits are busy now; please try your call again later"


@pytest.fixture(scope="module")
def two_stage(tiny_generator, small_vocoder, speech_dir, tmp_path_factory) -> dict[str, Path]:
    from dcae.cli.tokens import tokens_command
    from tts.tokenizers import FSQTokenizer, fsq_preset, save_fsq_tokenizer

    root = tmp_path_factory.mktemp("two_stage")
    manifest = export_short_speech(root, speech_dir, 16, tiny_generator, small_vocoder)
    torch.manual_seed(0)
    fsq = save_fsq_tokenizer(FSQTokenizer(fsq_preset("tiny")), root / "fsq")
    result = CliRunner().invoke(tokens_command, ["--manifest", str(manifest), "--tokenizer", str(fsq),
                                                 "--num-workers", "0", "--device", "cpu"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    common = ["--manifest", str(manifest), "--preset", "tiny", "--batch-size", "8", "--cpu-threads", "1",
              "--precision", "fp32"]
    assert train_main(["--model", "token-flow", "--output-dir", str(root / "flow"), "--max-steps", "20",
                       "--save-interval", "20", *common]) == 0
    assert train_main(["--model", "token-lm", "--output-dir", str(root / "lm"), "--max-steps", "30",
                       "--save-interval", "30", "--bistream", "true", "--text-chunk", "5", "--speech-chunk", "5",
                       *common]) == 0
    return {"manifest": manifest, "fsq": fsq, "flow": root / "flow", "lm": root / "lm", "prompt": Path(read_manifest(manifest)[0]["audio_path"])}


def test_text_to_streaming_audio_first_chunk_before_the_lm_ends(two_stage, tiny_generator, small_vocoder):
    from dcae.audio import load_audio
    from dcae.pipeline import DCAEInferenceWrapper
    from tts.tokenizers import load_tokenizer

    lm, flow = load_run(two_stage["lm"]), load_run(two_stage["flow"])
    assert lm.token_rate == flow.token_rate == pytest.approx(22050 / 256 / 4)
    wrapper = DCAEInferenceWrapper(tiny_generator, TINY_CONFIG, small_vocoder, device="cpu")
    tokenizer = load_tokenizer(two_stage["fsq"])
    prompt_audio = load_audio(two_stage["prompt"], tokenizer.sample_rate)
    prompt = prompt_from_audio(wrapper, tokenizer, prompt_audio, tokenizer.sample_rate)
    assert prompt.latent.shape[0] == 80 and abs(prompt.tokens.numel() - 4 * prompt.latent.shape[1]) <= 4

    for text_stream in (False, True):
        written, chunks, at_first = [], [], None
        source = list(TEXT) if text_stream else TEXT
        for audio in speak(lm, flow, wrapper, source, text_stream=text_stream, prompt=prompt,
                           prompt_text=text_from_name(two_stage["prompt"]), seed=0, on_token=written.append):
            if at_first is None:
                at_first = len(written)
            chunks.append(audio)
        n = len(written)
        frames = frames_for_tokens(n, 4.0)
        print(f"text_stream={text_stream}: {len(TEXT)} characters -> {n} tokens -> {frames} latent frames; first "
              f"audio chunk when the LM had written {at_first} of {n} tokens; {len(chunks)} audio chunks")
        ids = len(lm.frontend.encode(TEXT))
        assert lm.latent_info["min_len_ratio"] * ids - 1 <= n <= lm.latent_info["max_len_ratio"] * ids + 1
        assert at_first is not None and at_first < n  # audio came out while the LM was still writing
        audio = torch.cat(chunks)
        assert audio.shape == (frames * SAMPLES_PER_FRAME,) and torch.isfinite(audio).all()


def test_command_line_text_to_wav_with_a_prompt(two_stage, tiny_generator, small_vocoder, tmp_path, on_device):
    """Text -> token LM -> token flow -> streamed audio, on the device under test."""
    wav, latent, tokens = tmp_path / "out.wav", tmp_path / "out.safetensors", tmp_path / "tokens.safetensors"
    result = CliRunner().invoke(dcae_main, [
        "tts", "--checkpoint", str(two_stage["lm"]), "--flow", str(two_stage["flow"]), "--text", TEXT,
        "--prompt-audio", str(two_stage["prompt"]), "--prompt-text", text_from_name(two_stage["prompt"]),
        "--tokenizer", str(two_stage["fsq"]), "--stream", "-o", str(wav), "--out-latent", str(latent),
        "--out-tokens", str(tokens), "--seed", "1", "--ae-model", str(tiny_generator), "--ae-config",
        str(TINY_CONFIG), "--vocoder", str(small_vocoder), "--device", str(on_device)])
    assert result.exit_code == 0, result.output
    n = load_tokens(tokens)[0].numel()
    frames = frames_for_tokens(n, 4.0)
    assert load_latent(latent)[0].shape == (80, frames)
    samples, rate = sf.read(wav)
    assert rate == 22050 and len(samples) == frames * SAMPLES_PER_FRAME
    first = re.search(r"LM had written (\d+) of (\d+) tokens", result.output)
    assert first and int(first.group(1)) < int(first.group(2)) == n, result.output
    # offline (no --stream): the same tokens for the same seed, and a latent of the same length
    result = CliRunner().invoke(dcae_main, [
        "tts", "--checkpoint", str(two_stage["lm"]), "--flow", str(two_stage["flow"]), "--text", TEXT,
        "--prompt-audio", str(two_stage["prompt"]), "--prompt-text", text_from_name(two_stage["prompt"]),
        "--tokenizer", str(two_stage["fsq"]), "--out-latent", str(tmp_path / "offline.safetensors"),
        "--out-tokens", str(tmp_path / "offline_tokens.safetensors"), "--seed", "1", "--ae-model",
        str(tiny_generator), "--ae-config", str(TINY_CONFIG), "--vocoder", str(small_vocoder), "--device",
        str(on_device)])
    assert result.exit_code == 0, result.output
    assert load_tokens(tmp_path / "offline_tokens.safetensors")[0].tolist() == load_tokens(tokens)[0].tolist()
    assert load_latent(tmp_path / "offline.safetensors")[0].shape == (80, frames)
