"""BigVGAN run stage by stage, each stage in windows whose tensors the CPU allocator can reuse.

Why: one fp32 BigVGAN-v2 pass on CPU costs ~12 ms per mel frame up to ~650 frames, then 17 ms at
760, 23 ms at 864 and 65 ms at 1200 (2 cores). Its activations take 48 KiB per mel frame, and glibc
serves every allocation above its largest mmap threshold (32 MiB, reached at ~680 frames) with
fresh pages that are faulted in on every call (800 frames: 7.7 M page faults, 13 s of system time;
600 frames: 0.9 M, 1 s). Windows keep the tensors small: TENSOR_LIMIT bytes for a stage's largest
output, a quarter of the threshold since padded copies and temporaries are larger (864 frames:
32 MiB 1.8-3.4 M faults, 16 MiB 0.01-2 M, 8 MiB < 0.05 M and the fastest, on AVX512 and AVX2).
Running the windows per stage keeps their context small: a stage needs only its own receptive
field (:func:`vocoder.receptive_field.stage_fields`: 26 mel frames for the first stage, 6 to 0.4
for the later ones) instead of the whole network's 38 on each side of every window. The result
equals one pass to float rounding (tested).
"""
from __future__ import annotations

import torch
from bigvgan.bigvgan import BigVGAN

from dcae.receptive_field import ReceptiveField, chunk_windows
from vocoder.field import stage_fields

TENSOR_LIMIT = 8 * 2**20  # bytes (see above)


def run_stage(generator: BigVGAN, i: int, x: torch.Tensor) -> torch.Tensor:
    """Stage ``i`` of ``BigVGAN.forward``: (B, C_in, T) -> (B, C_out, T * upsample_rates[i]).

    Stage 0 starts with ``conv_pre`` (input: mel (B, n_mels, T)); the last stage ends with the post
    activation, ``conv_post`` and tanh / clamp (output: audio (B, 1, samples)).
    """
    g = generator
    if i == 0:
        x = g.conv_pre(x)
    for up in g.ups[i]:
        x = up(x)
    total = None
    for block in g.resblocks[i * g.num_kernels:(i + 1) * g.num_kernels]:
        total = block(x) if total is None else total + block(x)
    x = total / g.num_kernels
    if i == g.num_upsamples - 1:
        x = g.conv_post(g.activation_post(x))
        x = torch.tanh(x) if g.use_tanh_at_final else torch.clamp(x, min=-1.0, max=1.0)
    return x


def stage_window(generator: BigVGAN, i: int, field: ReceptiveField, itemsize: int,
                 tensor_limit: int = TENSOR_LIMIT) -> int:
    """Input samples per window of stage ``i`` so that its largest tensor (the 2x-upsampled
    activation of its output) stays under ``tensor_limit`` bytes, context included."""
    up = generator.ups[i][0]
    per_sample = max(up.in_channels, 2 * up.out_channels * generator.h.upsample_rates[i]) * itemsize
    context = 0 if field.is_global else field.left + field.right
    return max(tensor_limit // per_sample - context, 2 * context, 1)


def generate(generator: BigVGAN, mel: torch.Tensor, tensor_limit: int | None = TENSOR_LIMIT) -> torch.Tensor:
    """Mel (B, n_mels, T) -> audio (B, 1, T * hop), equal to ``generator(mel)``; stage by stage in
    windows under ``tensor_limit`` bytes (``None``: one pass per stage)."""
    x = mel
    for i, field in enumerate(stage_fields(generator)):
        length, rate = x.shape[-1], generator.h.upsample_rates[i]
        window = length if tensor_limit is None else stage_window(generator, i, field, x.element_size(), tensor_limit)
        if field.is_global or length <= window + field.left + field.right:
            x = run_stage(generator, i, x)
            continue
        out = None
        for start, stop, w0, w1 in chunk_windows(length, window, field.left, field.right):
            y = run_stage(generator, i, x[..., w0:w1])[..., (start - w0) * rate: (stop - w0) * rate]
            out = y.new_empty(*y.shape[:-1], length * rate) if out is None else out
            out[..., start * rate: stop * rate] = y
        x = out
    return x
