"""Audio -> latent -> audio on 10 s of speech: the reference pipeline vs ours (fp32, bf16), one run, CPU.

Reference: diffusers AutoencoderDC + weight norm removed + LayerNorm, the bigvgan wheel's BigVGAN,
as the reference inference.py runs them. Default DCAE config and the real BigVGAN-v2 22 kHz config,
random weights saved in the official layouts. Prints seconds, real-time factors and ratios, and the
bf16 error against our fp32.  Usage: python benchmarks/pipeline_speed.py [--seconds 10] [--repeats 2]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.test_inference_pipeline import reference_models, reference_pipeline  # noqa: E402  (the reference, written out)

from dcae import DCAEWrapper, save_generator  # noqa: E402
from inference import DCAEInferenceWrapper  # noqa: E402
from vocoder.audio import load_audio  # noqa: E402
from vocoder.bigvgan_loader import build_generator, save_vocoder_folder  # noqa: E402
from vocoder.mel import load_bigvgan_config  # noqa: E402

CONFIG = str(REPO / "dcae" / "configs" / "default.json")


def speech(seconds: float) -> torch.Tensor:
    folder = Path.home() / ".cache" / "dcae-speech"
    clips, total = [], 0
    for line in (folder / "filelist.txt").read_text().split():
        clips.append(load_audio(line, 22050))
        total += clips[-1].shape[0]
        if total >= seconds * 22050:
            break
    return torch.cat(clips)[: int(seconds * 22050)]


def timed(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    audio = speech(args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        save_generator(DCAEWrapper(CONFIG), root / "generator.pt")
        h = load_bigvgan_config()
        save_vocoder_folder(root / "vocoder", build_generator(h), h)
        models = reference_models(root, CONFIG)  # loading is not timed, for any pipeline
        ref_s, (ref, _) = timed(lambda: reference_pipeline(root, CONFIG, audio, models), args.repeats)
        ref = ref[..., : audio.shape[0]]
        rows = [("reference fp32", ref_s, None)]
        outputs = {}
        for precision in ("fp32", "bf16"):
            w = DCAEInferenceWrapper(root / "generator.pt", CONFIG, root / "vocoder", precision=precision, device="cpu")
            seconds, outputs[precision] = timed(lambda: w(audio, 22050), args.repeats)
            rows.append((f"ours {precision}", seconds, outputs[precision]))
    print(f"{audio.shape[0] / 22050:.1f} s of speech, {torch.get_num_threads()} threads, best of {args.repeats}")
    for name, seconds, out in rows:
        line = f"{name:15s} {seconds:7.2f} s  RTF {seconds / (audio.shape[0] / 22050):.3f}  speed-up x{ref_s / seconds:.2f}"
        if out is not None:
            line += f"  max rel err vs reference {((out - ref).abs().max() / ref.abs().max()).item():.2e}"
        print(line)
    err = ((outputs["bf16"] - outputs["fp32"]).norm() / outputs["fp32"].norm()).item()
    print(f"bf16 vs our fp32: relative L2 error {err:.2e}")


if __name__ == "__main__":
    main()
