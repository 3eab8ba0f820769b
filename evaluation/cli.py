"""``dcae evaluate`` / ``python -m evaluation``: score degraded audio against references.

Two ways to get the degraded audio:

- ``--ref DIR --deg DIR``: files already on disk, paired by relative path.
- ``--filelist F`` + model flags: every listed file is reconstructed by the DCAE + BigVGAN, and
  also vocoded straight from its ground-truth mel (copy-synthesis, the ceiling the DCAE can reach).

Outputs in ``--out``: ``metrics.csv``, ``summary.json`` (and ``copy_synthesis/`` in model mode),
``plots/*.png`` with ``--plots``. The exit code is 1 when any file failed or had no partner.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import click

from dcae.cli_options import model_options
from evaluation.pairing import DEFAULT_EXTS, Pair, pair_folders
from evaluation.report import format_table, summarize, write_metrics_csv, write_summary_json
from evaluation.runner import default_workers, score_pairs
from evaluation.scoring import Row


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
    from vocoder.audio import AudioError

    for index, row in enumerate(pick_examples(rows, count)):
        try:
            panels = [(title, log_mel(*read_native(path)).numpy()) for title, path in panels_for(row["file"])]
        except (AudioError, MetricError) as e:
            click.echo(f"warning: no mel figure for {row['file']}: {e}", err=True)
            continue
        plot_mel_comparison(out / "plots" / f"mel_{index:02d}.png", describe(row), panels, 256 / MEL_RATE)


def _evaluate_folders(ref: Path, deg: Path, out: Path, workers: int, exts: tuple[str, ...],
                      plots: bool, examples: int, progress: bool) -> bool:
    pairing = pair_folders(ref, deg, exts)
    if not pairing.pairs:
        raise click.ClickException(f"no files pair up between {ref} and {deg} (extensions: {','.join(exts)})")
    rows = score_pairs(pairing.pairs, workers, progress)
    summary = summarize(rows, pairing.missing_deg, pairing.missing_ref, pairing.ambiguous)
    _write_report(out, rows, summary)
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


def _evaluate_model(filelist: Path, out: Path, model_flags: dict, workers: int, plots: bool,
                    examples: int, progress: bool) -> bool:
    from evaluation.reconstruct import COPY_SYNTHESIS, RECONSTRUCTED, reconstruct_filelist

    audio_dir = out / "audio"
    jobs, load_failures = reconstruct_filelist(filelist, audio_dir, progress=progress, **model_flags)
    groups = {}
    for group, folder in (("model", RECONSTRUCTED), ("copy_synthesis", COPY_SYNTHESIS)):
        pairs = [Pair(job.name, job.source, audio_dir / folder / job.output_name) for job in jobs]
        groups[group] = score_pairs(pairs, workers, progress, desc=f"Scoring {group}") + load_failures
    model_summary = summarize(groups["model"])
    ceiling_summary = summarize(groups["copy_synthesis"])
    write_metrics_csv(out / "copy_synthesis" / "metrics.csv", groups["copy_synthesis"])
    write_summary_json(out / "copy_synthesis" / "summary.json", ceiling_summary)
    _write_report(out, groups["model"], {**model_summary, "copy_synthesis": ceiling_summary})
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
              help="Report folder (metrics.csv, summary.json, plots/).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Scoring processes (default: one per CPU core).")
@click.option("--exts", default=",".join(DEFAULT_EXTS), show_default=True,
              help="Audio extensions to pair in --ref/--deg (comma-separated).")
@click.option("--plots/--no-plots", default=False, show_default=True,
              help="Also write PNG histograms and ground-truth vs degraded mel spectrograms.")
@click.option("--examples", type=click.IntRange(min=0), default=3, show_default=True,
              help="With --plots: how many files get a mel comparison (worst, median, best PESQ-WB...).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
@model_options
def evaluate_command(ref: Path | None, deg: Path | None, filelist: Path | None, out: Path, workers: int | None,
                     exts: str, plots: bool, examples: int, progress: bool, ae_model: str | None,
                     ae_config: str | None, vocoder: str | None, device: str | None, precision: str) -> None:
    """Score audio with PESQ-WB/NB, STOI, ESTOI, log-mel distance and SI-SDR.

    \b
    dcae evaluate --ref clean/ --deg recon/ --out report/
    dcae evaluate --filelist test.txt --ae-model G.pt --ae-config cfg.json --vocoder bigvgan/ --out report/
    """
    workers = workers or default_workers()
    if filelist is not None:
        if ref is not None or deg is not None:
            raise click.UsageError("give either --filelist or --ref/--deg, not both")
        failed = _evaluate_model(filelist, out, dict(ae_model=ae_model, ae_config=ae_config, vocoder=vocoder,
                                                     device=device, precision=precision),
                                 workers, plots, examples, progress)
    elif ref is not None and deg is not None:
        extensions = tuple(e.strip().lstrip(".") for e in exts.split(",") if e.strip())
        failed = _evaluate_folders(ref, deg, out, workers, extensions, plots, examples, progress)
    else:
        raise click.UsageError("give --ref and --deg folders, or --filelist with the model flags")
    if failed:
        sys.exit(1)
