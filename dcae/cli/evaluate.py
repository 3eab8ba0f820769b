"""``dcae evaluate`` / ``python -m evaluation``: score degraded audio against references
(:mod:`evaluation.modes`), or generated speech on a TTS test list (:mod:`evaluation.tts_list`).

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
ASR_FLAGS = ("language", "wer_normalizer", "asr_batch_size")


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
@click.option("--tts-list", "tts_list", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Instead: a TTS test list (Seed-TTS-eval's id|prompt_text|prompt_wav|target_text lines) whose "
                   "generated files (--generated DIR/<id>.wav) get WER (--asr), SIM against the prompt and MOS.")
@click.option("--generated", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="With --tts-list: the folder of generated audio, <id>.wav per line (dcae tts --list writes it).")
@click.option("--asr", default=None,
              help="With --tts-list: the ASR model for WER, a transformers Whisper or CTC model folder or hub id "
                   "(the field's: openai/whisper-large-v3). Without it, no WER column.")
@click.option("--language", default="en", show_default=True,
              help="With --asr: the language spoken (Whisper's code: en, zh, ...); zh and ja are scored in "
                   "characters (CER).")
@click.option("--wer-normalizer", type=click.Choice(["whisper", "seed-tts-eval"]), default="whisper",
              show_default=True, help="With --asr: text normalisation before counting errors (docs/evaluation.md).")
@click.option("--asr-batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="With --asr: files per ASR batch.")
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
@click.option("--sim-model", default=None,
              help="The speaker model of SIM: 'resemblyzer' (default), an ONNX CAM++/ECAPA file, or a transformers "
                   "x-vector model folder or hub id (e.g. microsoft/wavlm-base-plus-sv).")
@click.option("--mos/--no-mos", "mos", default=None,
              help="Predicted MOS (DistillMOS) of every degraded / generated file. Default: computed when installed.")
@click.option("--mos-model", type=click.Choice(["distillmos", "dnsmos"]), default=None,
              help="The MOS predictor: distillmos (default; README, 'Extras') or dnsmos (DNSMOS P.835 OVRL, the "
                   "[mos] extra).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
@model_options
@click.pass_context
def evaluate_command(ctx: click.Context, ref: Path | None, deg: Path | None, filelist: Path | None,
                     tts_list: Path | None, generated: Path | None, asr: str | None, language: str,
                     wer_normalizer: str, asr_batch_size: int, out: Path,
                     workers: int | None, exts: str, plots: bool, examples: int, html: bool, players: int,
                     report_audio: str, sim: bool | None, sim_model: str | None, mos: bool | None, mos_model: str | None,
                     progress: bool,
                     ae_model: str | None, ae_config: str | None, vocoder: str | None, device: str | None,
                     precision: str) -> None:
    """Score audio with PESQ-WB/NB, STOI, ESTOI, log-mel distance, SI-SDR, speaker similarity and predicted
    MOS; or generated speech on a TTS test list with WER, SIM against the prompt and MOS.

    \b
    dcae evaluate --ref clean/ --deg recon/ --out report/ --html
    dcae evaluate --filelist test.txt --ae-model G.pt --ae-config cfg.json --vocoder bigvgan/ --out report/ --html
    dcae evaluate --tts-list meta.lst --generated synth/ --asr openai/whisper-large-v3 --out report/ --html
    """
    modes = [name for name, given in (("--ref/--deg", ref is not None or deg is not None),
                                      ("--filelist", filelist is not None), ("--tts-list", tts_list is not None))
             if given]
    if len(modes) > 1:
        fail(f"give one of --ref/--deg, --filelist or --tts-list, not {' and '.join(modes)}")
    if not modes or (modes == ["--ref/--deg"] and (ref is None or deg is None)):
        fail("give --ref and --deg folders, --filelist with the model flags, or --tts-list with --generated")
    if tts_list is not None and generated is None:
        fail("--tts-list needs --generated DIR (the generated audio, <id>.wav per line)")
    if tts_list is None:
        _refuse(ctx, ("generated", "asr"), "without --tts-list")
    elif asr is None:
        _refuse(ctx, ASR_FLAGS, "without --asr")
    if filelist is None:
        _refuse(ctx, tuple(f for f in MODEL_FLAGS if tts_list is None or f != "device"),
                "to --ref/--deg or --tts-list (they load the model that --filelist reconstructs with)"
                if tts_list is None else "to --tts-list (only --device does: the ASR model's)")
    if ref is None:
        _refuse(ctx, ("exts",), "to --filelist or --tts-list (they name their files; --exts filters --ref/--deg folders)")
    if sim is False:
        _refuse(ctx, ("sim_model",), "with --no-sim")
    if mos is False:
        _refuse(ctx, ("mos_model",), "with --no-mos")
    if tts_list is not None:
        _refuse(ctx, ("examples",), "to --tts-list (its --plots are histograms; the page has every file's mel)")
    if not html:
        _refuse(ctx, HTML_FLAGS, "without --html")
    if not plots:
        _refuse(ctx, ("examples",), "without --plots")
    from evaluation import mos as mos_predictor
    from evaluation import speaker
    from evaluation.modes import EvaluationError, Options, evaluate_folders, evaluate_reconstructions, metric_names
    from evaluation.runner import default_workers
    from tts.speakers.verification import RESEMBLYZER

    speaker.use_speaker_model(sim_model or RESEMBLYZER)  # set each time: one process may run several commands
    mos_predictor.use_mos_model(mos_model or mos_predictor.MOS_MODELS[0])
    try:
        names, notes, models = metric_names(True if sim_model is not None else sim,
                                            True if mos_model is not None else mos, _log)
        opts = Options(out=out, workers=workers or default_workers(), metric_names=names, plots=plots,
                       examples=examples, html=html, players=players, report_audio=report_audio, progress=progress,
                       model_notes=tuple(notes), models=models, log=_log)
        if tts_list is not None:
            from evaluation.tts_list import ASROptions, evaluate_test_list

            failed = evaluate_test_list(tts_list, generated, opts, ASROptions(
                asr, language, wer_normalizer, device or "cpu", asr_batch_size))
        elif filelist is not None:
            failed = evaluate_reconstructions(filelist, dict(ae_model=ae_model, ae_config=ae_config, vocoder=vocoder,
                                                             device=device, precision=precision), opts)
        else:
            extensions = tuple(e.strip().lstrip(".") for e in exts.split(",") if e.strip())
            failed = evaluate_folders(ref, deg, extensions, opts)
    except EvaluationError as e:
        fail(str(e))
    if failed:
        sys.exit(1)
