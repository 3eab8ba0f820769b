"""BigVGAN's receptive field in mel frames, computed from the generator's modules.

Adds rules for the ``bigvgan`` wheel's modules to :mod:`dcae.receptive_field`: the transposed
upsampling convolutions, the AMP residual blocks (dilated convolutions), and the anti-aliased
activations (2x upsampling filter, Snake, 2x low-pass downsampling, replicate padding), ours
(:class:`~vocoder.fast_activation.FastActivation1d`) included.

    >>> field = vocoder_receptive_field(vocoder.generator)   # e.g. -33/+33 mel frames for v2 22 kHz
"""
from __future__ import annotations

import json
import math

import torch.nn as nn
from bigvgan.activations import Snake, SnakeBeta
from bigvgan.alias_free_activation.torch.act import Activation1d
from bigvgan.alias_free_activation.torch.filter import LowPassFilter1d
from bigvgan.alias_free_activation.torch.resample import DownSample1d, UpSample1d
from bigvgan.bigvgan import AMPBlock1, AMPBlock2, BigVGAN

from dcae.receptive_field import (
    ReceptiveField,
    Span,
    chain,
    conv_span,
    input_span,
    pointwise,
    rule,
    span_field,
    transposed_conv_span,
    union,
    upsampling_field,
)
from vocoder.fast_activation import FastActivation1d

rule(Snake, SnakeBeta)(pointwise)


@rule(LowPassFilter1d)
def _low_pass(m: LowPassFilter1d, span: Span) -> Span:
    return conv_span(span, m.kernel_size, m.stride, m.pad_left if m.padding else 0)


@rule(DownSample1d)
def _down(m: DownSample1d, span: Span) -> Span:
    return input_span(m.lowpass, span)


@rule(UpSample1d)
def _up(m: UpSample1d, span: Span) -> Span:
    # replicate-pad by m.pad, transposed conv (stride = ratio), then crop m.pad_left on the left
    lo, hi = transposed_conv_span((span[0] + m.pad_left, span[1] + m.pad_left), m.kernel_size, m.stride)
    return lo - m.pad, hi - m.pad


@rule(Activation1d)
def _activation(m: Activation1d, span: Span) -> Span:
    return chain([m.upsample, m.act, m.downsample], span)


@rule(FastActivation1d)
def _fast_activation(m: FastActivation1d, span: Span) -> Span:
    # down: replicate-pad (5, 6), 12 taps, stride 2; up: output 2t reads inputs t-3..t+2, 2t+1 reads t-2..t+3
    lo, hi = conv_span(span, m.w_down.shape[-1], 2, 5)
    return (lo // 2 - 3 if lo % 2 == 0 else lo // 2 - 2), (hi // 2 + 2 if hi % 2 == 0 else hi // 2 + 3)


@rule(AMPBlock1)
def _amp_block1(m: AMPBlock1, span: Span) -> Span:
    acts = list(m.activations)
    layers = list(zip(acts[::2], m.convs1, acts[1::2], m.convs2))
    for a1, c1, a2, c2 in reversed(layers):  # x = x + c2(a2(c1(a1(x))))
        span = union(span, chain([a1, c1, a2, c2], span))
    return span


@rule(AMPBlock2)
def _amp_block2(m: AMPBlock2, span: Span) -> Span:
    for a, c in reversed(list(zip(m.activations, m.convs))):  # x = x + c(a(x))
        span = union(span, chain([a, c], span))
    return span


def stage_span(generator: BigVGAN, i: int, span: Span) -> Span:
    """Input samples of stage ``i`` (see :func:`vocoder.staged.run_stage`) read by its output samples ``span``."""
    m = generator
    if i == m.num_upsamples - 1:
        span = chain([m.activation_post, m.conv_post], span)  # tanh / clamp: pointwise
    blocks = m.resblocks[i * m.num_kernels:(i + 1) * m.num_kernels]
    span = chain(list(m.ups[i]), union(*(input_span(b, span) for b in blocks)))
    return input_span(m.conv_pre, span) if i == 0 else span


@rule(BigVGAN)
def _bigvgan(m: BigVGAN, span: Span) -> Span:
    for i in reversed(range(m.num_upsamples)):
        span = stage_span(m, i, span)
    return span


def _duck_typed_activation(m: nn.Module, span: Span) -> Span:
    """The wheel's fused CUDA ``Activation1d`` computes the same function as the torch one."""
    return chain([m.upsample, m.act, m.downsample], span)


_CACHE: dict[str, tuple[ReceptiveField, list[ReceptiveField]]] = {}


def _fields(generator: BigVGAN) -> tuple[ReceptiveField, list[ReceptiveField]]:
    key = json.dumps({k: v for k, v in dict(generator.h).items() if k != "use_cuda_kernel"}, sort_keys=True,
                     default=str) + str(sorted({type(x).__name__ for x in generator.modules()}))
    if key not in _CACHE:
        for module in generator.modules():  # the CUDA activation, registered on sight (no import needed)
            if type(module).__name__ == "Activation1d" and type(module) not in (Activation1d,) \
                    and isinstance(getattr(module, "upsample", None), UpSample1d):
                rule(type(module))(_duck_typed_activation)
        rates = generator.h.upsample_rates
        whole = upsampling_field(generator, math.prod(rates))
        stages = [span_field(lambda span, i=i: stage_span(generator, i, span), rates[i]) for i in range(len(rates))]
        _CACHE[key] = whole, stages
    return _CACHE[key]


def vocoder_receptive_field(generator: BigVGAN) -> ReceptiveField:
    """Mel frames of context either side: the ``hop`` samples of mel frame ``j`` read mel frames
    ``[j - left, j + right]``. Computed once per generator configuration."""
    return _fields(generator)[0]


def stage_fields(generator: BigVGAN) -> list[ReceptiveField]:
    """Per upsampling stage, in that stage's input samples: the ``rate`` output samples of input
    sample ``j`` read input samples ``[j - left, j + right]`` (e.g. 26, 23, 46, 46, 46, 50 for v2 22 kHz)."""
    return _fields(generator)[1]
