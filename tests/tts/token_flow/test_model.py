"""Token-to-latent flow model: length regulator, chunk-aware attention, streaming == offline.

The model here has random weights, perturbed away from the zero-initialised adaLN outputs (which
would make every velocity zero and every comparison trivially equal); each equality is paired with
a case that must differ, so the checks can fail.
"""
from __future__ import annotations

import random

import pytest
import torch

from tts.token_flow.chunk_attention import frame_mask, token_mask
from tts.token_flow.frame_noise import frame_noise
from tts.token_flow.length_regulator import LengthRegulator, frame_spans, frames_for_tokens, span_slots
from tts.token_flow.model import TokenFlowConfig, TokenFlowModel
from tts.token_flow.streaming import TokenFlowStream

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

S3_RATIO = 25.0 / (22050 / 4096)  # 4.644 tokens per latent frame


def make_model(ratio: float = S3_RATIO, meanflow: bool = False, speaker_dim: int = 0, seed: int = 0,
               separate_encoders: bool = False) -> TokenFlowModel:
    torch.manual_seed(seed)
    cfg = TokenFlowConfig(vocab_size=32, latent_dim=8, width=32, layers=2, heads=2, encoder_layers=2, lookahead=2,
                          tokens_per_frame=ratio, meanflow=meanflow, speaker_dim=speaker_dim,
                          separate_encoders=separate_encoders)
    model = TokenFlowModel(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def run_stream(model, tokens, groups, **kwargs) -> tuple[torch.Tensor, int | None]:
    """Push ``tokens`` in groups of the given sizes; (all new frames, tokens pushed when the first chunk came)."""
    stream = TokenFlowStream(model, **kwargs)
    chunks, first, pushed, i = [], None, 0, 0
    while pushed < len(tokens):
        size = groups[i % len(groups)]
        out = stream.push(tokens[pushed: pushed + size])
        pushed += len(tokens[pushed: pushed + size])
        i += 1
        if out and first is None:
            first = pushed
        chunks += out
    chunks += stream.finish()
    return torch.cat(chunks), first


# ----- length regulator ---------------------------------------------------------------------
def test_frames_follow_the_two_rates():
    assert frames_for_tokens(75, S3_RATIO) == round(75 / 25 * 22050 / 4096) == 16  # 3 s of S3 tokens
    assert frames_for_tokens(40, 4.0) == 10
    spans = frame_spans(0, 5, S3_RATIO)
    assert torch.allclose(spans[:, 1] - spans[:, 0], torch.full((5,), S3_RATIO, dtype=torch.float64))
    assert torch.equal(frame_spans(2, 4, S3_RATIO), spans[2:4])  # a frame's span does not depend on the range
    # with a prompt: its frames share its own tokens, new frames start right after them
    spans = frame_spans(0, 6, S3_RATIO, prompt_frames=3, prompt_tokens=15)
    assert spans[2, 1] == 15 and spans[3, 0] == 15 and spans[4, 0] == pytest.approx(15 + S3_RATIO)
    index, overlap = span_slots(frame_spans(0, 3, S3_RATIO)[None], 6)
    assert torch.allclose(overlap.sum(-1), torch.full((1, 3), S3_RATIO))  # every token counted once in full


def test_regulator_reads_only_the_tokens_a_frame_spans():
    torch.manual_seed(0)
    reg = LengthRegulator(16, S3_RATIO)
    feats = torch.randn(1, 30, 16)
    valid = torch.ones(1, 30, dtype=torch.bool)
    spans = frame_spans(0, 6, S3_RATIO)[None]
    base = reg(feats, valid, spans)
    changed = feats.clone()
    changed[0, 10] += 1  # token 10 lies in frame 2's span [9.29, 13.93) only
    diff = (reg(changed, valid, spans) - base).abs().amax(-1)[0]
    assert diff[2] > 1e-3 and torch.all(diff[[0, 1, 3, 4, 5]] == 0)
    # tokens past the valid ones are never read, whatever their features
    short = valid.clone()
    short[0, 14:] = False
    garbage = feats.clone()
    garbage[0, 14:] = float("nan")
    out = reg(garbage, short, spans)
    assert torch.isfinite(out).all() and torch.equal(out[0, :3], base[0, :3])


# ----- masks and noise ----------------------------------------------------------------------
def test_block_causal_and_full_masks():
    valid = torch.ones(2, 5, dtype=torch.bool)
    mask = frame_mask(torch.tensor([2, 0]), valid)[:, 0]
    expect = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]).bool()
    assert torch.equal(mask[0], expect) and mask[1].all()
    causal = token_mask(torch.tensor([True, False]), torch.ones(2, 4, dtype=torch.bool))[:, 0]
    assert torch.equal(causal[0], torch.ones(4, 4, dtype=torch.bool).tril()) and causal[1].all()


def test_noise_is_fixed_per_frame_position():
    whole = frame_noise(7, 0, 10, 8)
    assert torch.equal(torch.cat([frame_noise(7, 0, 3, 8), frame_noise(7, 3, 10, 8)]), whole)
    assert not torch.equal(frame_noise(8, 0, 10, 8), whole)


def test_incremental_encoder_equals_causal_encoder():
    model = make_model()
    tokens = torch.randint(0, 32, (1, 23))
    valid = torch.ones_like(tokens, dtype=torch.bool)
    with torch.no_grad():
        whole = model.encoder(tokens, valid, torch.tensor([True]))
        cache, parts, done = model.encoder.new_cache(), [], 0
        for n in (5, 6, 13, 23):  # tokens received so far; the last call is the end of the stream
            ready = n if n == 23 else n - model.cfg.lookahead
            parts.append(model.encoder.extend(tokens[:, :n], done, ready, cache))
            done = ready
        bidirectional = model.encoder(tokens, valid, torch.tensor([False]))
    assert rel(torch.cat(parts, 1), whole) < 1e-5
    assert rel(bidirectional, whole) > 1e-2


# ----- streaming == offline with the chunked mask -------------------------------------------
@pytest.mark.parametrize("chunk,cfg_scale,meanflow,separate", [(1, 1.0, False, False), (2, 2.0, False, False),
                                                               (3, 1.5, False, False), (2, 2.0, True, False),
                                                               (2, 1.5, False, True)])
def test_streaming_equals_offline_chunked(chunk, cfg_scale, meanflow, separate):
    model = make_model(meanflow=meanflow, separate_encoders=separate)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 32, (70,), generator=g).tolist()
    prompt, prompt_tokens = torch.randn(3, 8, generator=g), torch.randint(0, 32, (14,), generator=g)
    kwargs = dict(prompt=prompt, prompt_tokens=prompt_tokens, steps=4, cfg_scale=cfg_scale, seed=5,
                  grid="uniform" if meanflow else "sway")
    offline = model.sample(tokens, chunk_frames=chunk, sway=-1.0, **kwargs)
    assert offline.shape == (frames_for_tokens(70, S3_RATIO), 8)
    for groups in ([1], [3, 1, 7]):  # one token at a time, and uneven groups
        streamed, first = run_stream(model, tokens, groups, chunk_frames=chunk, **kwargs)
        err = rel(streamed, offline)
        print(f"chunk {chunk} cfg {cfg_scale} meanflow {meanflow} separate encoders {separate} groups {groups}: "
              f"streaming vs offline "
              f"rel. error {err:.2e}, first chunk after {first} of {len(tokens)} tokens")
        assert err < 1e-5
        assert first is not None and first < len(tokens) // 2
    # a different mask or seed gives different frames (the comparison can fail)
    assert rel(model.sample(tokens, chunk_frames=0, **kwargs), offline) > 1e-2
    assert rel(model.sample(tokens, chunk_frames=chunk, **{**kwargs, "seed": 6}), offline) > 1e-2


def test_chunked_frames_ignore_later_tokens_full_context_does_not():
    model = make_model()
    tokens = torch.randint(0, 32, (60,))
    later = tokens.clone()
    later[40:] = (later[40:] + 1) % 32  # frames 0..7 span tokens < 37.2, plus 2 of lookahead
    for chunk, same in ((2, True), (0, False)):
        a = model.sample(tokens, chunk_frames=chunk, steps=3, seed=0)
        b = model.sample(later, chunk_frames=chunk, steps=3, seed=0)
        assert torch.allclose(a[:8], b[:8], atol=1e-5) == same
        assert not torch.allclose(a[9:], b[9:], atol=1e-3)


def test_stream_without_prompt_and_with_speaker():
    model = make_model(ratio=4.0, speaker_dim=5)
    tokens = torch.randint(0, 32, (33,)).tolist()
    speaker = torch.randn(5)
    offline = model.sample(tokens, chunk_frames=2, steps=3, cfg_scale=2.0, speaker=speaker, seed=1)
    streamed, _ = run_stream(model, tokens, [2], chunk_frames=2, steps=3, cfg_scale=2.0, speaker=speaker, seed=1)
    assert offline.shape[0] == 8 and rel(streamed, offline) < 1e-5
    other = model.sample(tokens, chunk_frames=2, steps=3, cfg_scale=2.0, speaker=-speaker, seed=1)
    assert rel(other, offline) > 1e-3  # the speaker embedding conditions the frames


def test_push_checks_ids_and_order():
    stream = TokenFlowStream(make_model(), chunk_frames=2, steps=2)
    with pytest.raises(ValueError, match="token id 40 out of range"):
        stream.push([1, 40])
    stream.push(list(range(10)))
    stream.finish()
    with pytest.raises(RuntimeError, match="push after finish"):
        stream.push(1)


# ----- training forward ---------------------------------------------------------------------
@pytest.mark.parametrize("options", [{}, {"immiscible": True, "contrastive_weight": 0.05},
                                     {"meanflow": True}, {"speaker_dim": 4, "time_schedule": "cosine"}])
def test_training_losses_are_finite_and_differentiable(options):
    torch.manual_seed(0)
    cfg = TokenFlowConfig(vocab_size=16, latent_dim=8, width=32, layers=2, heads=2, encoder_layers=1,
                          tokens_per_frame=S3_RATIO, **options)
    model = TokenFlowModel(cfg).train()
    lengths = [30, 22, 41]
    tokens = torch.zeros(3, 41, dtype=torch.long)
    token_mask = torch.zeros(3, 41, dtype=torch.bool)
    frames = [frames_for_tokens(n, S3_RATIO) for n in lengths]
    latent, latent_mask = torch.zeros(3, max(frames), 8), torch.zeros(3, max(frames), dtype=torch.bool)
    for i, (n, t) in enumerate(zip(lengths, frames)):
        tokens[i, :n] = torch.randint(0, 16, (n,))
        token_mask[i, :n] = True
        latent[i, :t] = torch.randn(t, 8)
        latent_mask[i, :t] = True
    speaker = torch.randn(3, 4) if options.get("speaker_dim") else None
    losses = model(tokens, token_mask, latent, latent_mask, speaker=speaker)
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    if "contrastive_weight" in options:
        assert "contrast" in losses


def test_random_groups_of_tokens_give_the_same_stream():
    model = make_model()
    tokens = torch.randint(0, 32, (50,)).tolist()
    rng = random.Random(0)
    a, _ = run_stream(model, tokens, [rng.randint(1, 9) for _ in range(20)], chunk_frames=2, steps=3, seed=2)
    b, _ = run_stream(model, tokens, [50], chunk_frames=2, steps=3, seed=2)
    assert rel(a, b) < 1e-5
