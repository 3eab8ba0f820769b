"""What every command shares: the one-line error exit, the model-loading options (same names
everywhere), the device check, and the options that mean one thing wherever they appear
(``--lookahead``)."""
from __future__ import annotations

import sys
from typing import Callable, NoReturn

import click
from click.core import ParameterSource

from dcae.precision import PRECISIONS


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


def given_flags(ctx: click.Context, names: tuple[str, ...]) -> list[str]:
    """The options among ``names`` (parameter names) that the user set, on the command line or in the
    environment, as their longest flag (``--ae-model``); defaults do not count."""
    params = {p.name: p for p in ctx.command.params}
    given = [n for n in names
             if ctx.get_parameter_source(n) not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)]
    return [max(params[n].opts, key=len) for n in given]


DEVICE_HELP = "cpu, cuda, cuda:1, mps ... (default: cuda if available)."


def device_unavailable(device: str) -> str | None:
    """Why ``device`` (a ``--device`` value) cannot be used here, or None when it can: not a device
    name torch knows, a kind of device the commands do not run on, or hardware this machine lacks."""
    import torch

    try:
        dev = torch.device(device)
    except RuntimeError:
        return f"--device {device}: not a device (want cpu, cuda, cuda:N or mps)"
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = "without CUDA" if torch.version.cuda is None else f"with CUDA {torch.version.cuda}"
            return f"--device {device}: no CUDA GPU available (torch {torch.__version__} built {build})"
        if dev.index is not None and dev.index >= count:
            return f"--device {device}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}"
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            return f"--device {device}: Apple MPS is not available on this machine"
    elif dev.type != "cpu":
        return f"--device {device}: the commands run on cpu, cuda or mps, not {dev.type}"
    return None


def _check_device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--device`` callback: a usable device passes unchanged, "auto" becomes None (the default),
    anything else ends the command with one line (:func:`fail`) before any model is loaded."""
    if value is None or value in ("", "auto"):
        return None
    reason = device_unavailable(value)
    if reason:
        fail(reason)
    return value


def device_option(help: str = DEVICE_HELP):
    """``--device``, checked when the command line is read (:func:`_check_device`)."""
    return click.option("--device", default=None, callback=_check_device, help=help)


def runtime_options(f):
    """``--device`` and ``--precision``."""
    f = click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
                     help="auto: bf16 where the hardware runs it natively (AVX512-BF16/AMX CPUs, CUDA), else fp32. "
                          "bf16 on CPU/GPU (emulated, slow, on AVX2 CPUs), fp16 on GPU only.")(f)
    return device_option()(f)


def model_options(f):
    """All model-loading flags: --ae-model --ae-config --vocoder --device --precision."""
    return ae_options(vocoder_option(runtime_options(f)))


def build_wrapper(ae_model, ae_config, vocoder, device, precision, with_vocoder: bool = True):
    """:func:`dcae.pipeline.load_wrapper` for a command: model problems end it with one line and exit code 2."""
    from dcae.pipeline import ModelLoadError, load_wrapper

    try:
        return load_wrapper(ae_model, ae_config, vocoder, device, precision, with_vocoder)
    except ModelLoadError as e:
        fail(str(e))


LOOKAHEAD_HELP = ("Streaming decoder lookahead in latent frames (--stream with -o): 0 (soonest audio) .. the "
                  "decoder's receptive field (the default: exact, the same audio as the offline decode).")


def lookahead_option(f):
    """``--lookahead``: the streaming DC-AE decoder's lookahead; its range is the loaded decoder's field
    (:meth:`dcae.pipeline.DCAEInferenceWrapper.check_lookahead`)."""
    return click.option("--lookahead", type=click.IntRange(min=0), default=None, help=LOOKAHEAD_HELP)(f)


def report_job(summary: dict, line: Callable[[dict], str]) -> None:
    """The end of a corpus job's command (:func:`dcae.corpus.job.run_job`): rank 0 prints ``line(summary)``
    (the merge's numbers); the exit code is 1 when an input failed (on any rank)."""
    if "utterances" in summary:
        click.echo(line(summary), err=True)
        if summary["failed"]:
            sys.exit(1)
    elif summary["failed_here"]:
        sys.exit(1)
