"""The DC-AE's receptive fields along time, in latent frames (:func:`dcae_receptive_fields`), from the
rules of its module types (the arithmetic is :mod:`dcae.receptive_field`).

    >>> enc, dec = dcae_receptive_fields(wrapper.model)     # in latent frames
    >>> enc.left, enc.right, dec.left, dec.right, dec.is_global
"""
from __future__ import annotations

import json

import torch.nn as nn

from dcae.model.autoencoder import DCAE, Decoder, Encoder
from dcae.model.blocks import (
    DownsampleBlock,
    EfficientViTBlock,
    GLUMBConv,
    MultiscaleLinearAttention,
    ResBlock,
    UpsampleBlock,
)
from dcae.model.layers import ChannelRMSNorm
from dcae.receptive_field import (
    GlobalDependence,
    ReceptiveField,
    Span,
    chain,
    downsampled_span,
    downsampling_field,
    input_span,
    pointwise,
    rule,
    union,
    upsampled_span,
    upsampling_field,
)

rule(ChannelRMSNorm)(pointwise)


@rule(EfficientViTBlock, MultiscaleLinearAttention)
def _attention(m: nn.Module, span: Span) -> Span:
    raise GlobalDependence("EfficientViTBlock: linear attention over all time frames")


@rule(ResBlock)
def _res_block(m: ResBlock, span: Span) -> Span:
    return union(span, chain([m.conv1, m.nonlinearity, m.conv2, m.norm], span))


@rule(GLUMBConv)
def _glu_mb_conv(m: GLUMBConv, span: Span) -> Span:
    return union(span, chain([m.conv_inverted, m.conv_depth, m.conv_point], span))


@rule(DownsampleBlock)
def _downsample(m: DownsampleBlock, span: Span) -> Span:
    main = input_span(m.conv, downsampled_span(span, 2) if m.pixel_unshuffle else span)
    return union(main, downsampled_span(span, 2)) if m.shortcut else main


@rule(UpsampleBlock)
def _upsample(m: UpsampleBlock, span: Span) -> Span:
    main = upsampled_span(input_span(m.conv, span), 2) if m.interpolate else input_span(m.conv, upsampled_span(span, 2))
    return union(main, upsampled_span(span, 2)) if m.shortcut else main


@rule(Encoder)
def _encoder(m: Encoder, span: Span) -> Span:
    out = input_span(m.conv_out, span)
    if m.out_shortcut:
        out = union(out, span)
    return chain([m.conv_in, *m.down_blocks], out)


@rule(Decoder)
def _decoder(m: Decoder, span: Span) -> Span:
    span = chain([*reversed(m.up_blocks), m.norm_out, m.conv_act, m.conv_out], span)
    inner = input_span(m.conv_in, span)
    return union(inner, span) if m.in_shortcut else inner



_CACHE: dict[str, tuple[ReceptiveField, ReceptiveField]] = {}


def dcae_receptive_fields(model: DCAE) -> tuple[ReceptiveField, ReceptiveField]:
    """(encoder, decoder) fields of a DC-AE in latent frames, computed once per configuration.

    Encoder: latent frame ``j`` reads mel frames ``[(j - left) * r, (j + 1 + right) * r)``
    (``r`` = the compression, 16 for 5 stages). Decoder: the ``r`` mel frames of latent frame
    ``j`` read latent frames ``[j - left, j + right]``.
    """
    key = json.dumps(model.config.to_dict(), sort_keys=True)
    if key not in _CACHE:
        r = model.config.compression
        _CACHE[key] = downsampling_field(model.encoder, r), upsampling_field(model.decoder, r)
    return _CACHE[key]
