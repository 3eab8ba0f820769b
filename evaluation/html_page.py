"""The listening page as one HTML string: summary, histograms, the sortable per-file table, problems.

Everything the page needs is inline (CSS and script from ``evaluation/page_assets/``) or a file
in the report folder referenced by a relative URL, so it opens from disk, offline, wherever the
folder is copied. The table is plain HTML (readable without scripts); the script sorts it and
puts audio players on the first ``players`` files of the current order (the others on request).
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from importlib.resources import files
from urllib.parse import quote

from evaluation.report import HIGHER_IS_BETTER

NAMES = {"pesq_wb": "PESQ-WB", "pesq_nb": "PESQ-NB", "stoi": "STOI", "estoi": "ESTOI",
         "mel_distance": "mel L1", "si_sdr": "SI-SDR dB", "sim": "SIM",
         "mos": "MOS", "wer": "WER"}
DECIMALS = {"pesq_wb": 2, "pesq_nb": 2, "stoi": 3, "estoi": 3, "mel_distance": 3, "si_sdr": 1, "sim": 3, "mos": 2, "wer": 3}


@dataclass
class PageRow:
    """One file: the main group's scores, the ceiling's (model mode), and its media (URLs relative to the page)."""

    name: str
    values: dict[str, float | None]
    error: str = ""
    ceiling: dict[str, float | None] | None = None
    audio: dict[str, str] = field(default_factory=dict)     # label -> URL
    mel: dict[str, str] = field(default_factory=dict)       # label -> URL
    seconds: dict[str, float] = field(default_factory=dict)  # label -> duration
    texts: dict[str, str] = field(default_factory=dict)     # e.g. "target" / "heard (ASR)" -> text


@dataclass
class Page:
    title: str
    lead: str                              # one line under the title: what was compared
    metric_names: tuple[str, ...]
    summaries: dict[str, dict]             # group title -> summary (first: the main group)
    rows: list[PageRow]
    labels: list[str]                      # the renderings, in column order
    histograms: list[str] = field(default_factory=list)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (file, where, reason)
    notes: list[str] = field(default_factory=list)
    players: int = 20


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def url(path: str) -> str:
    """A relative POSIX path as a URL (``#``, ``?``, ``%``, spaces... escaped)."""
    return quote(path, safe="/")


def _fmt(metric: str, value: float | None) -> str:
    return "" if value is None else f"{value:.{DECIMALS[metric]}f}"


def _arrow(metric: str) -> str:
    return "↑" if HIGHER_IS_BETTER[metric] else "↓"


def default_sort_key(page: Page) -> str:
    """PESQ-WB when any file has it, else the first metric with a value, else the file name."""
    for metric in ("pesq_wb", *page.metric_names):
        if metric in page.metric_names and any(r.values.get(metric) is not None for r in page.rows):
            return metric
    return "file"


def worst_first(rows: list[PageRow], key: str) -> list[PageRow]:
    """Rows ordered worst first by ``key`` (unscored files last), as the page opens."""
    if key == "file":
        return sorted(rows, key=lambda r: r.name)
    sign = 1.0 if HIGHER_IS_BETTER[key] else -1.0
    return sorted(rows, key=lambda r: (r.values.get(key) is None, sign * (r.values.get(key) or 0.0), r.name))


def _summary_table(page: Page) -> str:
    titles = list(page.summaries)
    head = "".join(f'<th colspan="4">{_e(t)}</th>' for t in titles)
    sub = "".join('<th class="num">mean</th><th class="num">95% interval of the mean</th>'
                  '<th class="num">median</th><th class="num">scored / errors</th>' for _ in titles)
    body = []
    for metric in page.metric_names:
        cells = [f"<th>{_e(NAMES[metric])} {_arrow(metric)}</th>"]
        for title in titles:
            stats = page.summaries[title]["metrics"].get(metric) or {}
            ci = stats.get("ci95")
            interval = f"[{_fmt(metric, ci[0])}, {_fmt(metric, ci[1])}]" if ci else "–"
            cells.append(f'<td class="num">{_fmt(metric, stats.get("mean")) or "–"}</td>'
                         f'<td class="num ci">{interval}</td>'
                         f'<td class="num">{_fmt(metric, stats.get("median")) or "–"}</td>'
                         f'<td class="num">{stats.get("count", 0)} / {stats.get("errors", 0)}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table class="summary" id="summary"><thead><tr><th></th>{head}</tr><tr><th>metric</th>{sub}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _rendering(label: str, row: PageRow) -> str:
    seconds = row.seconds.get(label)
    caption = f"{_e(label)}" + (f' <span class="dur">{seconds:.1f} s</span>' if seconds is not None else "")
    if label not in row.audio:
        return f'<figure class="rendering"><figcaption>{caption}</figcaption><div class="missing">not available</div></figure>'
    src = url(row.audio[label])
    player = (f'<div class="player" data-src="{_e(src)}" data-label="{_e(label)}">'
              f'<span class="placeholder"><button type="button" class="load">▶ load player</button> '
              f'<a href="{_e(src)}">file</a></span></div>')
    mel = (f'<img class="mel" loading="lazy" src="{_e(url(row.mel[label]))}" alt="log-mel spectrogram of the {_e(label)}">'
           if label in row.mel else "")
    return f'<figure class="rendering"><figcaption>{caption}</figcaption>{player}{mel}</figure>'


def _file_row(page: Page, row: PageRow, rank: int) -> str:
    data = "".join(f' data-v-{m}="{"" if row.values.get(m) is None else repr(float(row.values[m]))}"'
                   for m in page.metric_names)
    cells = [f'<td class="rank">{rank}</td>',
             f'<td class="file">{_e(row.name)}' + "".join(f'<div class="text"><b>{_e(k)}:</b> {_e(v)}</div>'
                                                        for k, v in row.texts.items())
             + (f'<div class="err">{_e(row.error)}</div>' if row.error else "") + "</td>"]
    for metric in page.metric_names:
        ceiling = ""
        if row.ceiling is not None and row.ceiling.get(metric) is not None:
            ceiling = f'<div class="ceil" title="copy-synthesis (ceiling)">{_fmt(metric, row.ceiling[metric])}</div>'
        cells.append(f'<td class="num">{_fmt(metric, row.values.get(metric))}{ceiling}</td>')
    cells.append(f'<td class="listen"><div class="renderings">{"".join(_rendering(l, row) for l in page.labels)}</div></td>')
    return f'<tr data-file="{_e(row.name)}"{data}>{"".join(cells)}</tr>'


def _files_table(page: Page) -> str:
    key = default_sort_key(page)
    header = ['<th>#</th>', '<th data-key="file"><button type="button">file</button></th>']
    header += [f'<th class="num" data-key="{m}" title="{"higher" if HIGHER_IS_BETTER[m] else "lower"} is better; '
               f'first click: worst first"><button type="button">{_e(NAMES[m])} {_arrow(m)}</button></th>'
               for m in page.metric_names]
    header.append(f'<th>listen: {_e(" / ".join(page.labels))}</th>')
    rows = "".join(_file_row(page, row, i + 1) for i, row in enumerate(worst_first(page.rows, key)))
    higher = _e(json.dumps({m: HIGHER_IS_BETTER[m] for m in page.metric_names}))
    return (f'<div class="tablewrap"><table id="files" data-players="{int(page.players)}" data-sort-key="{key}" '
            f'data-higher="{higher}"><thead><tr>{"".join(header)}</tr></thead><tbody>{rows}</tbody></table></div>')


def _problems(page: Page) -> str:
    if not page.problems:
        return "<p class=\"note\">None: every file was read and scored.</p>"
    rows = "".join(f'<tr><td>{_e(name)}</td><td>{_e(where)}</td><td class="reason">{_e(reason)}</td></tr>'
                   for name, where, reason in page.problems)
    return f'<table class="problems" id="problems"><thead><tr><th>file</th><th>where</th><th>reason</th></tr></thead><tbody>{rows}</tbody></table>'


def render_page(page: Page) -> str:
    """The complete HTML document."""
    assets = files("evaluation") / "page_assets"
    histograms = "".join(f'<img src="{_e(url(p))}" alt="histogram">' for p in page.histograms)
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in page.notes)
    ceiling_note = (" Grey numbers under a score: the same file's copy-synthesis ceiling."
                    if any(r.ceiling is not None for r in page.rows) else "")
    body = f"""<header>
<h1>{_e(page.title)}</h1>
<p class="lead">{_e(page.lead)}</p>
{notes}
<nav><a href="#summary-section">Summary</a><a href="#histograms">Histograms</a><a href="#files-section">Files ({len(page.rows)})</a><a href="#problems-section">Problems ({len(page.problems)})</a></nav>
</header>
<section id="summary-section"><h2>Summary</h2>{_summary_table(page)}</section>
<section id="histograms"><h2>Histograms</h2><div class="hists">{histograms or '<p class="note">No scores to plot.</p>'}</div></section>
<section id="files-section"><h2 id="sort-status">Files, worst first</h2>
<p class="note">Click a column to sort (first click: worst first; again: best first).{ceiling_note} Players are on the first {int(page.players)} files of the order shown; "load player" fetches the others. Mel images: BigVGAN log-mel, low frequencies at the bottom, one colour scale per file.</p>
{_files_table(page)}</section>
<section id="problems-section"><h2>Problems</h2>{_problems(page)}</section>"""
    template = (assets / "page.html").read_text(encoding="utf-8")
    return (template.replace("{{TITLE}}", _e(page.title))
            .replace("{{STYLE}}", (assets / "page.css").read_text(encoding="utf-8"))
            .replace("{{SCRIPT}}", (assets / "page.js").read_text(encoding="utf-8"))
            .replace("{{BODY}}", body))
