"""S3Tokenizer v2 through tts.tokenizers.s3, on the package's own model classes with RANDOM weights
(built from its ModelConfig: nothing is downloaded): 25 tokens/s, batch == single, long audio in
independent 30 s windows, and the one-line offline message."""
from __future__ import annotations

import math
import urllib.error
import urllib.request

import pytest
import torch

from tts.tokenizers import s3_weights
from tts.tokenizers.s3_weights import S3TokenizerUnavailable, S3WeightsNotFound

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _s3tokenizer():
    try:
        return s3_weights.import_s3tokenizer()
    except S3TokenizerUnavailable:
        pytest.skip(f"the s3tokenizer package is not installed: {s3_weights.INSTALL_HINT}")


def babble(seconds: float, sample_rate: int, seed: int = 0) -> torch.Tensor:
    """Speech-like test signal (samples,): a gliding harmonic voice in syllable bursts, plus noise."""
    g = torch.Generator().manual_seed(seed)
    n = int(round(seconds * sample_rate))
    t = torch.arange(n, dtype=torch.float64) / sample_rate
    f0 = 120 + 60 * torch.sin(2 * math.pi * 0.7 * t + 6 * torch.rand(1, generator=g, dtype=torch.float64))
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
    voice = sum(torch.sin(k * phase) / k for k in range(1, 12))
    syllables = torch.relu(torch.sin(2 * math.pi * 3.1 * t)) ** 2
    noise = torch.randn(n, generator=g, dtype=torch.float64) * (torch.sin(2 * math.pi * 0.9 * t) > 0.6)
    return (0.1 * voice * syllables + 0.03 * noise).float()


@pytest.fixture(scope="module")
def tok():
    """S3Tokenizer around a small S3TokenizerV2 (2 layers, 128 wide) with random weights (seed 0)."""
    _s3tokenizer()
    from s3tokenizer.model_v2 import ModelConfig

    from tts.tokenizers.s3 import S3Tokenizer

    torch.manual_seed(0)
    model = s3_weights.build_s3_model(ModelConfig(n_mels=128, n_audio_state=128, n_audio_head=2, n_audio_layer=2))
    return S3Tokenizer(model)


def alone(tok, mel: torch.Tensor) -> torch.Tensor:
    """The package's model on one mel (n_mels, T) <= 30 s, with nothing else in the batch -> codes (N,)."""
    codes, n = tok.model.quantize(mel[None], torch.tensor([mel.shape[-1]]))
    return codes[0, :int(n[0])].long()


def test_25_tokens_per_second_and_ids_in_range(tok):
    assert tok.token_rate == 25.0 and tok.sample_rate == 16000 and tok.codebook_size == 3 ** 8
    for seconds, sr in [(0.5, 16000), (1.0, 16000), (3.3, 22050), (7.77, 48000), (12.01, 44100)]:
        audio = babble(seconds, sr)
        (tokens,) = tok.tokenize(audio, sr)
        assert tokens.dtype == torch.long and tokens.ndim == 1
        assert abs(tokens.numel() - seconds * 25) <= 1, (seconds, sr, tokens.numel())
        assert tokens.numel() == tok.num_tokens(audio.numel(), sr)
        assert 0 <= int(tokens.min()) and int(tokens.max()) < tok.codebook_size
    assert tokens.unique().numel() > 20  # random weights still give varied tokens on this signal


def test_batch_equals_single(tok):
    clips = [babble(2.1, 22050, 1), babble(5.0, 22050, 2), babble(0.7, 22050, 3), babble(3.0, 22050, 4)]
    batched = tok.tokenize(clips, 22050)
    for clip, tokens in zip(clips, batched):
        assert torch.equal(tokens, tok.tokenize(clip, 22050)[0])
    same_length = torch.stack([babble(2.0, 16000, 5), babble(2.0, 16000, 6)])  # (B, samples)
    as_batch = tok.tokenize(same_length, 16000)
    assert [torch.equal(a, tok.tokenize(c, 16000)[0]) for a, c in zip(as_batch, same_length)] == [True, True]


def test_deterministic_in_eval_mode_and_train_state_restored(tok):
    audio = babble(4.0, 16000, 7)
    tok.train()
    try:
        first = tok.tokenize(audio, 16000)[0]
        assert tok.training and tok.model.training
        assert torch.equal(first, tok.tokenize(audio, 16000)[0])
    finally:
        tok.eval()


def test_long_audio_70s_windows_are_independent(tok):
    audio = babble(70.0, 16000, 8)
    (tokens,) = tok.tokenize(audio, 16000)
    assert tokens.numel() == 70 * 25
    mel = tok.log_mel(audio)  # (128, 7000) frames at 100 Hz; 4 frames per token
    # 30 s windows every 26 s; each 4 s overlap is split in the middle (2 s = 50 tokens to each side)
    assert torch.equal(tokens[:700], alone(tok, mel[:, 0:3000])[:700])
    assert torch.equal(tokens[700:1350], alone(tok, mel[:, 2600:5600])[50:700])
    assert torch.equal(tokens[1350:], alone(tok, mel[:, 5200:7000])[50:])
    # the package's own long-audio path agrees at this length
    codes, n = tok.model.quantize(mel[None], torch.tensor([mel.shape[-1]]))
    assert torch.equal(tokens, codes[0, :int(n[0])].long())
    # a long clip batched with short ones: each as if alone
    short = babble(1.3, 16000, 9)
    batched = tok.tokenize([short, audio, babble(31.0, 16000, 10)], 16000)
    assert torch.equal(batched[0], tok.tokenize(short, 16000)[0]) and torch.equal(batched[1], tokens)
    assert batched[2].numel() == 31 * 25


def test_long_audio_keeps_the_tail(tok):
    """80 s: the package's own long path drops 2 s of tokens here (S3Tokenizer issue #53); ours keeps them."""
    audio = babble(80.0, 16000, 11)
    (tokens,) = tok.tokenize(audio, 16000)
    assert tokens.numel() == 80 * 25
    mel = tok.log_mel(audio)
    assert torch.equal(tokens[1350:], alone(tok, mel[:, 5200:8000])[50:])


def test_published_architecture_on_random_weights():
    _s3tokenizer()
    from tts.tokenizers.s3 import S3Tokenizer

    torch.manual_seed(0)
    tok = S3Tokenizer()  # the published sizes (6 layers, 1280 wide, 128 mels), random weights
    assert sum(p.numel() for p in tok.parameters()) > 100_000_000
    (tokens,) = tok.tokenize(babble(2.0, 16000), 16000)
    assert tokens.numel() == 50 and int(tokens.max()) < 6561 and int(tokens.min()) >= 0


def test_too_short_clip_is_one_line(tok):
    with pytest.raises(ValueError, match=r"^clip 1: too short for S3Tokenizer \(100 samples"):
        tok.tokenize([babble(1.0, 16000), torch.zeros(100)], 16000)


def test_token_file_round_trip(tok, tmp_path):
    from dcae.corpus.token_file import load_tokens

    (tokens,) = tok.tokenize(babble(2.0, 16000), 16000)
    tok.save_tokens(tmp_path / "clip.safetensors", tokens)
    loaded, meta = load_tokens(tmp_path / "clip.safetensors")
    assert torch.equal(loaded, tokens) and meta.token_rate == 25.0
    assert meta.extra["tokenizer"] == "s3tokenizer:speech_tokenizer_v2_25hz" and meta.extra["codebook_size"] == "6561"


# --- weights: offline messages -------------------------------------------------------------------

def _assert_offline_message(message: str, cache_dir, flag: str = "--s3-model") -> None:
    assert "\n" not in message
    for part in ("speech_tokenizer_v2_25hz.onnx", "https://www.modelscope.cn/", str(cache_dir / "speech_tokenizer_v2_25hz.onnx"),
                 flag, "DCAE_S3_TOKENIZER"):
        assert part in message, (part, message)


def test_offline_and_not_cached_is_one_line(tmp_path, monkeypatch):
    _s3tokenizer()
    from tts.tokenizers import load_tokenizer
    from tts.tokenizers.s3 import S3Tokenizer

    monkeypatch.delenv("DCAE_S3_TOKENIZER", raising=False)
    monkeypatch.setattr(s3_weights, "_host_reachable", lambda url, timeout=0: False)
    with pytest.raises(S3WeightsNotFound) as e:
        S3Tokenizer.from_pretrained(cache_dir=tmp_path)
    _assert_offline_message(str(e.value), tmp_path)
    assert "offline and not cached" in str(e.value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # the package's default cache follows it
    with pytest.raises(S3WeightsNotFound) as e:
        load_tokenizer("s3", s3_flag="--tokens-s3-model")
    _assert_offline_message(str(e.value), tmp_path / "s3tokenizer", flag="--tokens-s3-model")


def test_failed_download_is_one_line(tmp_path, monkeypatch):
    _s3tokenizer()

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.delenv("DCAE_S3_TOKENIZER", raising=False)
    monkeypatch.setattr(s3_weights, "_host_reachable", lambda url, timeout=0: True)
    monkeypatch.setattr(urllib.request, "urlopen", no_network)  # what the package downloads with
    with pytest.raises(S3WeightsNotFound) as e:
        s3_weights.load_s3_model(cache_dir=tmp_path)
    _assert_offline_message(str(e.value), tmp_path)
    assert "URLError" in str(e.value)


def test_local_weight_paths_are_checked(tmp_path, monkeypatch):
    _s3tokenizer()
    monkeypatch.setenv("DCAE_S3_TOKENIZER", str(tmp_path / "missing.onnx"))
    with pytest.raises(S3WeightsNotFound, match=r"missing\.onnx \(from DCAE_S3_TOKENIZER\): S3Tokenizer weight file not found"):
        s3_weights.load_s3_model()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not an onnx model")
    with pytest.raises(S3TokenizerUnavailable) as e:
        s3_weights.load_s3_model(junk)
    assert str(e.value).startswith(f"{junk}: not the S3Tokenizer speech_tokenizer_v2_25hz ONNX file")
    assert "\n" not in str(e.value)
