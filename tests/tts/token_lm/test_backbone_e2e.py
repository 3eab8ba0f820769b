"""Text -> a token LM on a (tiny, random) Qwen2 backbone -> S3-rate speech tokens -> token-flow -> audio,
streamed, on recorded speech: the prompts of the fetched speech (tiny random DC-AE latents), tokens at
25 Hz over S3Tokenizer's 6561 codes from the real S3Tokenizer v2 architecture with random weights
(``dcae tokens``), both stages trained briefly. Plumbing, not quality: the audio has the length the
tokens imply and comes out while the LM is still writing. Also ``dcae tts --checkpoint`` on a
CosyVoice 2 folder and its refusals."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dcae.cli import main as dcae_main
from dcae.corpus import load_tokens
from tests.conftest import TINY_CONFIG, export_short_speech, text_from_name
from tests.tts.token_lm.test_backbone import cosyvoice_folder
from tests.tts.token_lm.tiny_backbone import tiny_qwen
from tts.token_flow.length_regulator import frames_for_tokens
from tts.train import main as train_main

pytest.importorskip("transformers")
SAMPLES_PER_FRAME = 256 * 16
TEXT = "agent logged off, all circuits are busy now"


@pytest.fixture(scope="module")
def s3_runs(tiny_generator, small_vocoder, speech_dir, tmp_path_factory) -> dict[str, Path]:
    try:
        from tts.tokenizers.s3_weights import build_s3_model, import_s3tokenizer

        import_s3tokenizer()
    except Exception:  # noqa: BLE001
        pytest.skip("the s3tokenizer package is not installed (README, 'Extras')")
    from s3tokenizer.model_v2 import ModelConfig

    import tts.tokenizers.load
    from dcae.cli.tokens import tokens_command
    from tts.tokenizers.s3 import S3Tokenizer

    root = tmp_path_factory.mktemp("backbone_e2e")
    manifest = export_short_speech(root, speech_dir, 16, tiny_generator, small_vocoder)
    torch.manual_seed(0)
    s3 = S3Tokenizer(build_s3_model(ModelConfig(n_mels=128, n_audio_state=128, n_audio_head=2, n_audio_layer=2)))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tts.tokenizers.load, "load_tokenizer", lambda spec, **kw: s3)
        result = CliRunner().invoke(tokens_command, ["--manifest", str(manifest), "--tokenizer", "s3",
                                                     "--num-workers", "0", "--device", "cpu"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    texts = [text_from_name(p) for p in sorted((speech_dir / "en").glob("*.wav"))] + [TEXT]
    qwen = tiny_qwen(root / "qwen", texts, tokenizer_vocab=280)
    common = ["--manifest", str(manifest), "--preset", "tiny", "--batch-size", "8", "--cpu-threads", "1",
              "--precision", "fp32"]
    assert train_main(["--model", "token-flow", "--output-dir", str(root / "flow"), "--max-steps", "20",
                       "--save-interval", "20", *common]) == 0
    assert train_main(["--model", "token-lm", "--output-dir", str(root / "lm"), "--max-steps", "20",
                       "--save-interval", "20", "--backbone", str(qwen), "--bistream", "true", "--text-chunk", "5",
                       "--speech-chunk", "15", *common]) == 0
    return {"flow": root / "flow", "lm": root / "lm", "qwen": qwen}


def test_text_to_streaming_audio_through_a_backbone_lm(s3_runs, tiny_generator, small_vocoder, tmp_path):
    wav, tokens = tmp_path / "out.wav", tmp_path / "tokens.safetensors"
    for text_stream in ([], ["--text-stream"]):
        result = CliRunner().invoke(dcae_main, [
            "tts", "--checkpoint", str(s3_runs["lm"]), "--flow", str(s3_runs["flow"]), "--text", TEXT, "--stream",
            *text_stream, "-o", str(wav), "--out-tokens", str(tokens), "--seed", "1", "--ae-model",
            str(tiny_generator), "--ae-config", str(TINY_CONFIG), "--vocoder", str(small_vocoder)])
        assert result.exit_code == 0, result.output
        written, meta = load_tokens(tokens)
        assert meta.token_rate == 25.0 and written.max() < 6561
        frames = frames_for_tokens(written.numel(), 25.0 / (22050 / 256 / 16))
        samples, rate = sf.read(wav)
        assert rate == 22050 and len(samples) == frames * SAMPLES_PER_FRAME
        first = re.search(r"LM had written (\d+) of (\d+) tokens", result.output)
        assert first and int(first.group(1)) < int(first.group(2)) == written.numel(), result.output


def test_dcae_tts_reads_a_cosyvoice2_folder(tmp_path):
    qwen = tiny_qwen(tmp_path / "qwen", ["hello world", "the lazy dog"] * 4)
    cosyvoice_folder(tmp_path / "CosyVoice2-0.5B", qwen, codebook=6561)
    out = tmp_path / "tokens.safetensors"
    result = CliRunner().invoke(dcae_main, ["tts", "--checkpoint", str(tmp_path / "CosyVoice2-0.5B"), "--text",
                                            "hello world", "--out-tokens", str(out), "--top-k", "10"])
    assert result.exit_code == 0, result.output
    tokens, meta = load_tokens(out)
    assert meta.token_rate == 25.0 and 0 < tokens.numel() <= 20 * 2 and tokens.max() < 6561
    (tmp_path / "CosyVoice2-0.5B" / "cosyvoice2.yaml").unlink()
    result = CliRunner().invoke(dcae_main, ["tts", "--checkpoint", str(tmp_path / "CosyVoice2-0.5B"), "--text",
                                            "hello", "--out-tokens", str(out)])
    message = result.output.strip()
    assert result.exit_code == 2 and "missing cosyvoice2.yaml" in message and len(message.splitlines()) == 1, message
