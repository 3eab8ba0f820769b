"""The flow-matching objective that every latent generator here trains with (the AR model's flow head,
the non-AR flow model, the token-to-latent flow model).

Convention: time s runs from 0 (noise x0) to 1 (data x1); x_s = (1 - s) x0 + s x1 and the velocity
target is x1 - x0. Every function works on per-frame vectors (N, D), where a time is one per row, and
on sequences (B, T, D) with a frame mask (B, T), where a time is one per sequence: times (B,) are
broadcast over the trailing dimensions.

Training pieces: :func:`sample_time` (uniform, logit-normal or cosine-mapped), :func:`interpolate`,
:func:`velocity_target`, :func:`immiscible_noise`, :func:`masked_mse`, :func:`contrastive_flow_loss`,
and MeanFlow (:func:`meanflow_times`, :func:`meanflow_target`, :func:`adaptive_loss`).
Sampling pieces: :func:`time_grid` (uniform, sway, cosine), :func:`start_noise`, :func:`euler_sample`
for a velocity field, :func:`meanflow_sample` for an average-velocity model (few or one step), and
classifier-free guidance (:func:`guided`, :func:`cfg_combine`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from scipy.optimize import linear_sum_assignment
from torch.nn.attention import SDPBackend, sdpa_kernel

TIME_SCHEDULES = ("uniform", "logit_normal", "cosine")

# (x_s (B, ...), s (B,), e (B,)) -> average velocity over [s, e] (B, ...)
AverageVelocity = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def check_time_schedule(name: str) -> str:
    """``name`` if it is one of :data:`TIME_SCHEDULES`, else ValueError (one line)."""
    if name not in TIME_SCHEDULES:
        raise ValueError(f"time schedule: expected one of {', '.join(TIME_SCHEDULES)}, got {name!r}")
    return name


@dataclass
class FlowObjectiveConfig:
    """Objective fields shared by every model trained with this module; mixed into a model's config
    (``class XConfig(FlowObjectiveConfig, BackboneConfig)``), checked when the config is made."""

    time_schedule: str = "uniform"  # training flow times: uniform | logit_normal | cosine

    def __post_init__(self) -> None:
        check_time_schedule(self.time_schedule)


@dataclass
class SequenceFlowConfig(FlowObjectiveConfig):
    """The training options of a model that makes a whole latent sequence by flow matching (the non-AR
    flow model and the token-to-latent model; the AR model's per-frame head has none of them)."""

    immiscible: bool = False  # pair targets with noises by a batch assignment (immiscible diffusion)
    contrastive_weight: float = 0.0  # weight of the contrastive flow-matching term (0: off)
    meanflow: bool = False  # learn average velocities (MeanFlow): 1-4 sampling steps
    meanflow_ratio: float = 0.25  # MeanFlow: fraction of samples with r != t
    time_scale: float = 10.0  # flow time is embedded as sinusoids of time_scale * s


def sample_time(n: int, schedule: str = "uniform", device: torch.device | str | None = None,
                generator: torch.Generator | None = None, logit_mean: float = 0.0,
                logit_std: float = 1.0) -> torch.Tensor:
    """Training flow times (n,) in [0, 1].

    - ``uniform``: U(0, 1), one ``torch.rand`` draw (the default).
    - ``logit_normal``: sigmoid(logit_mean + logit_std * N(0, 1)) (SD3); more time in the middle,
      a positive ``logit_mean`` leans towards the data end.
    - ``cosine``: the cosine map of a uniform u, 1 - 1 / (tan(pi/2 u) + 1) (SD3 "CosMap"), symmetric
      about 1/2 with heavier ends than the logit-normal.
    """
    check_time_schedule(schedule)
    if schedule == "logit_normal":
        return torch.sigmoid(logit_mean + logit_std * torch.randn(n, device=device, generator=generator))
    u = torch.rand(n, device=device, generator=generator)
    if schedule == "cosine":
        return 1 - 1 / (torch.tan(math.pi / 2 * u) + 1)
    return u


def broadcast_time(s: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Times (B,) viewed as (B, 1, ..., 1) to broadcast against ``like`` (B, ...)."""
    return s.reshape(s.shape[0], *([1] * (like.dim() - 1))).to(like.dtype)


def interpolate(x0: torch.Tensor, x1: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """x_s = (1 - s) x0 + s x1 for noise x0 and data x1 (B, ...) at times s (B,) -> (B, ...)."""
    s = broadcast_time(s, x1)
    return (1 - s) * x0 + s * x1


def velocity_target(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """The conditional velocity d x_s / ds = x1 - x0, (B, ...)."""
    return x1 - x0


def _as_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, D) or (B, T, ..., D) as float64 frames (B, T', D) on the CPU (where the assignment runs), detached."""
    x = x.detach().to("cpu", torch.float64)
    return x[:, None] if x.dim() == 2 else x.flatten(1, -2)


def immiscible_noise(target: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Reorder the batch of ``noise`` so that the total squared distance to ``target`` is smallest
    (immiscible diffusion: a linear assignment, scipy ``linear_sum_assignment``).

    target, noise: (B, D) or (B, T, D); mask: (B, T) valid frames of each target sample (None: all),
    so padding does not count. Returns ``noise`` with its rows permuted, same shape.
    """
    x, n = _as_frames(target), _as_frames(noise)
    m = torch.ones(x.shape[:2], dtype=x.dtype) if mask is None else mask.reshape(x.shape[:2]).to("cpu", x.dtype)
    # cost[i, j] = sum_t m[i, t] |x[i, t] - n[j, t]|^2, expanded so no (B, B, T, D) tensor is formed
    cost = ((x.pow(2).sum(-1) * m).sum(1)[:, None] - 2 * torch.einsum("itd,jtd->ij", x * m[..., None], n)
            + torch.einsum("it,jt->ij", m, n.pow(2).sum(-1)))
    _, cols = linear_sum_assignment(cost.numpy())
    return noise[torch.as_tensor(cols, device=noise.device)]


def _frame_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Squared error averaged over the feature dimension: (B, ..., D) -> (B, ...)."""
    return (pred - target).pow(2).mean(-1)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the frames where ``mask`` (B, T) is set, for (B, T, D) tensors; every
    frame counts equally. Without a mask, the plain mean over all elements (e.g. (N, D)) -> ()."""
    if mask is None:
        return (pred - target).pow(2).mean()
    return (_frame_errors(pred, target) * mask).sum() / mask.sum().clamp_min(1)


def masked_mse_per_sample(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of each sample over its ``mask`` (B, T) frames: (B, T, D) -> (B,); without a
    mask, over all of a row's elements ((N, D) -> (N,))."""
    err = _frame_errors(pred, target)
    if mask is None:
        return err.flatten(1).mean(1) if err.dim() > 1 else err
    return (err * mask).sum(1) / mask.sum(1).clamp_min(1)


def contrastive_flow_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                          weight: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Flow matching with the contrastive term (contrastive flow matching): the error against this
    sample's velocity target minus ``weight`` times the error against another sample's (the batch
    rolled by one), which pushes conditional flows apart.

    pred, target: (B, T, D) with mask (B, T), or (N, D). Returns (loss, fm, contrast): ``fm`` the plain
    flow-matching error, ``contrast`` None when ``weight`` is 0 or the batch has one sample.
    """
    fm = masked_mse(pred, target, mask)
    if weight <= 0 or target.shape[0] < 2:
        return fm, fm, None
    contrast = masked_mse(pred, target.roll(1, dims=0), mask)
    return fm - weight * contrast, fm, contrast


def meanflow_times(s: torch.Tensor, ratio: float, schedule: str = "uniform") -> tuple[torch.Tensor, torch.Tensor]:
    """MeanFlow intervals: a fraction ``ratio`` of the samples get [min(a, z), max(a, z)] for two new
    times a, z drawn with ``schedule``; the rest keep s (B,) with e = s (plain flow matching).
    Returns (s, e), each (B,), s <= e."""
    n = s.shape[0]
    a, z = sample_time(n, schedule, s.device), sample_time(n, schedule, s.device)
    use_interval = torch.rand(n, device=s.device) < ratio
    s = torch.where(use_interval, torch.minimum(a, z), s)
    return s, torch.where(use_interval, torch.maximum(a, z), s)


def meanflow_target(average_velocity: AverageVelocity, x: torch.Tensor, s: torch.Tensor, e: torch.Tensor,
                    velocity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's average velocity u(x_s, s, e) and its MeanFlow target u_tgt = v + (e - s) du/ds.

    du/ds is the total derivative along the flow (x moves with ``velocity`` v, e fixed), taken by
    forward-mode AD (``torch.func.jvp``). The fused attention kernels have no forward AD, so the call
    runs under the MATH attention backend. x, velocity: (B, ...); s, e: (B,).
    Returns (u (B, ...) with gradients, target (B, ...) detached).
    """
    with sdpa_kernel(SDPBackend.MATH):
        u, du_ds = torch.func.jvp(lambda x_, s_: average_velocity(x_, s_, e), (x, s), (velocity, torch.ones_like(s)))
    return u, (velocity + broadcast_time(e - s, u) * du_ds).detach()


def adaptive_loss(err: torch.Tensor, c: float = 1e-3, power: float = 1.0) -> torch.Tensor:
    """MeanFlow's adaptively weighted loss: mean of err / (err + c)^power with the weight detached, for
    per-sample errors (B,) -> (). Keeps the JVP target's scale from dominating."""
    weight = err.detach() + c
    return (err / (weight if power == 1.0 else weight.pow(power))).mean()


# ----- sampling ----------------------------------------------------------------------------
TIME_GRIDS = ("uniform", "sway", "cosine")

# (x (R, ...), s) -> velocity (R, ...): a velocity field at one time s (a Python float)
Velocity = Callable[[torch.Tensor, float], torch.Tensor]
# (x (R, ...), s, e) -> average velocity over [s, e] (R, ...), times as Python floats
StepVelocity = Callable[[torch.Tensor, float, float], torch.Tensor]


def time_grid(steps: int, kind: str = "uniform", sway: float = -1.0,
              device: torch.device | str | None = None) -> torch.Tensor:
    """Integration times (steps + 1,) from 0 to 1, increasing.

    - ``uniform``: k / steps.
    - ``sway``: F5-TTS sway sampling s + sway (cos(pi/2 s) - 1 + s) of the uniform grid; sway < 0 spends
      more steps near the noise end (-1 gives 1 - cos(pi/2 s)), 0 is uniform; monotone for sway in [-1, 1].
    - ``cosine``: (1 - cos(pi s)) / 2, dense at both ends.
    """
    if kind not in TIME_GRIDS:
        raise ValueError(f"time grid: expected one of {', '.join(TIME_GRIDS)}, got {kind!r}")
    if steps < 1:
        raise ValueError(f"time grid: need at least one step, got {steps}")
    grid = torch.linspace(0, 1, steps + 1, device=device)
    if kind == "sway":
        return grid + sway * (torch.cos(math.pi / 2 * grid) - 1 + grid)
    if kind == "cosine":
        return (1 - torch.cos(math.pi * grid)) / 2
    return grid


def start_noise(shape: tuple[int, ...], temperature: float = 1.0, generator: torch.Generator | None = None,
                device: torch.device | str | None = None) -> torch.Tensor:
    """The starting point x0 of sampling: Gaussian noise of ``shape`` scaled by ``temperature``."""
    return torch.randn(*shape, generator=generator, device=device) * temperature


def meanflow_sample(average_velocity: StepVelocity, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Jump along ``grid`` (K + 1,) with x <- x + (e - s) u(x, s, e), one call per interval: exact for a
    perfect MeanFlow model in any number of steps (one step: a grid of [0, 1]). x (R, ...) -> (R, ...)."""
    times = grid.tolist()
    for s, e in zip(times[:-1], times[1:]):
        x = x + (e - s) * average_velocity(x, s, e)
    return x


def euler_sample(velocity: Velocity, x: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Euler integration of dx/ds = velocity(x, s) from grid[0] to grid[-1] (``grid`` (K + 1,)):
    x <- x + (s' - s) velocity(x, s). x (R, ...) -> (R, ...)."""
    return meanflow_sample(lambda x_, s, _e: velocity(x_, s), x, grid)


def guidance_rows(scale: float) -> int:
    """Rows a model runs for classifier-free guidance at ``scale``: 2 (conditional, unconditional), or 1
    when the scale is 1 (guidance off)."""
    return 2 if scale != 1.0 else 1


def cfg_combine(v: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance: rows [conditional, unconditional] (2, ...) -> v_u + scale (v_c - v_u)
    (1, ...); a single row (1, ...) is returned as it is."""
    if v.shape[0] == 1:
        return v
    return v[1:2] + scale * (v[0:1] - v[1:2])


def guided(fn: Callable[..., torch.Tensor], scale: float) -> Callable[..., torch.Tensor]:
    """Wrap a model velocity ``fn(x (R, ...), *times)`` whose row 0 is conditional and row 1
    unconditional into a guided one on a single sample x (1, ...): ``x`` is repeated to
    :func:`guidance_rows` rows and the result combined by :func:`cfg_combine` -> (1, ...)."""
    rows = guidance_rows(scale)

    def velocity(x: torch.Tensor, *times: float) -> torch.Tensor:
        return cfg_combine(fn(x.expand(rows, *x.shape[1:]), *times), scale)

    return velocity
