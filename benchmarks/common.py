"""Helpers shared by the benchmark scripts: timing, machine description, speech loading."""
from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch


def machine() -> str:
    """One line naming the CPU, torch's CPU capability (AVX2 / AVX512 / AMX...), threads, load and GPU."""
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    capability = torch.backends.cpu.get_cpu_capability()  # follows ATEN_CPU_CAPABILITY
    return (f"{cpu}, {os.cpu_count()} cores, torch CPU capability {capability}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}{gpu}")


def timeit(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in seconds (CUDA synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speech_seconds(seconds: float, sample_rate: int = 22050) -> np.ndarray:
    """``seconds`` of real speech from get_speech.sh's folder (concatenated), else a synthetic voice-like signal."""
    import soundfile as sf
    from scipy.signal import resample_poly

    folder = Path(os.environ.get("DCAE_SPEECH_DIR", Path.home() / ".cache" / "dcae-speech"))
    need = int(seconds * sample_rate)
    pieces, have = [], 0
    for path in sorted((folder / "en").glob("*.wav")) if folder.is_dir() else []:
        audio, sr = sf.read(path, dtype="float32")
        audio = resample_poly(audio, sample_rate, sr).astype(np.float32) if sr != sample_rate else audio
        pieces.append(audio)
        have += len(audio)
        if have >= need:
            return np.concatenate(pieces)[:need]
    t = np.arange(need) / sample_rate  # fallback: harmonic tone with vibrato + noise
    f0 = 140 + 20 * np.sin(2 * np.pi * 3 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    sig = sum(np.sin(k * phase) / k for k in range(1, 12)) * 0.1 + 0.01 * np.random.randn(need)
    return sig.astype(np.float32)
