"""The flow-matching objective and samplers (tts.flow_matching) on per-frame vectors (N, D) and masked
sequences (B, T, D): identities, immiscible assignment, contrastive sign, MeanFlow's JVP target, Euler
convergence on an ODE with a known solution, time grids and classifier-free guidance."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from tts import flow_matching as fm

SHAPES = [(5, 3), (4, 6, 3)]  # per-frame vectors (N, D), sequences (B, T, D)


def randn(*shape: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# ----- interpolation, target, time sampling ------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_interpolation_and_velocity_target_identities(shape):
    x0, x1 = randn(*shape, seed=1), randn(*shape, seed=2)
    s = torch.rand(shape[0], generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    zeros, ones = torch.zeros(shape[0], dtype=torch.float64), torch.ones(shape[0], dtype=torch.float64)
    torch.testing.assert_close(fm.interpolate(x0, x1, zeros), x0)
    torch.testing.assert_close(fm.interpolate(x0, x1, ones), x1)
    x_s, v = fm.interpolate(x0, x1, s), fm.velocity_target(x0, x1)
    torch.testing.assert_close(v, x1 - x0)
    torch.testing.assert_close(x_s + fm.broadcast_time(1 - s, v) * v, x1)  # straight path to the data
    torch.testing.assert_close(x_s - fm.broadcast_time(s, v) * v, x0)  # and back to the noise
    h = 1e-6  # d x_s / ds is the target
    torch.testing.assert_close((fm.interpolate(x0, x1, s + h) - x_s) / h, v, atol=1e-6, rtol=1e-6)
    row = 1  # each sample has its own time
    torch.testing.assert_close(x_s[row], (1 - s[row]) * x0[row] + s[row] * x1[row])


def test_uniform_time_is_the_plain_rand_draw():
    """The default keeps the models' seeded draws: one torch.rand(n)."""
    torch.manual_seed(7)
    a = fm.sample_time(9)
    torch.manual_seed(7)
    torch.testing.assert_close(a, torch.rand(9), rtol=0, atol=0)


@pytest.mark.parametrize("schedule, middle", [
    ("uniform", 0.5),
    ("logit_normal", math.erf(math.log(3) / math.sqrt(2))),  # P(|N(0, 1)| < logit(0.75))
    ("cosine", 2 / math.pi * (math.atan(3) - math.atan(1 / 3))),  # tan(pi/2 u) between 1/3 and 3
])
def test_time_schedules_have_their_distribution(schedule, middle):
    g = torch.Generator().manual_seed(0)
    s = fm.sample_time(40_000, schedule, generator=g)
    assert s.shape == (40_000,) and s.min() >= 0 and s.max() <= 1
    assert abs(((s > 0.25) & (s < 0.75)).float().mean().item() - middle) < 0.015
    assert abs(s.mean().item() - 0.5) < 0.01  # all three are symmetric about 1/2
    again = fm.sample_time(40_000, schedule, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s, again)


def test_unknown_time_schedule_is_one_line_error():
    with pytest.raises(ValueError, match="time schedule: expected one of uniform, logit_normal, cosine"):
        fm.sample_time(3, "beta")


# ----- immiscible assignment ------------------------------------------------------------
def assignment_cost(target, noise, mask):
    err = (target - noise).pow(2).sum(-1)
    return (err * mask).sum() if mask is not None else err.sum()


@pytest.mark.parametrize("shape, masked", [((6, 4, 3), True), ((6, 4, 3), False), ((7, 5), False)])
def test_immiscible_assignment_is_an_optimal_permutation(shape, masked):
    target, noise = randn(*shape, seed=0, dtype=torch.float32), randn(*shape, seed=1, dtype=torch.float32)
    mask = None
    if masked:
        mask = torch.ones(shape[:2], dtype=torch.bool)
        mask[0, 2:] = False
        mask[3, 1:] = False
    assigned = fm.immiscible_noise(target, noise, mask)
    assert sorted(map(tuple, assigned.flatten(1).tolist())) == sorted(map(tuple, noise.flatten(1).tolist()))
    identity = assignment_cost(target, noise, mask)
    cost = assignment_cost(target, assigned, mask)
    assert cost < identity - 1e-3  # these draws are not already optimal
    best = min(assignment_cost(target, noise[list(p)], mask) for p in itertools.permutations(range(shape[0])))
    assert torch.isclose(cost, best)


def test_immiscible_ignores_padding():
    target, noise = randn(5, 4, 3, seed=0), randn(5, 4, 3, seed=1)
    mask = torch.arange(4)[None] < torch.tensor([[4], [2], [3], [1], [4]])
    changed = target.clone()
    changed[~mask] = 100.0  # what lies in the padding must not matter
    torch.testing.assert_close(fm.immiscible_noise(changed, noise, mask), fm.immiscible_noise(target, noise, mask))


# ----- losses -----------------------------------------------------------------------------
def test_masked_mse_counts_only_valid_frames():
    pred, target = randn(2, 5, 3, seed=0), randn(2, 5, 3, seed=1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    per_frame = (pred - target).pow(2).mean(-1)
    torch.testing.assert_close(fm.masked_mse(pred, target, mask), per_frame[mask].mean())
    torch.testing.assert_close(fm.masked_mse_per_sample(pred, target, mask),
                               torch.stack([per_frame[0, :3].mean(), per_frame[1].mean()]))
    pred2 = pred.clone()
    pred2[0, 3:] = 1e3
    torch.testing.assert_close(fm.masked_mse(pred2, target, mask), fm.masked_mse(pred, target, mask))
    flat = randn(7, 3, seed=2)
    torch.testing.assert_close(fm.masked_mse(flat, 0 * flat), flat.pow(2).mean())
    torch.testing.assert_close(fm.masked_mse_per_sample(flat, 0 * flat), flat.pow(2).mean(1))


@pytest.mark.parametrize("shape", SHAPES)
def test_contrastive_term_pushes_away_from_other_targets(shape):
    target = randn(*shape, seed=0)
    mask = torch.ones(shape[:2], dtype=torch.bool) if len(shape) == 3 else None
    loss, flow, contrast = fm.contrastive_flow_loss(target, target, mask, weight=0.1)
    assert flow == 0 and contrast > 0 and loss < 0  # minus w times the error against another target
    torch.testing.assert_close(contrast, fm.masked_mse(target, target.roll(1, dims=0), mask))
    pred = randn(*shape, seed=1).requires_grad_()
    loss, flow, contrast = fm.contrastive_flow_loss(pred, target, mask, weight=0.1)
    torch.testing.assert_close(loss, flow - 0.1 * contrast)
    loss.backward()
    other = target.roll(1, dims=0)
    n = pred.numel()  # gradient: 2 (p - v) / n - 0.1 * 2 (p - v_other) / n
    torch.testing.assert_close(pred.grad, (2 * (pred - target) - 0.2 * (pred - other)).detach() / n)
    loss, flow, contrast = fm.contrastive_flow_loss(pred, target, mask, weight=0.0)
    assert contrast is None and loss is flow
    assert fm.contrastive_flow_loss(pred[:1], target[:1], None if mask is None else mask[:1], 0.1)[2] is None


# ----- MeanFlow ---------------------------------------------------------------------------
class TinyAverageVelocity(nn.Module):
    """u(x, s, e) for x (B, T, D): an MLP on [x, s, e - s] per frame."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 2, 16), nn.Tanh(), nn.Linear(16, dim))

    def forward(self, x: torch.Tensor, s: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        times = torch.stack([s, e - s], -1)[:, None].expand(-1, x.shape[1], -1)
        return self.net(torch.cat([x, times], -1))


def test_meanflow_target_matches_finite_difference():
    torch.manual_seed(0)
    model = TinyAverageVelocity(3).double()
    x, v = randn(4, 5, 3, seed=1), randn(4, 5, 3, seed=2)
    s = torch.tensor([0.1, 0.3, 0.5, 0.7], dtype=torch.double)
    e = torch.tensor([0.4, 0.3, 0.9, 1.0], dtype=torch.double)
    u, target = fm.meanflow_target(model, x, s, e, v)
    torch.testing.assert_close(u, model(x, s, e))
    assert u.requires_grad and not target.requires_grad
    h = 1e-5
    with torch.no_grad():  # d/ds u(x_s, s, e) along the flow, e fixed
        du_ds = (model(x + h * v, s + h, e) - model(x - h * v, s - h, e)) / (2 * h)
    assert du_ds.abs().max() > 1e-2
    torch.testing.assert_close(target, v + (e - s)[:, None, None] * du_ds, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(target[1], v[1])  # e == s: plain flow matching


def test_meanflow_times_and_adaptive_loss():
    torch.manual_seed(0)
    s0 = torch.rand(10_000)
    s, e = fm.meanflow_times(s0, ratio=0.25)
    interval = e > s
    assert (e >= s).all() and s.min() >= 0 and e.max() <= 1
    assert abs(interval.float().mean().item() - 0.25) < 0.02
    assert torch.equal(s[~interval], s0[~interval]) and torch.equal(e[~interval], s0[~interval])
    err = torch.tensor([0.5, 2.0, 1e-4], requires_grad=True)
    loss = fm.adaptive_loss(err, c=1e-3)
    torch.testing.assert_close(loss, (err / (err + 1e-3)).mean())
    loss.backward()  # the weight is not differentiated
    torch.testing.assert_close(err.grad, 1 / (err.detach() + 1e-3) / 3)


# ----- samplers ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["uniform", "sway", "cosine"])
def test_euler_converges_on_a_linear_ode(kind):
    """dx/ds = a x from x(0) = x0 ends at x0 exp(a); Euler's error shrinks ~1/steps on every grid."""
    a = torch.tensor([[0.8, -1.5, 0.3]], dtype=torch.double)
    x0 = torch.tensor([[1.0, 2.0, -0.5]], dtype=torch.double)
    exact = x0 * torch.exp(a)
    errors = [(fm.euler_sample(lambda x, s: a * x, x0, fm.time_grid(n, kind).double()) - exact).abs().max().item()
              for n in (4, 16, 64, 256)]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:]))
    assert errors[-1] < 0.02 * errors[0] and errors[-1] < 5e-3
    const = fm.euler_sample(lambda x, s: torch.ones_like(x) * 3, x0, fm.time_grid(5, kind).double())
    torch.testing.assert_close(const, x0 + 3)  # a constant field is integrated exactly
    t = fm.euler_sample(lambda x, s: torch.full_like(x, 2 * s), x0, fm.time_grid(2000, kind).double())
    torch.testing.assert_close(t, x0 + 1, atol=2e-3, rtol=0)  # dx/ds = 2s: the field sees the times
    one = fm.euler_sample(lambda x, s: torch.full_like(x, 2 * s), x0, torch.tensor([0.25, 0.75], dtype=torch.double))
    torch.testing.assert_close(one, x0 + 0.25)  # explicit: the field at the step's start time, 0.5 * 2 * 0.25


def test_meanflow_sampler_is_exact_with_the_true_average_velocity():
    a = torch.tensor([[0.8, -1.5]], dtype=torch.double)
    x0 = torch.tensor([[1.0, 2.0]], dtype=torch.double)

    def average(x, s, e):  # (x_e - x_s) / (e - s) of dx/ds = a x
        return x * torch.expm1(a * (e - s)) / (e - s)

    for steps in (1, 3):
        torch.testing.assert_close(fm.meanflow_sample(average, x0, fm.time_grid(steps).double()), x0 * torch.exp(a))


@pytest.mark.parametrize("sway", [-1.0, -0.5, 0.0, 0.5, 1.0])
def test_sway_grid_is_monotone_from_0_to_1(sway):
    grid = fm.time_grid(32, "sway", sway)
    assert grid.shape == (33,) and grid[0] == 0 and abs(grid[-1].item() - 1) < 1e-6
    assert (grid[1:] > grid[:-1]).all()
    u = torch.linspace(0, 1, 33)
    torch.testing.assert_close(grid, u + sway * (torch.cos(math.pi / 2 * u) - 1 + u))
    if sway < 0:  # more steps near the noise end
        assert (grid[1:] - grid[:-1])[0] < 1 / 32


def test_grids_and_their_errors():
    torch.testing.assert_close(fm.time_grid(4), torch.tensor([0, 0.25, 0.5, 0.75, 1]))
    torch.testing.assert_close(fm.time_grid(4, "sway", 0.0), fm.time_grid(4))
    cosine = fm.time_grid(4, "cosine")
    torch.testing.assert_close(cosine, torch.tensor([0, (1 - math.sqrt(0.5)) / 2, 0.5, (1 + math.sqrt(0.5)) / 2, 1]))
    with pytest.raises(ValueError, match="time grid: expected one of"):
        fm.time_grid(4, "karras")
    with pytest.raises(ValueError, match="at least one step"):
        fm.time_grid(0)


def test_classifier_free_guidance_algebra():
    v_c, v_u = randn(1, 4, 3, seed=0), randn(1, 4, 3, seed=1)
    both = torch.cat([v_c, v_u])
    torch.testing.assert_close(fm.cfg_combine(both, 1.0), v_c)
    torch.testing.assert_close(fm.cfg_combine(both, 0.0), v_u)
    torch.testing.assert_close(fm.cfg_combine(both, 2.5), v_u + 2.5 * (v_c - v_u))
    torch.testing.assert_close(fm.cfg_combine(both, 2.5), 2.5 * v_c - 1.5 * v_u)
    assert fm.cfg_combine(v_c, 3.0) is v_c
    assert fm.guidance_rows(1.0) == 1 and fm.guidance_rows(2.0) == 2
    rows_seen = []

    def model(x, s):  # row 0 conditional (+1), row 1 unconditional (-1)
        rows_seen.append(x.shape[0])
        return x * s + torch.tensor([1.0, -1.0], dtype=x.dtype)[: x.shape[0], None]

    x = randn(1, 3, seed=2)
    torch.testing.assert_close(fm.guided(model, 3.0)(x, 0.5), x * 0.5 + (-1 + 3 * 2))
    torch.testing.assert_close(fm.guided(model, 1.0)(x, 0.5), x * 0.5 + 1)
    assert rows_seen == [2, 1]


def test_start_noise_follows_the_generator():
    a = fm.start_noise((2, 3), 0.5, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, 0.5 * torch.randn(2, 3, generator=torch.Generator().manual_seed(1)))
    assert not torch.equal(a, fm.start_noise((2, 3), 0.5, torch.Generator().manual_seed(2)))
