"""AR and flow TTS models: KV cache == recompute, streaming, masks, opt-in losses (the objective itself
is tested in test_flow_matching.py)."""
from __future__ import annotations

import itertools

import pytest
import torch

from tts import flow_matching as fm
from tts.one_stage.ar import ARTTS, ARConfig
from tts.one_stage.flow import FlowConfig, FlowTTS


def randomised(model: torch.nn.Module, scale: float = 0.3) -> torch.nn.Module:
    """Every weight drawn at random, so zero-initialised output layers do not hide differences."""
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model.eval()


def ar_model(frames_per_token: float | None = 2.0) -> ARTTS:
    cfg = ARConfig(vocab_size=12, latent_dim=6, width=32, layers=2, heads=2, head_width=32, head_layers=2,
                   frames_per_token=frames_per_token)
    return randomised(ARTTS(cfg))


@pytest.mark.parametrize("frames_per_token, cfg_scale, with_prompt",
                         list(itertools.product([None, 2.0], [1.0, 2.5], [False, True])))
def test_kv_cached_sampling_equals_uncached(frames_per_token, cfg_scale, with_prompt):
    model = ar_model(frames_per_token)
    prompt = torch.randn(3, 6, generator=torch.Generator().manual_seed(7)) if with_prompt else None
    runs = []
    for use_cache in (True, False):
        runs.append(model.generate([3, 4, 5, 6, 7], prompt, max_frames=15, min_frames=15, steps=4,
                                   cfg_scale=cfg_scale, generator=torch.Generator().manual_seed(1), use_cache=use_cache))
    cached, uncached = runs
    assert cached.shape == (15, 6)
    assert cached.std() > 0.5 and (cached[1:] - cached[:-1]).abs().max() > 0.1  # not a constant output
    torch.testing.assert_close(cached, uncached, atol=1e-4, rtol=1e-4)


def test_stream_yields_frames_one_by_one_and_seed_matters():
    model = ar_model()
    stream = model.stream([3, 4, 5], max_frames=6, min_frames=6, steps=2, generator=torch.Generator().manual_seed(0))
    first = next(stream)
    assert first.shape == (6,)
    rest = list(stream)
    assert len(rest) == 5
    again = model.generate([3, 4, 5], max_frames=6, min_frames=6, steps=2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(torch.stack([first, *rest]), again)
    other = model.generate([3, 4, 5], max_frames=6, min_frames=6, steps=2, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(again, other)


def test_stop_head_ends_generation():
    model = ar_model()
    with torch.no_grad():
        model.stop.weight.zero_()
        model.stop.bias.fill_(10.0)  # always "stop"
    assert model.generate([3, 4], max_frames=20, min_frames=2, steps=2).shape == (2, 6)


def test_ar_training_loss_uses_masks():
    """Padding (text on the left, frames on the right) must not change a sample's loss terms."""
    torch.manual_seed(0)
    cfg = ARConfig(vocab_size=12, latent_dim=6, width=32, layers=2, heads=2, head_width=32, head_layers=2,
                   frames_per_token=2.0, cond_drop=0.0, flow_samples=1)
    model = randomised(ARTTS(cfg), 0.1)
    text = torch.tensor([[3, 4, 5]])
    latent = torch.randn(1, 5, 6)
    h_alone = model._states(text, torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 3, dtype=torch.bool), latent,
                            torch.ones(1, 5, dtype=torch.bool))
    padded_text = torch.tensor([[0, 0, 3, 4, 5]])
    tmask = padded_text > 0
    padded_latent = torch.cat([latent, torch.randn(1, 4, 6)], dim=1)
    lmask = torch.arange(9)[None] < 5
    h_padded = model._states(padded_text, tmask, tmask, padded_latent, lmask)
    torch.testing.assert_close(h_padded[:, :6], h_alone, atol=1e-5, rtol=1e-5)
    losses = model.train()(padded_text, tmask, padded_latent, lmask)
    assert set(losses) == {"loss", "flow", "stop"} and torch.isfinite(losses["loss"])


def test_ar_head_trains_with_each_time_schedule_and_rejects_others():
    text, latent = torch.tensor([[3, 4, 5]]), torch.randn(1, 5, 6)
    lmask = torch.ones(1, 5, dtype=torch.bool)
    for schedule in fm.TIME_SCHEDULES:
        cfg = ARConfig(vocab_size=12, latent_dim=6, width=32, layers=2, heads=2, head_width=32, head_layers=2,
                       time_schedule=schedule)
        losses = randomised(ARTTS(cfg), 0.1).train()(text, text > 0, latent, lmask)
        assert torch.isfinite(losses["loss"])
    for make in (lambda: ARTTS(ARConfig(vocab_size=12, latent_dim=6, width=32, heads=2, time_schedule="beta")),
                 lambda: flow_model(time_schedule="beta")):
        with pytest.raises(ValueError, match="time schedule: expected one of"):
            make()


def flow_model(**kw) -> FlowTTS:
    return FlowTTS(FlowConfig(vocab_size=12, latent_dim=6, width=32, layers=2, heads=2, **kw))


@pytest.mark.parametrize("options", [{}, {"immiscible": True, "contrastive_weight": 0.05},
                                     {"meanflow": True, "meanflow_ratio": 0.5}, {"aligned_positions": False,
                                                                                  "text_on_frames": False},
                                     {"time_schedule": "logit_normal"},
                                     {"meanflow": True, "time_schedule": "cosine"}])
def test_flow_losses_backpropagate(options):
    torch.manual_seed(0)
    model = randomised(flow_model(**options), 0.1).train()
    text = torch.tensor([[3, 4, 5, 0], [6, 7, 8, 9]])
    latent = torch.randn(2, 8, 6)
    lmask = torch.arange(8)[None] < torch.tensor([[6], [8]])
    losses = model(text, text > 0, latent, lmask)
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"])
    assert model.blocks[0].ada[1].weight.grad.abs().sum() > 0
    if options.get("contrastive_weight"):
        assert "contrast" in losses


def test_flow_padding_does_not_change_velocity():
    model = randomised(flow_model(), 0.1)
    x, cond = torch.randn(1, 5, 6), torch.randn(1, 5, 6)
    cmask = torch.tensor([[True, True, False, False, False]])
    s = torch.tensor([0.3])
    alone = model.velocity(x, s, cond, cmask, torch.tensor([[3, 4]]), torch.ones(1, 2, dtype=torch.bool),
                           torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 5, dtype=torch.bool))
    pad = lambda t, n: torch.cat([t, torch.randn(1, n, t.shape[2])], 1)  # noqa: E731
    text = torch.tensor([[3, 4, 0]])
    fmask = torch.arange(8)[None] < 5
    padded = model.velocity(pad(x, 3), s, pad(cond, 3), torch.cat([cmask, torch.zeros(1, 3, dtype=torch.bool)], 1),
                            text, text > 0, text > 0, fmask)
    torch.testing.assert_close(padded[:, :5], alone, atol=1e-5, rtol=1e-5)


def test_meanflow_target_on_the_dit_matches_finite_difference():
    """The MeanFlow target v + (e - s) du/ds through the DiT (attention under the MATH backend for the
    JVP) against a central difference of u along the flow."""
    torch.manual_seed(0)
    model = randomised(flow_model(meanflow=True), 0.05).double()
    text = torch.tensor([[3, 4, 5]])
    ones = torch.ones(1, 3, dtype=torch.bool)
    fmask = torch.ones(1, 7, dtype=torch.bool)
    cond, cmask = torch.zeros(1, 7, 6, dtype=torch.double), torch.zeros(1, 7, dtype=torch.bool)
    x, v = torch.randn(1, 7, 6, dtype=torch.double), torch.randn(1, 7, 6, dtype=torch.double)
    s, end = torch.tensor([0.3], dtype=torch.double), torch.tensor([0.8], dtype=torch.double)

    def u(x_, s_, e_):
        return model.velocity(x_, s_, cond, cmask, text, ones, ones, fmask, end=e_)

    _, target = fm.meanflow_target(u, x, s, end, v)
    eps = 1e-3
    with torch.no_grad():
        du = (u(x + eps * v, s + eps, end) - u(x - eps * v, s - eps, end)) / (2 * eps)
    assert du.abs().max() > 1e-3
    torch.testing.assert_close(target, v + 0.5 * du, atol=2e-3 * du.abs().max().item(), rtol=0)


def test_infill_mask_spans():
    model = flow_model(infill_min=0.5, infill_max=0.5)
    lengths = torch.tensor([10, 4, 1])
    mask = model._infill_mask(lengths, 10)
    assert mask.sum(1).tolist() == [5, 2, 1]
    for row, n in zip(mask, lengths.tolist()):
        idx = row.nonzero().flatten()
        assert idx.max() < n and (idx[1:] - idx[:-1] == 1).all()  # one contiguous span inside the utterance


def test_flow_sample_keeps_shapes_and_seed():
    """Same inputs: the same seed gives the same frames, another seed other frames."""
    model = randomised(flow_model(), 0.1)
    prompt = torch.randn(3, 6, generator=torch.Generator().manual_seed(5))

    def sample(seed: int, **kw) -> torch.Tensor:
        return model.sample([3, 4, 5], 7, prompt=prompt, steps=3, generator=torch.Generator().manual_seed(seed), **kw)

    a, again, other = sample(0), sample(0), sample(1)
    assert a.shape == (7, 6)
    assert torch.equal(a, again)
    assert (a - other).abs().max() > 0.1
    c = sample(0, cfg_scale=1.0)
    assert c.shape == (7, 6) and torch.isfinite(c).all()
    assert torch.equal(c, sample(0, cfg_scale=1.0)) and (c - sample(1, cfg_scale=1.0)).abs().max() > 0.1
