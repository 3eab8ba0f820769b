"""A faster equivalent of BigVGAN's anti-aliased activation for low-precision CPU/GPU inference.

BigVGAN's ``Activation1d`` (``x -> down2(snake(up2(x)))``) spends most of its time in a
depthwise *transposed* convolution for the 2x upsampling. Profiling on CPU showed that, once the
channel-mixing convolutions run in bf16 (2x faster), this activation becomes the bottleneck.
:class:`FastActivation1d` computes the same function with:

- polyphase upsampling: the even and odd output samples are two 6-tap depthwise convolutions of
  the replicate-padded input (no transposed convolution, no zero-stuffing, no cropping);
- SnakeBeta / Snake with ``exp(log alpha)`` and ``1 / (beta + eps)`` precomputed once;
- the same 12-tap stride-2 low-pass for downsampling.

It equals the original to float32 rounding (tested); :func:`use_fast_activations` swaps it in.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from bigvgan.activations import Snake, SnakeBeta
from bigvgan.alias_free_activation.torch.act import Activation1d


class FastActivation1d(nn.Module):
    """(B, C, T) -> (B, C, T): the anti-aliased Snake/SnakeBeta of one ``Activation1d``."""

    def __init__(self, original: Activation1d):
        super().__init__()
        up, down = original.upsample, original.downsample.lowpass
        if (up.ratio, original.downsample.ratio, up.kernel_size, down.kernel_size) != (2, 2, 12, 12) \
                or down.padding_mode != "replicate":
            raise ValueError("FastActivation1d supports BigVGAN's default 2x/12-tap anti-aliasing only")
        snake = original.act
        channels = snake.alpha.numel()
        up_taps = up.filter.detach().view(-1) * up.ratio
        # After BigVGAN's crop, output[2t] = sum_i xp[t+7-i] f[2i+1] and output[2t+1] = sum_i xp[t+8-i] f[2i]
        # (xp: input replicate-padded by 5): as correlations over xp[t+2 : t+8] and xp[t+3 : t+9].
        even = torch.stack([up_taps[2 * (5 - k) + 1] for k in range(6)])
        odd = torch.stack([up_taps[2 * (5 - k)] for k in range(6)])
        self.register_buffer("w_even", even.view(1, 1, 6).repeat(channels, 1, 1))
        self.register_buffer("w_odd", odd.view(1, 1, 6).repeat(channels, 1, 1))
        self.register_buffer("w_down", down.filter.detach().view(1, 1, -1).repeat(channels, 1, 1))
        alpha = snake.alpha.detach()
        scale = snake.beta.detach() if isinstance(snake, SnakeBeta) else alpha
        if snake.alpha_logscale:
            alpha, scale = alpha.exp(), scale.exp()
        self.register_buffer("alpha", alpha.view(-1, 1))
        self.register_buffer("inv_scale", (1.0 / (scale + snake.no_div_by_zero)).view(-1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels, length = x.shape[-2:]
        padded = F.pad(x, (5, 5), mode="replicate")
        even = F.conv1d(padded[..., 2:length + 7], self.w_even, groups=channels)
        odd = F.conv1d(padded[..., 3:length + 8], self.w_odd, groups=channels)
        upsampled = torch.stack((even, odd), dim=-1).flatten(-2)  # (B, C, 2T), interleaved
        activated = torch.addcmul(upsampled, self.inv_scale, torch.sin(upsampled * self.alpha).square_())
        return F.conv1d(F.pad(activated, (5, 6), mode="replicate"), self.w_down, stride=2, groups=channels)


def use_fast_activations(module: nn.Module) -> nn.Module:
    """Replace every BigVGAN ``Activation1d`` (Snake or SnakeBeta) inside ``module``, in place."""
    for name, child in module.named_children():
        if isinstance(child, Activation1d) and isinstance(child.act, (Snake, SnakeBeta)):
            setattr(module, name, FastActivation1d(child))
        else:
            use_fast_activations(child)
    return module
