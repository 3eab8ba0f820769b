"""TTS sampling speed: AR frames/s with and without the KV cache, flow sampling time vs steps.

    python benchmarks/tts_speed.py [--preset tiny base] [--device cpu|cuda] [--frames 60] [--threads N]

Models are randomly initialised at the preset's size (speed does not depend on the weights); the AR
model is forced to make exactly ``--frames`` frames. 80-d latents, a 40-character text.
Printed: frames per second and real-time factor (seconds of speech per second of compute at
22050 / 4096 = 5.38 frames/s), and the cache speed-up.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine  # noqa: E402
from dcae.corpus import DEFAULT_FRAME_RATE  # noqa: E402
from tts.one_stage.ar import ARTTS, ARConfig  # noqa: E402
from tts.one_stage.flow import FlowConfig, FlowTTS  # noqa: E402
from tts.presets import load_presets  # noqa: E402
from tts.trainers.text_latent import TTSTrainConfig  # noqa: E402

FRAME_RATE = DEFAULT_FRAME_RATE
LATENT_DIM = 80
VOCAB = 64
TEXT = list(range(2, 42))


def preset_config(name: str) -> TTSTrainConfig:
    return TTSTrainConfig(**load_presets("ar")[name])  # the ar presets hold the flow fields too


def build(kind: str, cfg: TTSTrainConfig, device: torch.device) -> torch.nn.Module:
    common = dict(vocab_size=VOCAB, latent_dim=LATENT_DIM, width=cfg.width, layers=cfg.layers, heads=cfg.heads,
                  ff_mult=cfg.ff_mult)
    if kind == "ar":
        model = ARTTS(ARConfig(**common, head_width=cfg.head_width, head_layers=cfg.head_layers, frames_per_token=2.0))
    else:
        model = FlowTTS(FlowConfig(**common))
    return model.to(device).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` runs after one warm-up."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def bench_ar(cfg: TTSTrainConfig, device: torch.device, frames: int, steps: int, repeats: int) -> None:
    model = build("ar", cfg, device)
    results = {}
    for use_cache in (True, False):
        def run() -> None:
            model.generate(TEXT, max_frames=frames, min_frames=frames, steps=steps, cfg_scale=1.5,
                           generator=torch.Generator(device=device).manual_seed(0), use_cache=use_cache)
        seconds = timed(run, device, repeats)
        results[use_cache] = frames / seconds
        print(f"  AR  {'KV cache' if use_cache else 'no cache':9s} {frames} frames, {steps} head steps, CFG: "
              f"{frames / seconds:8.1f} frames/s  (x{frames / seconds / FRAME_RATE:6.1f} real time)")
    print(f"  AR  cache speed-up: x{results[True] / results[False]:.2f}")


def bench_flow(cfg: TTSTrainConfig, device: torch.device, frames: int, step_counts: list[int], repeats: int) -> None:
    model = build("flow", cfg, device)
    for steps in step_counts:
        def run() -> None:
            model.sample(TEXT, frames, steps=steps, cfg_scale=2.0, generator=torch.Generator(device=device).manual_seed(0))
        seconds = timed(run, device, repeats)
        print(f"  flow {frames} frames, {steps:3d} steps, CFG: {seconds * 1000:9.1f} ms  "
              f"(x{frames / FRAME_RATE / seconds:7.1f} real time)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", nargs="+", default=["tiny", "base"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--frames", type=int, default=60, help="latent frames per utterance (60 = 11 s)")
    parser.add_argument("--head-steps", type=int, default=10, help="flow-head steps per AR frame")
    parser.add_argument("--flow-steps", type=int, nargs="+", default=[1, 4, 8, 16, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"machine: {machine()}; device {device}")
    for preset in args.preset:
        cfg = preset_config(preset)
        n_ar = sum(p.numel() for p in build("ar", cfg, device).parameters()) / 1e6
        n_flow = sum(p.numel() for p in build("flow", cfg, device).parameters()) / 1e6
        print(f"preset {preset}: AR {n_ar:.2f} M, flow {n_flow:.2f} M parameters")
        with torch.inference_mode():
            bench_ar(cfg, device, args.frames, args.head_steps, args.repeats)
            bench_flow(cfg, device, args.frames, args.flow_steps, args.repeats)


if __name__ == "__main__":
    main()
