"""Audio -> latent -> audio on 10 s of speech: the reference pipeline vs ours, one run, CPU.

Reference: diffusers AutoencoderDC + weight norm removed + LayerNorm, the bigvgan wheel's BigVGAN,
as the reference inference.py runs them. Default DCAE config and the real BigVGAN-v2 22 kHz config,
random weights saved in the official layouts. Runs are interleaved (reference, ours, reference, ...)
so that load from other processes hits both alike; the best of ``--repeats`` is kept. Prints
seconds, real-time factors and ratios, the CPU capability torch dispatches to, and the errors.

``--vocoder-schemes`` also times BigVGAN alone (fp32) three ways: the wheel's one pass, whole-network
windows of 432 mel frames with its 38-frame context (our previous scheme), and ours (stage by stage
in windows under the allocator's mmap threshold, vocoder/staged.py), to show what each gains here.

    python benchmarks/pipeline_speed.py [--seconds 10] [--repeats 2] [--vocoder-schemes]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/pipeline_speed.py   # a CPU without AVX512
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
from benchmarks.common import machine  # noqa: E402
from dcae import DCAEWrapper, save_generator  # noqa: E402
from dcae.audio import load_audio  # noqa: E402
from dcae.pipeline import DCAEInferenceWrapper  # noqa: E402
from dcae.precision import resolve_precision  # noqa: E402
from dcae.receptive_field import chunk_windows  # noqa: E402
from tests.dcae.test_pipeline import reference_models, reference_pipeline  # noqa: E402  (the reference, written out)
from vocoder.bigvgan_loader import build_generator, save_vocoder_folder  # noqa: E402
from vocoder.field import vocoder_receptive_field  # noqa: E402
from vocoder.mel import load_bigvgan_config  # noqa: E402
from vocoder.staged import generate  # noqa: E402

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


def interleaved(runs: dict, repeats: int) -> dict:
    """{name: (best seconds, output)} running every callable once per round, ``repeats`` rounds."""
    best = {name: (float("inf"), None) for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            out = fn()
            seconds = time.perf_counter() - start
            best[name] = (min(best[name][0], seconds), out)
    return best


def vocoder_schemes(generator, mel: torch.Tensor) -> dict:
    """BigVGAN (B, n_mels, T) -> audio, three ways that give the same samples."""
    field = vocoder_receptive_field(generator)

    def windows_432():
        parts = []
        for start, stop, w0, w1 in chunk_windows(mel.shape[-1], 432, field.left, field.right):
            parts.append(generator(mel[..., w0:w1])[..., (start - w0) * 256: (stop - w0) * 256])
        return torch.cat(parts, dim=-1)

    return {"one pass (wheel)": lambda: generator(mel), "432-frame windows, 38-frame context": windows_432,
            "stage by stage (ours)": lambda: generate(generator, mel)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--vocoder-schemes", action="store_true", help="also time BigVGAN alone, three ways")
    args = parser.parse_args()
    torch.manual_seed(0)
    audio = speech(args.seconds)
    duration = audio.shape[0] / 22050
    precisions = ["fp32"] + (["bf16"] if resolve_precision("auto", "cpu") == "bf16" else [])
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        save_generator(DCAEWrapper(CONFIG), root / "generator.pt")
        h = load_bigvgan_config()
        save_vocoder_folder(root / "vocoder", build_generator(h), h)
        models = reference_models(root, CONFIG)  # loading is not timed, for any pipeline
        wrappers = {p: DCAEInferenceWrapper(root / "generator.pt", CONFIG, root / "vocoder", precision=p, device="cpu")
                    for p in precisions}
        runs = {"reference fp32": lambda: reference_pipeline(root, CONFIG, audio, models)[0][..., : audio.shape[0]]}
        runs.update({f"ours {p}": (lambda w=w: w(audio, 22050)) for p, w in wrappers.items()})
        results = interleaved(runs, args.repeats)
        vocoder_times = {}
        if args.vocoder_schemes:
            w = wrappers["fp32"]
            mel = w.decode_mel(w.encode(audio, 22050))
            vocoder_times = {name: seconds for name, (seconds, _) in interleaved(
                vocoder_schemes(w.vocoder_model.generator, mel), args.repeats).items()}
    w = wrappers["fp32"]
    print(f"machine: {machine()}")
    print(f"{duration:.1f} s of speech, best of {args.repeats} interleaved; receptive fields: DC-AE encoder "
          f"{w.encoder_field}, decoder {w.decoder_field} latent frames, BigVGAN {w.vocoder_field} mel frames")
    ref_s, ref = results["reference fp32"]
    print("| pipeline | seconds | real-time factor | speed-up | error |\n| --- | --- | --- | --- | --- |")
    for name, (seconds, out) in results.items():
        error = ""
        if name != "reference fp32":
            error = f"max rel. error vs reference {((out - ref).abs().max() / ref.abs().max()).item():.1e}"
            if name != "ours fp32":
                fp32 = results["ours fp32"][1]
                error = f"relative L2 error vs our fp32 {((out - fp32).norm() / fp32.norm()).item():.1e}"
        print(f"| {name} | {seconds:.2f} | {seconds / duration:.2f} | {ref_s / seconds:.2f}x | {error} |")
    if vocoder_times:
        print(f"\nBigVGAN alone (fp32, {mel.shape[-1]} mel frames):")
        print("| scheme | seconds | speed-up |\n| --- | --- | --- |")
        for name, seconds in vocoder_times.items():
            print(f"| {name} | {seconds:.2f} | {vocoder_times['one pass (wheel)'] / seconds:.2f}x |")


if __name__ == "__main__":
    main()
