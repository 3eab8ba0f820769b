"""``dcae evaluate --tts-list LIST --generated DIR``: generated speech judged as the field judges it, on a
test list in Seed-TTS-eval's format (:mod:`dcae.corpus.test_list`).

For each line, the generated file ``DIR/<id>.wav`` gets:

- ``mos``: its predicted MOS (:mod:`evaluation.mos`, no reference needed);
- ``sim``: the cosine of its speaker embedding and the prompt's (:mod:`evaluation.speaker`: Resemblyzer
  by default, ``--sim-model`` for another);
- ``wer`` (with ``--asr``): what the ASR model hears (:mod:`evaluation.asr`) against the target text,
  both normalised (:mod:`evaluation.wer`); ``word_errors`` / ``reference_words`` (characters for zh/ja).

``summary.json`` holds every metric's statistics over the files, and under ``"wer"`` the corpus rate
(total errors / total reference words) beside the mean of the per-utterance rates (Seed-TTS-eval's
figure), the ASR model, language and normalisation. MOS and SIM run in worker processes; the ASR model
runs in this process, in batches, on ``device``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from dcae.audio import AudioError
from dcae.corpus.test_list import BadLine, TestLine, TestListError, read_test_list
from dcae.progress import progress_bar
from evaluation import mos, speaker
from evaluation import wer as wer_module
from evaluation.asr import ASRUnavailable, load_asr
from evaluation.html_report import write_html_report
from evaluation.metrics import MetricError, resample_to
from evaluation.modes import EvaluationError, Options, html_notes, print_failures
from evaluation.plots import plot_histograms
from evaluation.report import format_table, metric_stats, write_metrics_csv, write_summary_json
from evaluation.report_media import ReportFile
from evaluation.runner import load_models, map_in_workers
from evaluation.scoring import Row, read_native
from evaluation.scoring import _unusable as unusable

TTS_METRICS = ("wer", "sim", "mos")
TTS_COLUMNS = ("file", "wer", "sim", "mos", "word_errors", "reference_words", "target_text", "transcript", "error")
SIM_RATE = 16000


@dataclass(frozen=True)
class ASROptions:
    """``--asr`` and what goes with it (None: no WER)."""

    spec: str | None = None
    language: str = "en"
    normalizer: str = "whisper"
    device: str = "cpu"
    batch_size: int = 8


def _row(line: TestLine, error: str = "", readable: bool = False) -> Row:
    """A line's row; ``readable``: its generated audio could be read (the ASR may transcribe it)."""
    return {"file": line.id, **{m: None for m in TTS_METRICS}, "word_errors": None, "reference_words": None,
            "target_text": line.target_text, "transcript": None, "error": error, "readable": readable}


def score_line(job: tuple[TestLine, Path], metric_names: tuple[str, ...]) -> Row:
    """MOS of the generated file and its SIM against the prompt; never raises for bad audio."""
    line, generated = job
    row = _row(line, readable=True)
    try:
        audio, rate = read_native(generated)
    except AudioError as e:
        return _row(line, str(e))
    reason = unusable(audio, "generated audio")
    if reason:
        return _row(line, reason)
    errors = []
    if "mos" in metric_names:
        try:
            row["mos"] = mos.predict_mos(audio, rate)
        except MetricError as e:
            errors.append(f"mos: {e}")
    if "sim" in metric_names:
        try:
            prompt, prompt_rate = read_native(line.prompt_wav)
            bad_prompt = unusable(prompt, "prompt audio")
            if bad_prompt:
                raise MetricError(bad_prompt)
            row["sim"] = speaker.speaker_similarity(resample_to(prompt, prompt_rate, SIM_RATE),
                                                    resample_to(audio, rate, SIM_RATE), SIM_RATE)
        except (AudioError, MetricError) as e:
            errors.append(f"sim: {e}")
    row["error"] = "; ".join(errors)
    return row


def _crashed(job: tuple[TestLine, Path], error: Exception) -> Row:
    return _row(job[0], f"scoring failed: {type(error).__name__}: {error}".splitlines()[0])


def _transcribe(rows: list[Row], jobs: list[tuple[TestLine, Path]], asr_options: ASROptions, progress: bool,
                asr) -> dict:
    """Fill ``wer``, ``word_errors``, ``reference_words``, ``transcript`` of the readable files; returns the
    corpus figures for ``summary.json``."""
    normalize = wer_module.normalizer(asr_options.normalizer, asr_options.language, asr.spelling)
    readable = [(row, line, path) for row, (line, path) in zip(rows, jobs) if row["readable"]]
    bar = progress_bar(total=len(readable), desc="ASR", unit="file", disable=not progress)
    counted = []
    for start in range(0, len(readable), asr.batch_size):
        batch = readable[start:start + asr.batch_size]
        audios = []
        for _, _, path in batch:
            audio, rate = read_native(path)
            audios.append(resample_to(audio, rate, asr.sample_rate))
        for (row, line, _), text in zip(batch, asr.transcribe(audios)):
            errors = wer_module.count_errors(line.target_text, text, asr_options.language, normalize)
            row.update(transcript=text, word_errors=errors.errors, reference_words=errors.reference_units,
                       wer=errors.rate)
            counted.append(errors)
        bar.update(len(batch))
    bar.close()
    unit = "character" if wer_module.uses_characters(asr_options.language) else "word"
    return {"corpus": wer_module.corpus_rate(counted), "utterance_mean": wer_module.utterance_mean(counted),
            "errors": sum(e.errors for e in counted), "reference_units": sum(e.reference_units for e in counted),
            "substitutions": sum(e.substitutions for e in counted), "deletions": sum(e.deletions for e in counted),
            "insertions": sum(e.insertions for e in counted), "files": len(counted), "unit": unit,
            "language": asr_options.language, "normalizer": asr_options.normalizer, "asr": asr.name}


def wer_line(figures: dict) -> str:
    """``WER 4.21 % (corpus: 84 errors / 1995 words); mean of per-utterance rates 4.60 %``."""
    name = "CER" if figures["unit"] == "character" else "WER"
    if figures["corpus"] is None:
        return f"{name}: no file transcribed"
    return (f"{name} {100 * figures['corpus']:.2f} % (corpus: {figures['errors']} errors / "
            f"{figures['reference_units']} reference {figures['unit']}s, {figures['files']} files); mean of "
            f"per-utterance rates {100 * figures['utterance_mean']:.2f} % (Seed-TTS-eval's figure); "
            f"{figures['normalizer']} normalisation, ASR {figures['asr']}")


def evaluate_test_list(test_list: Path, generated: Path, opts: Options, asr_options: ASROptions) -> bool:
    """Score the generated file of every line of ``test_list`` (``generated/<id>.wav``); returns True when a
    line was bad, a generated file was missing or a file failed. Raises :class:`EvaluationError` when the
    list cannot be read or the ASR model cannot be loaded (before anything is scored)."""
    try:
        lines, bad = read_test_list(test_list)
    except TestListError as e:
        raise EvaluationError(str(e)) from None
    asr = None
    if asr_options.spec is not None:
        try:
            asr = load_asr(asr_options.spec, asr_options.language, asr_options.device, asr_options.batch_size)
        except ASRUnavailable as e:
            raise EvaluationError(str(e)) from None
    missing = [line for line in lines if not (generated / line.output_name).is_file()]
    jobs = [(line, generated / line.output_name) for line in lines if (generated / line.output_name).is_file()]
    names = tuple(m for m in ("sim", "mos") if m in opts.metric_names)
    rows = map_in_workers(functools.partial(score_line, metric_names=names), jobs, opts.workers, opts.progress,
                          "Scoring", on_crash=_crashed, preload=functools.partial(load_models, names)) if jobs else []
    metric_names = (("wer",) if asr is not None else ()) + names
    figures = _transcribe(rows, jobs, asr_options, opts.progress, asr) if asr is not None else None
    rows += [_row(line, f"no generated file {generated / line.output_name}") for line in missing]
    summary = {"files": len(rows), "files_with_errors": sum(1 for r in rows if r.get("error")),
               "metrics": {m: metric_stats(r.get(m) for r in rows) for m in metric_names},
               "wer": figures, "models": {**{k: v for k, v in opts.models.items() if k in names},
                                          **({"asr": asr.name} if asr else {})},
               "missing_generated": [line.id for line in missing],
               "bad_lines": [b.describe(test_list) for b in bad]}
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    write_metrics_csv(out / "metrics.csv", rows, TTS_COLUMNS)
    write_summary_json(out / "summary.json", summary)
    if opts.html:
        _html(opts, test_list, generated, jobs, rows, summary, metric_names, bad)
    if opts.plots:
        plot_histograms(out / "plots", {"generated": rows})
    for item in bad:
        opts.log(f"error: {item.describe(test_list)}")
    print_failures(rows, opts.log)
    opts.log(format_table({"generated": summary}))
    if figures is not None:
        opts.log(wer_line(figures))
    opts.log(f"{len(rows)} lines scored, {summary['files_with_errors']} with errors, {len(bad)} bad lines -> {out}")
    return bool(bad or summary["files_with_errors"])


def _html(opts: Options, test_list: Path, generated: Path, jobs: list[tuple[TestLine, Path]], rows: list[Row],
          summary: dict, metric_names: tuple[str, ...], bad: list[BadLine]) -> None:
    files = [ReportFile(line.id, {"prompt": line.prompt_wav, "generated": path}) for line, path in jobs]
    texts = {str(r["file"]): {k: v for k, v in (("target", r["target_text"]), ("heard", r["transcript"])) if v}
             for r in rows}
    notes = list(html_notes(opts))
    if summary["wer"] is not None:
        notes.insert(0, wer_line(summary["wer"]))
    problems = {"bad line of the test list": [b.describe(test_list) for b in bad]}
    path = write_html_report(opts.out, title=f"Listening report: {opts.out.resolve().name}",
                             lead=f"{len(rows)} lines of {test_list}: the generated speech in {generated} next to "
                                  "its prompt.", files=files, groups={"generated": rows},
                             summaries={"generated": summary}, metric_names=metric_names, unpaired=problems,
                             notes=notes, audio_format=opts.report_audio, players=opts.players, workers=opts.workers,
                             progress=opts.progress, texts=texts)
    opts.log(f"listening page: {path}")

