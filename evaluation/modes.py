"""The evaluation modes of ``dcae evaluate``: score degraded audio against references.

- :func:`evaluate_folders` (``--ref DIR --deg DIR``): files already on disk, paired by relative path.
- :func:`evaluate_reconstructions` (``--filelist F`` + model flags): every listed file is reconstructed
  by the DCAE + BigVGAN, and also vocoded straight from its ground-truth mel (copy-synthesis, the
  ceiling the DCAE can reach).

Outputs in ``out``: ``metrics.csv``, ``summary.json`` (and ``copy_synthesis/`` in model mode),
``plots/*.png`` with ``plots``, the listening page ``report.html`` (+ ``report_files/``) with
``html``. Each mode returns whether any file failed or had no partner; messages for the user go
to ``log`` one line at a time; a run that cannot start raises :class:`EvaluationError` (one line).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from dcae.audio import AudioError
from evaluation import mos as mos_model
from evaluation import speaker
from evaluation.html_report import write_html_report
from evaluation.metrics import MEL_RATE, MetricError, log_mel
from evaluation.pairing import Pair, pair_folders
from evaluation.plots import describe, pick_examples, plot_histograms, plot_mel_comparison
from evaluation.reconstruct import COPY_SYNTHESIS, RECONSTRUCTED, ReconstructError, reconstruct_filelist
from evaluation.report import format_table, summarize, write_metrics_csv, write_summary_json
from evaluation.report_media import ReportFile
from evaluation.runner import score_pairs
from evaluation.scoring import METRIC_NAMES, OPTIONAL_METRICS, Row, read_native

Log = Callable[[str], None]
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
    model_notes: tuple[str, ...]  # what SIM and MOS were computed with (or why not), for the page
    models: dict[str, str]  # metric -> the model that computed it, for summary.json
    log: Log  # user messages (warnings, tables, where the outputs went), one line at a time


class EvaluationError(ValueError):
    """An evaluation that cannot start (one line: which input, and why)."""


def optional_metrics(sim: bool | None, mos: bool | None, log: Log) -> tuple[set[str], list[str], dict[str, str]]:
    """Which of the optional metrics (SIM, MOS) to compute, a note on each for the page, and the model of
    each computed one. Each flag: True (required: raises :class:`EvaluationError` when its model is
    missing), False (left out), None (computed when installed, else a warning)."""
    skipped, notes, models = set(), [], {}
    for name, wanted, flag in (("sim", sim, "--no-sim"), ("mos", mos, "--no-mos")):
        label = name.upper()
        unavailable = OPTIONAL_METRICS[name]() if wanted is not False else None
        if wanted is False:
            skipped.add(name)
            notes.append(f"{label} not computed ({flag}).")
        elif unavailable:
            if wanted:
                raise EvaluationError(unavailable)
            log(f"warning: {label} column left empty: {unavailable}")
            skipped.add(name)
            notes.append(f"{label} not computed: {unavailable}")
        elif name == "sim":
            models["sim"] = speaker.encoder_description()
            notes.append(f"SIM: cosine similarity of speaker embeddings from {models['sim']}; SIM values are "
                         "comparable only with SIM from the same encoder.")
        else:
            models["mos"] = mos_model.mos_description()
            notes.append(f"MOS: predicted by {models['mos']} from each degraded signal alone (no reference); "
                         "comparable only with MOS from the same predictor.")
    return skipped, notes, models


def metric_names(sim: bool | None, mos: bool | None, log: Log) -> tuple[tuple[str, ...], list[str], dict[str, str]]:
    """The metrics of the reference modes (every one of :data:`METRIC_NAMES` but the optional ones left
    out), the notes and models of :func:`optional_metrics`."""
    skipped, notes, models = optional_metrics(sim, mos, log)
    return tuple(m for m in METRIC_NAMES if m not in skipped), notes, models


def _write_report(out: Path, rows: list[Row], summary: dict) -> None:
    write_metrics_csv(out / "metrics.csv", rows)
    write_summary_json(out / "summary.json", summary)


def _print_unpaired(summary: dict, log: Log) -> None:
    for key, label in (("missing_degraded", "no degraded file for reference"),
                       ("missing_reference", "no reference for degraded file"),
                       ("ambiguous", "several files share this name (extensions differ), skipped")):
        for name in summary.get(key, []):
            log(f"warning: {label}: {name}")


def print_failures(rows: list[Row], log: Log, limit: int = 20) -> None:
    failed = sorted((r for r in rows if r.get("error")), key=lambda r: str(r["file"]))
    for row in failed[:limit]:
        log(f"error: {row['file']}: {row['error']}")
    if len(failed) > limit:
        log(f"error: ... and {len(failed) - limit} more (see the error column of metrics.csv)")


def _failed(summary: dict) -> bool:
    return bool(summary["files_with_errors"] or summary["missing_degraded"] or summary["missing_reference"]
                or summary["ambiguous"])


def _mel_figures(out: Path, rows: list[Row], panels_for: Callable[[str], list[tuple[str, Path]]], count: int,
                 log: Log) -> None:
    for index, row in enumerate(pick_examples(rows, count)):
        try:
            panels = [(title, log_mel(*read_native(path)).numpy()) for title, path in panels_for(row["file"])]
        except (AudioError, MetricError) as e:
            log(f"warning: no mel figure for {row['file']}: {e}")
            continue
        plot_mel_comparison(out / "plots" / f"mel_{index:02d}.png", describe(row), panels, 256 / MEL_RATE)


def html_notes(opts: Options) -> list[str]:
    audio = {"mp3": "MP3 copies (96-128 kbit/s)", "opus": "Ogg Opus copies (64 kbit/s)",
             "wav": "16-bit WAV files"}[opts.report_audio]
    return [*opts.model_notes,
            f"The players play {audio} kept in report_files/; the scores were computed on the original files.",
            f"Written {datetime.now().strftime('%Y-%m-%d %H:%M')} by dcae evaluate; the numbers are in metrics.csv "
            "and summary.json beside this page."]


def _write_html(opts: Options, lead: str, files: list[ReportFile], groups: dict[str, list[Row]],
                summaries: dict[str, dict], unpaired: dict[str, list[str]] | None = None) -> None:
    path = write_html_report(opts.out, title=f"Listening report: {opts.out.resolve().name}", lead=lead, files=files,
                             groups=groups, summaries=summaries, metric_names=opts.metric_names, unpaired=unpaired,
                             notes=html_notes(opts), audio_format=opts.report_audio, players=opts.players,
                             workers=opts.workers, progress=opts.progress)
    opts.log(f"listening page: {path}")


def evaluate_folders(ref: Path, deg: Path, exts: tuple[str, ...], opts: Options) -> bool:
    """Score the files of ``deg`` against those of ``ref`` with the same relative path (any of ``exts``).
    Returns True when a file failed or had no partner."""
    out, workers, plots, examples, progress = opts.out, opts.workers, opts.plots, opts.examples, opts.progress
    pairing = pair_folders(ref, deg, exts)
    if not pairing.pairs:  # nothing to score: as a run where every file lacks its partner
        opts.log(f"error: no files pair up between {ref} and {deg} (extensions: {','.join(exts)})")
        return True
    rows = score_pairs(pairing.pairs, workers, progress, metric_names=opts.metric_names)
    summary = summarize(rows, pairing.missing_deg, pairing.missing_ref, pairing.ambiguous, opts.metric_names)
    summary["models"] = opts.models
    _write_report(out, rows, summary)
    if opts.html:
        files = [ReportFile(p.name, {"reference": p.ref, "degraded": p.deg}) for p in pairing.pairs]
        _write_html(opts, f"{len(rows)} files of {deg} scored against the references in {ref}.", files,
                    {"degraded vs reference": rows}, {"degraded vs reference": summary},
                    {UNPAIRED_REASONS[k]: summary[k] for k in UNPAIRED_REASONS})
    if plots:
        plot_histograms(out / "plots", {"degraded": rows})
        by_name = {p.name: p for p in pairing.pairs}
        _mel_figures(out, rows, lambda name: [("reference", by_name[name].ref), ("degraded", by_name[name].deg)],
                     examples, opts.log)
    _print_unpaired(summary, opts.log)
    print_failures(rows, opts.log)
    opts.log(format_table({"degraded vs reference": summary}))
    opts.log(f"{len(rows)} files scored, {summary['files_with_errors']} with errors -> {out}")
    return _failed(summary)


def evaluate_reconstructions(filelist: Path, model_flags: dict, opts: Options) -> bool:
    """Reconstruct every file of ``filelist`` with the models ``model_flags`` name (``ae_model``,
    ``ae_config``, ``vocoder``, ``device``, ``precision``), copy-synthesise it with BigVGAN, and score
    both against the original. Returns True when a file failed."""
    out, workers, plots, examples, progress = opts.out, opts.workers, opts.plots, opts.examples, opts.progress
    audio_dir = out / "audio"
    try:
        jobs, load_failures = reconstruct_filelist(filelist, audio_dir, progress=progress, **model_flags)
    except ReconstructError as e:
        raise EvaluationError(str(e)) from None
    groups = {}
    for group, folder in (("model", RECONSTRUCTED), ("copy_synthesis", COPY_SYNTHESIS)):
        pairs = [Pair(job.name, job.source, audio_dir / folder / job.output_name) for job in jobs]
        groups[group] = score_pairs(pairs, workers, progress, desc=f"Scoring {group}",
                                    metric_names=opts.metric_names) + load_failures
    model_summary = summarize(groups["model"], metric_names=opts.metric_names)
    ceiling_summary = summarize(groups["copy_synthesis"], metric_names=opts.metric_names)
    write_metrics_csv(out / "copy_synthesis" / "metrics.csv", groups["copy_synthesis"])
    write_summary_json(out / "copy_synthesis" / "summary.json", ceiling_summary)
    _write_report(out, groups["model"], {**model_summary, "models": opts.models, "copy_synthesis": ceiling_summary})
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
        plot_histograms(out / "plots", {"DCAE reconstruction": groups["model"],
                                        "BigVGAN copy-synthesis": groups["copy_synthesis"]})
        by_name = {job.name: job for job in jobs}
        _mel_figures(out, groups["model"], lambda name: [
            ("ground truth", by_name[name].source),
            ("BigVGAN copy-synthesis", audio_dir / COPY_SYNTHESIS / by_name[name].output_name),
            ("DCAE reconstruction", audio_dir / RECONSTRUCTED / by_name[name].output_name)], examples, opts.log)
    print_failures(groups["model"], opts.log)
    opts.log(format_table({"DCAE reconstruction": model_summary, "copy-synthesis (ceiling)": ceiling_summary}))
    opts.log(f"{len(groups['model'])} files scored, {model_summary['files_with_errors']} with errors -> {out}")
    return _failed(model_summary) or _failed(ceiling_summary)
