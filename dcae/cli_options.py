"""Click options shared by every command that loads models (same names everywhere)."""
from __future__ import annotations

import sys
from typing import NoReturn

import click

from .precision import PRECISIONS


def fail(message: str) -> NoReturn:
    """End a command with one ``error: message`` line on stderr and exit code 2 (a usage or input
    error: nothing was done). Every command ends this way, so scripts can tell it from exit 1
    (some files failed)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def ae_options(f):
    """``--ae-model`` and ``--ae-config`` (defaults: the published DC-Speech-VAE weights)."""
    f = click.option("--ae-config", "ae_config", default=None, type=click.Path(dir_okay=False),
                     help="DCAE config JSON (default: packaged copy of the published config).")(f)
    f = click.option("--ae-model", "ae_model", default=None,
                     help="DCAE generator checkpoint (.pt in the official layout, or .safetensors). "
                          "Default: KdaiP/DC-Speech-VAE generator_700000.pt from the HF hub.")(f)
    return f


def vocoder_option(f):
    return click.option("--vocoder", "vocoder", default=None,
                        help="BigVGAN folder (config.json + bigvgan_generator.pt) or hub id. "
                             "Default: nvidia/bigvgan_v2_22khz_80band_256x.")(f)


def runtime_options(f):
    """``--device`` and ``--precision``."""
    f = click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
                     help="auto: bf16 where the hardware runs it natively (AVX512-BF16/AMX CPUs, CUDA), else fp32. "
                          "bf16 on CPU/GPU (emulated, slow, on AVX2 CPUs), fp16 on GPU only.")(f)
    f = click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available).")(f)
    return f


def model_options(f):
    """All model-loading flags: --ae-model --ae-config --vocoder --device --precision."""
    return ae_options(vocoder_option(runtime_options(f)))
