"""The DC-AE encoder and decoder (the configuration space of diffusers' ``AutoencoderDC``).

Stage ``i`` of ``n`` works at 1/2**i of the input resolution. For mels viewed as images
(B, 1, 80, T) and 5 stages the latent is (B, latent_channels, 5, T/16).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from dcae.model.blocks import DownsampleBlock, UpsampleBlock, make_block
from dcae.model.config import DCAEConfig
from dcae.model.layers import ChannelRMSNorm, make_activation


class Encoder(nn.Module):
    """(B, in_channels, H, W) -> (B, latent_channels, H / 2**(n-1), W / 2**(n-1))."""

    def __init__(self, cfg: DCAEConfig):
        super().__init__()
        channels = cfg.encoder_block_out_channels
        layers = cfg.encoder_layers_per_block
        types = cfg.per_stage("encoder_block_types")
        unshuffle = cfg.downsample_block_type == "pixel_unshuffle"
        n = len(channels)
        if layers[0] > 0:
            self.conv_in = nn.Conv2d(cfg.in_channels, channels[0], 3, 1, 1)
        else:  # no blocks at full resolution: go straight to stage 1
            self.conv_in = DownsampleBlock(cfg.in_channels, channels[1], unshuffle, shortcut=False)
        stages = []
        for i in range(n):
            stage = [make_block(types[i], channels[i], cfg.attention_head_dim, "rms_norm", "silu",
                                cfg.encoder_qkv_multiscales[i]) for _ in range(layers[i])]
            if i < n - 1 and layers[i] > 0:
                stage.append(DownsampleBlock(channels[i], channels[i + 1], unshuffle, shortcut=True))
            stages.append(nn.Sequential(*stage))
        self.down_blocks = nn.ModuleList(stages)
        self.conv_out = nn.Conv2d(channels[-1], cfg.latent_channels, 3, 1, 1)
        self.out_shortcut = cfg.encoder_out_shortcut
        self.out_group_size = channels[-1] // cfg.latent_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for stage in self.down_blocks:
            x = stage(x)
        y = self.conv_out(x)
        if self.out_shortcut:
            y = y + x.unflatten(1, (-1, self.out_group_size)).mean(dim=2)
        return y


class Decoder(nn.Module):
    """(B, latent_channels, h, w) -> (B, in_channels, h * 2**(n-1), w * 2**(n-1))."""

    def __init__(self, cfg: DCAEConfig):
        super().__init__()
        channels = cfg.decoder_block_out_channels
        layers = cfg.decoder_layers_per_block
        types = cfg.per_stage("decoder_block_types")
        norms = cfg.per_stage("decoder_norm_types")
        acts = cfg.per_stage("decoder_act_fns")
        interpolate = cfg.upsample_block_type == "interpolate"
        n = len(channels)
        self.conv_in = nn.Conv2d(cfg.latent_channels, channels[-1], 3, 1, 1)
        self.in_shortcut = cfg.decoder_in_shortcut
        self.in_repeats = channels[-1] // cfg.latent_channels
        stages = []
        for i in range(n):  # stored by stage index, run from the deepest stage up
            stage = []
            if i < n - 1 and layers[i] > 0:
                stage.append(UpsampleBlock(channels[i + 1], channels[i], interpolate, shortcut=True))
            stage += [make_block(types[i], channels[i], cfg.attention_head_dim, norms[i], acts[i],
                                 cfg.decoder_qkv_multiscales[i]) for _ in range(layers[i])]
            stages.append(nn.Sequential(*stage))
        self.up_blocks = nn.ModuleList(stages)
        out_channels = channels[0] if layers[0] > 0 else channels[1]
        self.norm_out = ChannelRMSNorm(out_channels, eps=1e-5)
        self.conv_act = make_activation(cfg.decoder_conv_act_fn)
        if layers[0] > 0:
            self.conv_out = nn.Conv2d(out_channels, cfg.in_channels, 3, 1, 1)
        else:
            self.conv_out = UpsampleBlock(out_channels, cfg.in_channels, interpolate, shortcut=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(z)
        if self.in_shortcut:
            x = x + z.repeat_interleave(self.in_repeats, dim=1)
        for stage in reversed(self.up_blocks):
            x = stage(x)
        return self.conv_out(self.conv_act(self.norm_out(x)))


class DCAE(nn.Module):
    """Encoder + decoder with the parameter names of diffusers' ``AutoencoderDC``."""

    def __init__(self, config: DCAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)
