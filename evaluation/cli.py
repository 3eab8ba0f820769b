"""``dcae evaluate`` / ``python -m evaluation``: score degraded audio against references.

Two ways to get the degraded audio:

- ``--ref DIR --deg DIR``: files already on disk, paired by relative path.
- ``--filelist F`` + model flags: every listed file is reconstructed by the DCAE + BigVGAN, and
  also vocoded straight from its ground-truth mel (copy-synthesis, the ceiling the DCAE can reach).

Outputs in ``--out``: ``metrics.csv``, ``summary.json`` (and ``copy_synthesis/`` in model mode),
``plots/*.png`` with ``--plots``, the listening page ``report.html`` (+ ``report_files/``) with
``--html``. The exit code is 1 when any file failed or had no partner; 2 for a usage error (a flag
that does not apply to the mode given is refused, not ignored) or a filelist or model the run cannot
start from.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import click

from dcae.cli_options import fail, given_flags, model_options
from evaluation.pairing import DEFAULT_EXTS, Pair, pair_folders
from evaluation.report import format_table, summarize, write_metrics_csv, write_summary_json
from evaluation.report_media import AUDIO_FORMATS, ReportFile
from evaluation.runner import default_workers, score_pairs
from evaluation.scoring import METRIC_NAMES, Row

MODEL_FLAGS = ("ae_model", "ae_config", "vocoder", "device", "precision")
HTML_FLAGS = ("players", "report_audio")
UNPAIRED_REASONS = {"missing_degraded": "no degraded file for this reference",
                    "missing_reference": "no reference for this degraded file",
                    "ambiguous": "several files share this name (extensions differ), skipped"}


@dataclass(frozen=True)
class Options:
    """What every mode shares: where to write, how to run, and which outputs to make."""

    out: Path
    workers: int
    metric_names: tuple[str, ...]
    plots: bool
    examples: int
    html: bool
    players: int
    report_audio: str
    progress: bool
    sim_note: str


def _refuse(ctx: click.Context, names: tuple[str, ...], reason: str) -> None:
    given = given_flags(ctx, names)
    if given:
        fail(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply {reason}")


def _metric_names(sim: bool | None) -> tuple[tuple[str, ...], str]:
    """The metrics to compute and a note on SIM for the reports (``--sim`` without the encoder: exit 2)."""
    from evaluation.speaker import encoder_available, encoder_description

    unavailable = encoder_available() if sim is not False else None
    if sim is False:
        return tuple(m for m in METRIC_NAMES if m != "sim"), "SIM not computed (--no-sim)."
    if unavailable:
        if sim:
            fail(unavailable)
        click.echo(f"warning: SIM column left empty: {unavailable}", err=True)
        return tuple(m for m in METRIC_NAMES if m != "sim"), f"SIM not computed: {unavailable}"
    return METRIC_NAMES, (f"SIM: cosine similarity of speaker embeddings from {encoder_description()}; "
                          "SIM values are comparable only with SIM from the same encoder.")


def _write_report(out: Path, rows: list[Row], summary: dict) -> None:
    write_metrics_csv(out / "metrics.csv", rows)
    write_summary_json(out / "summary.json", summary)


def _print_unpaired(summary: dict) -> None:
    for key, label in (("missing_degraded", "no degraded file for reference"),
                       ("missing_reference", "no reference for degraded file"),
                       ("ambiguous", "several files share this name (extensions differ), skipped")):
        for name in summary.get(key, []):
            click.echo(f"warning: {label}: {name}", err=True)


def _print_failures(rows: list[Row], limit: int = 20) -> None:
    failed = sorted((r for r in rows if r.get("error")), key=lambda r: str(r["file"]))
    for row in failed[:limit]:
        click.echo(f"error: {row['file']}: {row['error']}", err=True)
    if len(failed) > limit:
        click.echo(f"error: ... and {len(failed) - limit} more (see the error column of metrics.csv)", err=True)


def _failed(summary: dict) -> bool:
    return bool(summary["files_with_errors"] or summary["missing_degraded"] or summary["missing_reference"]
                or summary["ambiguous"])


def _mel_figures(out: Path, rows: list[Row], panels_for: Callable[[str], list[tuple[str, Path]]], count: int) -> None:
    from evaluation.metrics import MEL_RATE, MetricError, log_mel
    from evaluation.plots import describe, pick_examples, plot_mel_comparison
    from evaluation.scoring import read_native
    from dcae.audio import AudioError

    for index, row in enumerate(pick_examples(rows, count)):
        try:
            panels = [(title, log_mel(*read_native(path)).numpy()) for title, path in panels_for(row["file"])]
        except (AudioError, MetricError) as e:
            click.echo(f"warning: no mel figure for {row['file']}: {e}", err=True)
            continue
        plot_mel_comparison(out / "plots" / f"mel_{index:02d}.png", describe(row), panels, 256 / MEL_RATE)


def _html_notes(opts: Options) -> list[str]:
    audio = {"mp3": "MP3 copies (96-128 kbit/s)", "opus": "Ogg Opus copies (64 kbit/s)",
             "wav": "16-bit WAV files"}[opts.report_audio]
    return [opts.sim_note,
            f"The players play {audio} kept in report_files/; the scores were computed on the original files.",
            f"Written {datetime.now().strftime('%Y-%m-%d %H:%M')} by dcae evaluate; the numbers are in metrics.csv "
            "and summary.json beside this page."]


def _write_html(opts: Options, lead: str, files: list[ReportFile], groups: dict[str, list[Row]],
                summaries: dict[str, dict], unpaired: dict[str, list[str]] | None = None) -> None:
    from evaluation.html_report import write_html_report

    path = write_html_report(opts.out, title=f"Listening report: {opts.out.resolve().name}", lead=lead, files=files,
                             groups=groups, summaries=summaries, metric_names=opts.metric_names, unpaired=unpaired,
                             notes=_html_notes(opts), audio_format=opts.report_audio, players=opts.players,
                             workers=opts.workers, progress=opts.progress)
    click.echo(f"listening page: {path}")


def _evaluate_folders(ref: Path, deg: Path, exts: tuple[str, ...], opts: Options) -> bool:
    out, workers, plots, examples, progress = opts.out, opts.workers, opts.plots, opts.examples, opts.progress
    pairing = pair_folders(ref, deg, exts)
    if not pairing.pairs:
        raise click.ClickException(f"no files pair up between {ref} and {deg} (extensions: {','.join(exts)})")
    rows = score_pairs(pairing.pairs, workers, progress, metric_names=opts.metric_names)
    summary = summarize(rows, pairing.missing_deg, pairing.missing_ref, pairing.ambiguous, opts.metric_names)
    _write_report(out, rows, summary)
    if opts.html:
        files = [ReportFile(p.name, {"reference": p.ref, "degraded": p.deg}) for p in pairing.pairs]
        _write_html(opts, f"{len(rows)} files of {deg} scored against the references in {ref}.", files,
                    {"degraded vs reference": rows}, {"degraded vs reference": summary},
                    {UNPAIRED_REASONS[k]: summary[k] for k in UNPAIRED_REASONS})
    if plots:
        from evaluation.plots import plot_histograms

        plot_histograms(out / "plots", {"degraded": rows})
        by_name = {p.name: p for p in pairing.pairs}
        _mel_figures(out, rows, lambda name: [("reference", by_name[name].ref), ("degraded", by_name[name].deg)],
                     examples)
    _print_unpaired(summary)
    _print_failures(rows)
    click.echo(format_table({"degraded vs reference": summary}))
    click.echo(f"{len(rows)} files scored, {summary['files_with_errors']} with errors -> {out}")
    return _failed(summary)


def _evaluate_model(filelist: Path, model_flags: dict, opts: Options) -> bool:
    from evaluation.reconstruct import COPY_SYNTHESIS, RECONSTRUCTED, ReconstructError, reconstruct_filelist

    out, workers, plots, examples, progress = opts.out, opts.workers, opts.plots, opts.examples, opts.progress
    audio_dir = out / "audio"
    try:
        jobs, load_failures = reconstruct_filelist(filelist, audio_dir, progress=progress, **model_flags)
    except ReconstructError as e:
        fail(str(e))
    groups = {}
    for group, folder in (("model", RECONSTRUCTED), ("copy_synthesis", COPY_SYNTHESIS)):
        pairs = [Pair(job.name, job.source, audio_dir / folder / job.output_name) for job in jobs]
        groups[group] = score_pairs(pairs, workers, progress, desc=f"Scoring {group}",
                                    metric_names=opts.metric_names) + load_failures
    model_summary = summarize(groups["model"], metric_names=opts.metric_names)
    ceiling_summary = summarize(groups["copy_synthesis"], metric_names=opts.metric_names)
    write_metrics_csv(out / "copy_synthesis" / "metrics.csv", groups["copy_synthesis"])
    write_summary_json(out / "copy_synthesis" / "summary.json", ceiling_summary)
    _write_report(out, groups["model"], {**model_summary, "copy_synthesis": ceiling_summary})
    if opts.html:
        files = [ReportFile(job.name, {"reference": job.source,
                                       "reconstruction": audio_dir / RECONSTRUCTED / job.output_name,
                                       "copy-synthesis": audio_dir / COPY_SYNTHESIS / job.output_name})
                 for job in jobs]
        titles = ("DCAE reconstruction", "BigVGAN copy-synthesis (ceiling)")
        _write_html(opts, f"{len(groups['model'])} files of {filelist}: the DCAE reconstruction and the BigVGAN "
                          "copy-synthesis of the ground-truth mel (the ceiling) scored against the originals.", files,
                    dict(zip(titles, (groups["model"], groups["copy_synthesis"]))),
                    dict(zip(titles, (model_summary, ceiling_summary))))
    if plots:
        from evaluation.plots import plot_histograms

        plot_histograms(out / "plots", {"DCAE reconstruction": groups["model"],
                                        "BigVGAN copy-synthesis": groups["copy_synthesis"]})
        by_name = {job.name: job for job in jobs}
        _mel_figures(out, groups["model"], lambda name: [
            ("ground truth", by_name[name].source),
            ("BigVGAN copy-synthesis", audio_dir / COPY_SYNTHESIS / by_name[name].output_name),
            ("DCAE reconstruction", audio_dir / RECONSTRUCTED / by_name[name].output_name)], examples)
    _print_failures(groups["model"])
    click.echo(format_table({"DCAE reconstruction": model_summary, "copy-synthesis (ceiling)": ceiling_summary}))
    click.echo(f"{len(groups['model'])} files scored, {model_summary['files_with_errors']} with errors -> {out}")
    return _failed(model_summary) or _failed(ceiling_summary)


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
    metric_names, sim_note = _metric_names(sim)
    opts = Options(out=out, workers=workers or default_workers(), metric_names=metric_names, plots=plots,
                   examples=examples, html=html, players=players, report_audio=report_audio, progress=progress,
                   sim_note=sim_note)
    if filelist is not None:
        failed = _evaluate_model(filelist, dict(ae_model=ae_model, ae_config=ae_config, vocoder=vocoder,
                                                device=device, precision=precision), opts)
    else:
        extensions = tuple(e.strip().lstrip(".") for e in exts.split(",") if e.strip())
        failed = _evaluate_folders(ref, deg, extensions, opts)
    if failed:
        sys.exit(1)
