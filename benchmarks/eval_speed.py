"""Evaluation throughput: files per second of ``dcae evaluate`` scoring on this machine.

The reference repository ships no evaluation tool, so the baseline is the loop a researcher
would write by hand: for each pair, read both files with soundfile and call ``pesq`` (WB and
NB) and ``pystoi`` (STOI and ESTOI) one after the other in one process. Ours computes the same
four metrics plus log-mel distance and SI-SDR (and speaker similarity with ``--sim``, when the
[sim] extra is installed), in ``--workers`` processes.

    python benchmarks/eval_speed.py [--files 24] [--workers N] [--sim]

Needs the real test speech: ``python tests/data/get_speech.py`` (16 kHz prompts are used).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine  # noqa: E402
from evaluation.pairing import pair_folders  # noqa: E402
from evaluation.runner import score_pairs  # noqa: E402
from evaluation.scoring import METRIC_NAMES  # noqa: E402


def make_pairs(root: Path, count: int) -> float:
    """Write ``count`` clean/noisy (10 dB SNR) 16 kHz pairs; returns the total audio seconds."""
    speech = Path(os.environ.get("DCAE_SPEECH_DIR", Path.home() / ".cache" / "dcae-speech"))
    sources = sorted((speech / "en").glob("*.wav"))
    sources = [p for p in sources if 2.0 <= sf.info(str(p)).duration <= 6.0][:count]
    if len(sources) < count:
        sys.exit(f"need {count} 2-6 s utterances in {speech}/en (run python tests/data/get_speech.py)")
    rng = np.random.default_rng(0)
    seconds = 0.0
    for source in sources:
        clean, rate = sf.read(str(source))
        noise = rng.standard_normal(clean.size) * np.sqrt(np.mean(clean**2) / 10)
        for folder, audio in (("ref", clean), ("deg", clean + noise)):
            (root / folder).mkdir(exist_ok=True)
            sf.write(str(root / folder / source.name), audio, rate, subtype="FLOAT")
        seconds += clean.size / rate
    return seconds


def baseline(pairs) -> None:
    """Sequential direct pesq/pystoi calls (what one would write without this tool)."""
    import pesq
    from pystoi import stoi
    from scipy.signal import resample_poly

    for pair in pairs:
        ref, rate = sf.read(str(pair.ref))
        deg, _ = sf.read(str(pair.deg))
        pesq.pesq(16000, ref, deg, "wb")
        pesq.pesq(8000, resample_poly(ref, 1, 2), resample_poly(deg, 1, 2), "nb")
        stoi(ref, deg, rate)
        stoi(ref, deg, rate, extended=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=24)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--sim", action="store_true", help="also score speaker similarity (Resemblyzer)")
    parser.add_argument("--mos", action="store_true", help="also predict MOS (DistillMOS)")
    args = parser.parse_args()
    metrics = [m for m in METRIC_NAMES if (args.sim or m != "sim") and (args.mos or m != "mos")]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        seconds = make_pairs(root, args.files)
        pairs = pair_folders(root / "ref", root / "deg").pairs
        baseline(pairs[:1])  # warm imports for both
        start = time.perf_counter()
        baseline(pairs)
        base_time = time.perf_counter() - start
        timings = {}
        for workers in sorted({1, args.workers}):
            start = time.perf_counter()
            rows = score_pairs(pairs, workers=workers, progress=False, metric_names=metrics)
            timings[workers] = time.perf_counter() - start
            failed = [r for r in rows if r["error"]]
            if failed:
                sys.exit(f"scoring failed: {failed[0]['file']}: {failed[0]['error']}")
    print(f"machine: {machine()}; "
          f"{len(pairs)} files, {seconds:.1f} s of 16 kHz audio")
    print(f"baseline (sequential pesq wb+nb, stoi, estoi): {len(pairs) / base_time:6.2f} files/s "
          f"({seconds / base_time:6.1f} audio s/s)")
    for workers, elapsed in timings.items():
        print(f"ours ({workers} worker{'s' * (workers > 1)}, {len(metrics)} metrics, incl. start-up): "
              f"{len(pairs) / elapsed:6.2f} files/s ({seconds / elapsed:6.1f} audio s/s), "
              f"ratio to baseline {base_time / elapsed:.2f}x")


if __name__ == "__main__":
    main()
