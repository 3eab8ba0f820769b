"""Our FSQ tokenizer (tts.tokenizers.fsq): tokens deterministic, in range, ceil(T / 4) of them,
batch == single; reconstruction path; codebook usage; run folders and their one-line errors."""
from __future__ import annotations

import json
import math

import pytest
import torch

from dcae.errors import ConfigError
from tts.tokenizers import (
    FSQTokenizer,
    FSQTokenizerConfig,
    FSQTokenizerRunError,
    codebook_usage,
    fsq_preset,
    load_fsq_tokenizer,
    load_tokenizer,
    save_fsq_tokenizer,
)
from tts.tokenizers.fsq import PAD_TOKEN
from tts.tokenizers.fsq_run import CONFIG_FILE, WEIGHTS_FILE

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def voice(seconds: float, sample_rate: int = 22050, seed: int = 0) -> torch.Tensor:
    """A gliding harmonic voice in syllable bursts with noise (samples,)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    f0 = 110 + 50 * torch.sin(2 * math.pi * 0.8 * t + 6 * torch.rand(1, generator=g, dtype=torch.float64))
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
    x = sum(torch.sin(k * phase) / k for k in range(1, 15)) * torch.relu(torch.sin(2 * math.pi * 2.7 * t)) ** 2
    return (0.1 * x + 0.01 * torch.randn(t.numel(), generator=g, dtype=torch.float64)).float()


@pytest.fixture(scope="module")
def tok() -> FSQTokenizer:
    torch.manual_seed(0)
    return FSQTokenizer(fsq_preset("tiny")).eval()


@pytest.fixture(scope="module")
def mels(tok) -> list[torch.Tensor]:
    """BigVGAN log-mels (80, T) of different lengths, T not all multiples of 4."""
    return [tok.mel(voice(s, seed=i))[0] for i, s in enumerate([2.0, 0.93, 3.37, 0.05])]


def test_rates_and_sizes():
    cfg = fsq_preset("tiny")
    assert cfg.codebook_size == 8 * 5 * 5 * 5 and fsq_preset("base").codebook_size == 15360
    assert cfg.token_rate == pytest.approx(22050 / 256 / 4) and cfg.tokens_per_latent_frame == 4
    assert cfg.token_rate == pytest.approx(4 * 22050 / 4096)  # an integer multiple of the latent frame rate


def test_tokens_deterministic_in_range_and_counted(tok, mels):
    for mel in mels:
        tokens = tok.encode(mel[None])
        assert tokens.shape == (1, math.ceil(mel.shape[-1] / 4)) and tokens.dtype == torch.long
        assert 0 <= int(tokens.min()) and int(tokens.max()) < tok.codebook_size
        assert torch.equal(tokens, tok.encode(mel[None]))
    tok.train()  # no dropout or noise anywhere: training mode gives the same ids
    try:
        assert torch.equal(tok.encode(mels[0][None]), tok.encode(mels[0][None]))
        first = tok.tokenize(voice(1.5), 22050)[0]
        assert tok.training
    finally:
        tok.eval()
    assert torch.equal(first, tok.tokenize(voice(1.5), 22050)[0])
    assert tok.encode(mels[0][None]).unique().numel() > 5


def test_tokenize_counts_and_batch_equals_single(tok):
    clips = [voice(1.0, 22050, 1), voice(2.7, 22050, 2), voice(0.3, 22050, 3)]
    batched = tok.tokenize(clips, 22050)
    for clip, tokens in zip(clips, batched):
        assert tokens.numel() == tok.num_tokens(clip.numel(), 22050) == math.ceil((clip.numel() // 256) / 4)
        assert abs(tokens.numel() - clip.numel() / 22050 * tok.token_rate) <= 1
        assert torch.equal(tokens, tok.tokenize(clip, 22050)[0])
    at_16k = voice(2.0, 16000, 4)  # resampled to 22050 first
    assert tok.tokenize(at_16k, 16000)[0].numel() == tok.num_tokens(at_16k.numel(), 16000)
    with pytest.raises(ValueError, match=r"^clip 0: too short for the FSQ tokenizer"):
        tok.tokenize(torch.zeros(500), 22050)


def test_encode_decode_batch_equals_single(tok, mels):
    lengths = torch.tensor([m.shape[-1] for m in mels])
    batch = torch.zeros(len(mels), 80, int(lengths.max()))
    for i, m in enumerate(mels):
        batch[i, :, :m.shape[-1]] = m
    tokens = tok.encode(batch, lengths)
    recon = tok.reconstruct(batch, lengths)
    token_lengths = tok.token_lengths(lengths)
    decoded = tok.decode(tokens, token_lengths)
    for i, m in enumerate(mels):
        n = int(token_lengths[i])
        single = tok.encode(m[None])[0]
        assert torch.equal(tokens[i, :n], single) and bool((tokens[i, n:] == PAD_TOKEN).all())
        t = m.shape[-1]
        torch.testing.assert_close(recon[i, :, :t], tok.reconstruct(m[None])[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(decoded[i, :, :n * 4], tok.decode(single[None])[0], atol=1e-5, rtol=0)
        # reconstruction goes through exactly the tokens
        torch.testing.assert_close(tok.reconstruct(m[None])[0], tok.decode(single[None])[0, :, :t], atol=1e-5, rtol=0)


def test_forward_gives_losses_that_train_the_encoder(tok, mels):
    tok.train()
    try:
        out = tok(mels[0][None])
        out["loss"].backward()
    finally:
        tok.eval()
    assert set(out) >= {"loss", "mel_l1"} and out["loss"].ndim == 0
    assert out["mel_l1"].item() == pytest.approx(out["loss"].item() * tok.config.mel_std, rel=1e-5)
    grad = tok.encoder.inp.weight.grad  # through FSQ's straight-through rounding
    assert grad is not None and grad.abs().sum() > 0
    tok.zero_grad(set_to_none=True)


def test_codebook_usage():
    usage = codebook_usage(torch.tensor([[0, 0, 1, 1], [2, 3, -1, -1]]), codebook_size=8)
    assert (usage.num_tokens, usage.codes_used, usage.used_fraction) == (6, 4, 0.5)
    expected = math.exp(-(2 * (1 / 3) * math.log(1 / 3) + 2 * (1 / 6) * math.log(1 / 6)))
    assert usage.perplexity == pytest.approx(expected)
    assert codebook_usage([torch.tensor([5, 5]), torch.tensor([5])], 8).perplexity == pytest.approx(1.0)
    with pytest.raises(ValueError, match="outside the codebook"):
        codebook_usage(torch.tensor([8]), 8)


def test_config_checks():
    with pytest.raises(ConfigError, match="must divide 16"):
        fsq_preset("tiny", mel_frames_per_token=3)
    with pytest.raises(ConfigError, match="levels"):
        FSQTokenizerConfig(levels=[8, 2]).check()
    with pytest.raises(ConfigError, match="unknown FSQ tokenizer preset"):
        fsq_preset("huge")
    assert FSQTokenizer(fsq_preset("tiny", mel_frames_per_token=8)).token_rate == pytest.approx(22050 / 2048)


def test_save_load_round_trip_and_token_files(tok, mels, tmp_path):
    from dcae.corpus.token_file import load_tokens

    save_fsq_tokenizer(tok, tmp_path / "run", extra={"steps": 0})
    loaded = load_fsq_tokenizer(tmp_path / "run")
    assert loaded.config == tok.config and not loaded.training
    assert torch.equal(loaded.encode(mels[2][None]), tok.encode(mels[2][None]))
    assert isinstance(load_tokenizer(tmp_path / "run"), FSQTokenizer)
    (tokens,) = loaded.tokenize(voice(1.0), 22050)
    loaded.save_tokens(tmp_path / "clip.safetensors", tokens)
    back, meta = load_tokens(tmp_path / "clip.safetensors")
    assert torch.equal(back, tokens) and meta.token_rate == pytest.approx(tok.token_rate)
    assert meta.extra == {"tokenizer": "fsq", "codebook_size": "1000", "levels": "8,5,5,5"}


def _one_line_error(run_dir, reason_pattern: str):
    with pytest.raises(FSQTokenizerRunError) as e:
        load_fsq_tokenizer(run_dir)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{run_dir}: "), message
    assert __import__("re").search(reason_pattern, message), message


def test_loader_errors_are_one_line(tok, tmp_path):
    _one_line_error(tmp_path / "nowhere", "folder not found")
    (tmp_path / "file").write_text("x")
    _one_line_error(tmp_path / "file", "not a folder")
    _one_line_error(tmp_path, f"no {CONFIG_FILE}")
    run = save_fsq_tokenizer(tok, tmp_path / "run")
    config = json.loads((run / CONFIG_FILE).read_text())
    (run / CONFIG_FILE).write_text("{not json")
    _one_line_error(run, "not valid JSON")
    (run / CONFIG_FILE).write_text(json.dumps({**config, "kind": "something-else"}))
    _one_line_error(run, "does not describe an FSQ tokenizer")
    (run / CONFIG_FILE).write_text(json.dumps({**config, "config": {**config["config"], "width": 3}}))
    _one_line_error(run, "unknown FSQ tokenizer config field.*width")
    (run / CONFIG_FILE).write_text(json.dumps({**config, "config": {**config["config"], "channels": 32}}))
    _one_line_error(run, f"{WEIGHTS_FILE} does not match {CONFIG_FILE}.*wrong shape")
    (run / CONFIG_FILE).write_text(json.dumps(config))
    (run / WEIGHTS_FILE).write_bytes(b"\x00" * 10)
    _one_line_error(run, "not a readable safetensors file")
    (run / WEIGHTS_FILE).unlink()
    _one_line_error(run, "weights missing")
