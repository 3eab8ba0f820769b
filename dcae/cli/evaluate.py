"""``dcae evaluate`` / ``python -m evaluation``: score degraded audio against references
(:mod:`evaluation.modes`).

The exit code is 1 when any file failed or had no partner; 2 for a usage error (a flag that does not
apply to the mode given is refused, not ignored) or a filelist or model the run cannot start from.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from dcae.cli.options import fail, given_flags, model_options
from evaluation import AUDIO_FORMATS
from evaluation.pairing import DEFAULT_EXTS

MODEL_FLAGS = ("ae_model", "ae_config", "vocoder", "device", "precision")
HTML_FLAGS = ("players", "report_audio")


def _refuse(ctx: click.Context, names: tuple[str, ...], reason: str) -> None:
    given = given_flags(ctx, names)
    if given:
        fail(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply {reason}")


def _log(message: str) -> None:
    """Warnings and errors to stderr, the rest (tables, where the outputs went) to stdout."""
    click.echo(message, err=message.startswith(("warning:", "error:")))


@click.command("evaluate")
@click.option("--ref", "ref", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of reference (clean) audio.")
@click.option("--deg", "deg", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of degraded / reconstructed audio, same relative paths as --ref.")
@click.option("--filelist", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Instead of --ref/--deg: reconstruct these files with the model and score them.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Report folder (metrics.csv, summary.json, plots/, report.html).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Scoring processes (default: one per CPU core).")
@click.option("--exts", default=",".join(DEFAULT_EXTS), show_default=True,
              help="Audio extensions to pair in --ref/--deg (comma-separated).")
@click.option("--plots/--no-plots", default=False, show_default=True,
              help="Also write PNG histograms and ground-truth vs degraded mel spectrograms.")
@click.option("--examples", type=click.IntRange(min=0), default=3, show_default=True,
              help="With --plots: how many files get a mel comparison (worst, median, best PESQ-WB...).")
@click.option("--html/--no-html", default=False, show_default=True,
              help="Also write the listening page report.html: summary, histograms, and every file sortable by "
                   "any metric with players and mel images of each rendering.")
@click.option("--players", type=click.IntRange(min=0), default=20, show_default=True,
              help="With --html: files whose audio players are on the page when it opens (the others load on request).")
@click.option("--report-audio", "report_audio", type=click.Choice(AUDIO_FORMATS), default="mp3", show_default=True,
              help="With --html: format of the audio copies the page plays (wav keeps them lossless, 2-6x larger).")
@click.option("--sim/--no-sim", "sim", default=None,
              help="Speaker similarity (Resemblyzer encoder). Default: computed when the encoder is installed.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
@model_options
@click.pass_context
def evaluate_command(ctx: click.Context, ref: Path | None, deg: Path | None, filelist: Path | None, out: Path,
                     workers: int | None, exts: str, plots: bool, examples: int, html: bool, players: int,
                     report_audio: str, sim: bool | None, progress: bool, ae_model: str | None,
                     ae_config: str | None, vocoder: str | None, device: str | None, precision: str) -> None:
    """Score audio with PESQ-WB/NB, STOI, ESTOI, log-mel distance, SI-SDR and speaker similarity.

    \b
    dcae evaluate --ref clean/ --deg recon/ --out report/ --html
    dcae evaluate --filelist test.txt --ae-model G.pt --ae-config cfg.json --vocoder bigvgan/ --out report/ --html
    """
    if filelist is not None and (ref is not None or deg is not None):
        fail("give either --filelist or --ref/--deg, not both")
    if filelist is None and (ref is None or deg is None):
        fail("give --ref and --deg folders, or --filelist with the model flags")
    if filelist is None:
        _refuse(ctx, MODEL_FLAGS, "to --ref/--deg (they load the model that --filelist reconstructs with)")
    else:
        _refuse(ctx, ("exts",), "to --filelist (it names its files; --exts filters --ref/--deg folders)")
    if not html:
        _refuse(ctx, HTML_FLAGS, "without --html")
    if not plots:
        _refuse(ctx, ("examples",), "without --plots")
    from evaluation.modes import EvaluationError, Options, evaluate_folders, evaluate_reconstructions, metric_names
    from evaluation.runner import default_workers

    try:
        names, sim_note = metric_names(sim, _log)
        opts = Options(out=out, workers=workers or default_workers(), metric_names=names, plots=plots,
                       examples=examples, html=html, players=players, report_audio=report_audio, progress=progress,
                       sim_note=sim_note, log=_log)
        if filelist is not None:
            failed = evaluate_reconstructions(filelist, dict(ae_model=ae_model, ae_config=ae_config, vocoder=vocoder,
                                                             device=device, precision=precision), opts)
        else:
            extensions = tuple(e.strip().lstrip(".") for e in exts.split(",") if e.strip())
            failed = evaluate_folders(ref, deg, extensions, opts)
    except EvaluationError as e:
        fail(str(e))
    if failed:
        sys.exit(1)
