"""PNG figures of an evaluation: per-metric histograms and side-by-side mel spectrograms."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from dcae.atomic import atomic_path
from evaluation.report import HIGHER_IS_BETTER
from evaluation.scoring import Row

LABELS = {"pesq_wb": "PESQ wide-band (MOS-LQO)", "pesq_nb": "PESQ narrow-band (MOS-LQO)",
          "stoi": "STOI", "estoi": "ESTOI", "mel_distance": "log-mel L1 distance", "si_sdr": "SI-SDR (dB)",
          "sim": "speaker similarity (SIM)", "mos": "predicted MOS (DistillMOS)", "wer": "word error rate (WER)"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_histograms(out_dir: Path, groups: dict[str, Sequence[Row]]) -> list[Path]:
    """One PNG per metric, ``hist_<metric>.png``; each group (e.g. model, copy-synthesis) overlaid."""
    plt = _pyplot()
    written = []
    for metric in LABELS:  # those the rows have
        series = {name: np.array([r[metric] for r in rows if r.get(metric) is not None], dtype=float)
                  for name, rows in groups.items()}
        series = {name: v[np.isfinite(v)] for name, v in series.items()}
        if not any(v.size for v in series.values()):
            continue
        everything = np.concatenate([v for v in series.values() if v.size])
        bins = np.histogram_bin_edges(everything, bins=min(30, max(5, everything.size // 3)))
        fig, ax = plt.subplots(figsize=(6, 3.6))
        for name, values in series.items():
            if values.size:
                ax.hist(values, bins=bins, alpha=0.6, label=f"{name}: mean {values.mean():.3f}, n={values.size}")
                ax.axvline(values.mean(), linestyle="--", linewidth=1, color=ax.patches[-1].get_facecolor()[:3])
        better = "higher is better" if HIGHER_IS_BETTER[metric] else "lower is better"
        ax.set(title=f"{LABELS[metric]} ({better})", xlabel=LABELS[metric], ylabel="files")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        path = out_dir / f"hist_{metric}.png"
        _save(fig, path)
        plt.close(fig)
        written.append(path)
    return written


def plot_mel_comparison(path: Path, title: str, panels: Sequence[tuple[str, np.ndarray]],
                        hop_seconds: float) -> None:
    """Mel spectrograms (80, frames) side by side on one colour scale, with a common time axis."""
    plt = _pyplot()
    low = min(float(np.percentile(m, 1)) for _, m in panels)
    high = max(float(m.max()) for _, m in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), sharey=True, squeeze=False)
    image = None
    for ax, (name, mel) in zip(axes[0], panels):
        extent = (0.0, mel.shape[1] * hop_seconds, 0, mel.shape[0])
        image = ax.imshow(mel, origin="lower", aspect="auto", cmap="magma", vmin=low, vmax=high,
                          extent=extent, interpolation="nearest")
        ax.set(title=name, xlabel="time (s)")
    axes[0][0].set_ylabel("mel bin")
    fig.colorbar(image, ax=axes[0].tolist(), label="log magnitude", pad=0.01)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)
    plt.close(fig)


def pick_examples(rows: Sequence[Row], count: int = 3) -> list[Row]:
    """Worst, median and best scored files by PESQ-WB (more spread evenly if ``count`` > 3)."""
    scored = sorted((r for r in rows if r.get("pesq_wb") is not None), key=lambda r: r["pesq_wb"])
    if len(scored) <= count:
        return scored
    positions = np.linspace(0, len(scored) - 1, count).round().astype(int)
    return [scored[i] for i in dict.fromkeys(positions.tolist())]


def describe(row: Row) -> str:
    """``name — PESQ-WB 3.21, STOI 0.95, mel 0.41``: the caption of a comparison figure."""
    def num(metric: str) -> str:
        value = row.get(metric)
        return "-" if value is None else f"{value:.2f}"

    return f"{row['file']} — PESQ-WB {num('pesq_wb')}, STOI {num('stoi')}, mel L1 {num('mel_distance')}"
