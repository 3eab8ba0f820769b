"""Receptive fields along time, computed from the modules themselves (no probing, no constants),
and the overlapping windows they allow (:func:`chunk_windows`).

A rule per module type maps the output frames ``[lo, hi]`` a caller needs to the input frames
they read (:func:`input_span`): convolutions by kernel, dilation, stride and padding; pointwise
layers unchanged; 2x resampling by index arithmetic; a residual block by the union of its
branches. The result is the structural dependence: an upper bound on what the numbers can
depend on (a weight or a ReLU that happens to be zero only makes the true dependence smaller).

A module that mixes all time steps (``EfficientViTBlock``'s linear attention) or has no rule
raises :class:`GlobalDependence`; callers then process the signal whole. Windows built from
these fields are exact: an output whose whole input span lies inside its window was computed
from the same values as in a whole-signal pass, and a window edge (zero or replicate padding)
is only ever read by outputs whose span crosses it.

Each model registers the rules of its own module types: the DC-AE's in :mod:`dcae.model.field`,
BigVGAN's in :mod:`vocoder.field`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch.nn as nn

Span = tuple[int, int]  # inclusive frame range [lo, hi] along time (unbounded: may be negative)


class GlobalDependence(Exception):
    """Raised by a rule when an output can depend on every frame; the message says why."""


@dataclass(frozen=True)
class ReceptiveField:
    """Frames of context an output frame needs on each side, or global (``left is None``).

    ``reason`` says why the field is global, e.g. ``"EfficientViTBlock: attention over all frames"``.
    """

    left: int | None
    right: int | None
    reason: str = ""

    @property
    def is_global(self) -> bool:
        return self.left is None

    @classmethod
    def everything(cls, reason: str) -> "ReceptiveField":
        return cls(None, None, reason)

    def __str__(self) -> str:
        return f"global ({self.reason})" if self.is_global else f"-{self.left}/+{self.right}"


# ---------------------------------------------------------------------------- rules
RULES: dict[type, Callable[[nn.Module, Span], Span]] = {}


def rule(*types: type):
    def register(fn):
        for t in types:
            RULES[t] = fn
        return fn
    return register


def input_span(module: nn.Module, span: Span) -> Span:
    """Input frames along time (the last axis) read by ``module``'s output frames ``span``."""
    for cls in type(module).__mro__:
        if cls in RULES:
            return RULES[cls](module, span)
    raise GlobalDependence(f"no receptive-field rule for {type(module).__name__}")


def chain(modules, span: Span) -> Span:
    """Span through modules applied in order (``modules[0]`` first)."""
    for m in reversed(list(modules)):
        span = input_span(m, span)
    return span


def union(*spans: Span) -> Span:
    return min(s[0] for s in spans), max(s[1] for s in spans)


def conv_span(span: Span, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> Span:
    """Output ``o`` of a convolution reads inputs ``o*stride - padding + j*dilation``, 0 <= j < kernel."""
    lo, hi = span
    return lo * stride - padding, hi * stride - padding + (kernel - 1) * dilation


def transposed_conv_span(span: Span, kernel: int, stride: int, padding: int = 0, dilation: int = 1) -> Span:
    """Output ``o`` of a transposed convolution receives inputs ``i`` with 0 <= o + padding - i*stride <= (kernel-1)*dilation."""
    lo, hi = span
    return math.ceil((lo + padding - (kernel - 1) * dilation) / stride), (hi + padding) // stride


def upsampled_span(span: Span, factor: int) -> Span:
    """Output ``o`` of nearest / pixel-shuffle upsampling by ``factor`` reads input ``o // factor``."""
    return span[0] // factor, span[1] // factor


def downsampled_span(span: Span, factor: int) -> Span:
    """Output ``o`` of pixel-unshuffle by ``factor`` reads inputs ``o*factor .. o*factor + factor - 1``."""
    return span[0] * factor, span[1] * factor + factor - 1


def pointwise(module: nn.Module, span: Span) -> Span:
    return span


rule(nn.Identity, nn.SiLU, nn.ReLU, nn.GELU, nn.Mish, nn.Tanh, nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)(pointwise)


@rule(nn.Conv1d, nn.Conv2d)
def _conv(m: nn.Conv1d | nn.Conv2d, span: Span) -> Span:
    if isinstance(m.padding, str):
        raise GlobalDependence(f"{type(m).__name__} with padding={m.padding!r} has no rule")
    return conv_span(span, m.kernel_size[-1], m.stride[-1], m.padding[-1], m.dilation[-1])


@rule(nn.ConvTranspose1d)
def _transposed_conv(m: nn.ConvTranspose1d, span: Span) -> Span:
    return transposed_conv_span(span, m.kernel_size[0], m.stride[0], m.padding[0], m.dilation[0])


@rule(nn.Sequential)
def _sequence(m: nn.Sequential, span: Span) -> Span:
    return chain(m, span)


# ---------------------------------------------------------------------------- fields
def downsampling_field(module: nn.Module, factor: int) -> ReceptiveField:
    """Field of a module that maps ``factor`` input frames to one output frame, in output frames.

    Output frame ``j`` covers input frames ``[j*factor, (j+1)*factor)``; the field is how many
    output frames' worth of input it reads beyond that, on each side.
    """
    try:
        lo, hi = input_span(module, (0, 0))
    except GlobalDependence as e:
        return ReceptiveField.everything(str(e))
    return ReceptiveField(max(0, math.ceil(-lo / factor)), max(0, math.ceil((hi - factor + 1) / factor)))


def upsampling_field(module: nn.Module, factor: int) -> ReceptiveField:
    """Field of a module that maps one input frame to ``factor`` output frames, in input frames:
    the outputs of input frame ``j`` (``[j*factor, (j+1)*factor)``) read inputs ``[j - left, j + right]``."""
    return span_field(lambda span: input_span(module, span), factor)


def span_field(span_of: Callable[[Span], Span], factor: int) -> ReceptiveField:
    """:func:`upsampling_field` of a span function (output span -> input span) instead of a module."""
    try:
        lo, hi = span_of((0, factor - 1))
    except GlobalDependence as e:
        return ReceptiveField.everything(str(e))
    return ReceptiveField(max(0, -lo), max(0, hi))


def chunk_windows(total: int, chunk: int, left: int, right: int | None = None, *, start: int = 0,
                  known: int | None = None) -> Iterator[tuple[int, int, int, int]]:
    """(start, stop, window_start, window_stop) covering frames [start, total) in chunks, each window
    reaching ``left`` frames back (not before frame 0) and ``right`` frames on (not past ``known``,
    default ``total``, the frames that exist). A signal that fits in one chunk plus its context is
    one window: exactly whole-signal processing."""
    right = left if right is None else right
    known = total if known is None else known
    if start == 0 and known == total and total <= chunk + left + right:
        yield 0, total, 0, total
        return
    for begin in range(start, total, chunk):
        stop = min(total, begin + chunk)
        yield begin, stop, max(0, begin - left), min(known, stop + right)
