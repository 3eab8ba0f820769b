"""``dcae evaluate --html``: write ``report.html`` and its ``report_files/`` folder.

``report_files/`` holds the histograms (``histograms/hist_<metric>.png``) and, per file,
``files/<n>/<rendering>.<mp3|opus|wav>`` and ``<rendering>_mel.png``; the page refers to them by
relative URLs, so the report folder can be opened offline and copied anywhere. Both are replaced
as a whole on every run (a file of an earlier run is never left behind).
"""
from __future__ import annotations

import functools
import shutil
from pathlib import Path
from typing import Sequence

from dcae.atomic import atomic_write_text
from evaluation.html_page import Page, PageRow, render_page
from evaluation.metrics import _mel_extractor
from evaluation.plots import plot_histograms
from evaluation.report_media import RenderedMedia, ReportFile, render_media
from evaluation.runner import map_in_workers
from evaluation.scoring import Row

PAGE_NAME = "report.html"
ASSETS = "report_files"


def _render(job: tuple[ReportFile, str], report_dir: Path, audio_format: str) -> RenderedMedia:
    item, folder = job
    return render_media(item, report_dir, folder, audio_format, reuse_wav=True)


def _render_crashed(job: tuple[ReportFile, str], error: Exception) -> RenderedMedia:
    return RenderedMedia(problems=[f"rendering failed: {type(error).__name__}: {error}".splitlines()[0]])


def _preload() -> None:
    """Imports the media workers inherit (torchcodec's FFmpeg, matplotlib, the mel filterbank)."""
    import matplotlib.image  # noqa: F401
    import torchcodec.encoders  # noqa: F401

    _mel_extractor()


def _histograms(assets: Path, out: Path, groups: dict[str, Sequence[Row]]) -> list[str]:
    return [p.relative_to(out).as_posix() for p in plot_histograms(assets / "histograms", groups)]


def write_html_report(out: Path, *, title: str, lead: str, files: Sequence[ReportFile],
                      groups: dict[str, Sequence[Row]], summaries: dict[str, dict], metric_names: Sequence[str],
                      unpaired: dict[str, Sequence[str]] | None = None, notes: Sequence[str] = (),
                      audio_format: str = "mp3", players: int = 20, workers: int | None = None,
                      progress: bool = True, texts: dict[str, dict[str, str]] | None = None) -> Path:
    """Write ``out/report.html`` (+ ``out/report_files/``) and return its path.

    ``files`` are the files with audio to play (labels in column order, e.g. reference /
    reconstruction / copy-synthesis); ``groups`` maps a title to its rows (the first is the main
    one, whose rows make the table; a second, in model mode, is the copy-synthesis ceiling);
    ``unpaired`` maps a reason to the names it applies to; ``texts`` a file name to the texts shown
    under it (TTS lists: the target text and what the ASR heard).
    """
    out = Path(out)
    assets = out / ASSETS
    (out / PAGE_NAME).unlink(missing_ok=True)
    shutil.rmtree(assets, ignore_errors=True)
    assets.mkdir(parents=True)

    ordered = sorted(files, key=lambda f: f.name)
    jobs = [(item, f"{ASSETS}/files/{index:05d}") for index, item in enumerate(ordered)]
    media = map_in_workers(functools.partial(_render, report_dir=out, audio_format=audio_format), jobs, workers,
                           progress, desc="Report audio", on_crash=_render_crashed, preload=_preload)
    media_by_name = {item.name: rendered for item, rendered in zip(ordered, media)}

    titles = list(groups)
    main_rows = groups[titles[0]]
    ceiling = {str(r["file"]): r for r in groups[titles[1]]} if len(titles) > 1 else None
    rows = []
    for row in main_rows:
        name = str(row["file"])
        rendered = media_by_name.get(name, RenderedMedia())
        rows.append(PageRow(name=name, values={m: row.get(m) for m in metric_names}, error=str(row.get("error") or ""),
                            ceiling=None if ceiling is None else {m: ceiling.get(name, {}).get(m) for m in metric_names},
                            audio=rendered.audio, mel=rendered.mel, seconds=rendered.seconds,
                            texts=(texts or {}).get(name, {})))

    where: dict[tuple[str, str], list[str]] = {}  # (file, reason) -> groups: a file unreadable in all is listed once
    for group, group_rows in groups.items():
        for r in group_rows:
            if r.get("error"):
                where.setdefault((str(r["file"]), str(r["error"])), []).append(group)
    problems = [(name, "; ".join(group_titles), reason) for (name, reason), group_titles in sorted(where.items())]
    problems += [(item.name, "report audio", reason) for item in ordered for reason in media_by_name[item.name].problems]
    for reason, names in (unpaired or {}).items():
        problems += [(name, "pairing", reason) for name in names]

    page = Page(title=title, lead=lead, metric_names=tuple(metric_names), summaries=summaries, rows=rows,
                labels=list(ordered[0].audio) if ordered else [], histograms=_histograms(assets, out, groups),
                problems=problems, notes=list(notes), players=players)
    path = out / PAGE_NAME
    atomic_write_text(path, render_page(page))
    return path
