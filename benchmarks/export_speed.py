"""Export throughput: audio-seconds encoded per wall-second, ours (`dcae export`: background decoding,
length-bucketed batches) vs a loop over the reference wrapper's encode (diffusers AutoencoderDC +
weight norm removed + LayerNorm, BigVGAN's mel, one file at a time), same files, same weights.

    python benchmarks/export_speed.py [--files 40] [--config dcae/configs/default.json] [--precision fp32 bf16]

Files are real speech from get_speech.sh, written at 22050 Hz first so that resampling is not timed.
Both sides are timed as whole jobs: model loading included.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import machine, speech_seconds  # noqa: E402
from dcae.precision import native_bf16  # noqa: E402
from tests.reference_dcae import ReferenceDCAE  # noqa: E402


def reference_loop(config: dict, ckpt: Path, files: list[Path], h, device: str | torch.device = "cpu") -> float:
    """The reference way on ``device``, timed like our command (model loading included): load the
    generator, remove weight norm, then for each file load, pad to 4096 samples, mel, encode (batch of one)."""
    from bigvgan.meldataset import mel_spectrogram

    device = torch.device(device)
    start = time.perf_counter()
    ref = ReferenceDCAE(config).eval()
    ref.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    for m in ref.model.modules():
        if torch.nn.utils.parametrize.is_parametrized(m, "weight"):
            torch.nn.utils.parametrize.remove_parametrizations(m, "weight")
    ref.to(device)
    with torch.inference_mode():
        for path in files:
            audio, _ = sf.read(path, dtype="float32")
            audio = torch.from_numpy(audio)[None].to(device)
            audio = torch.nn.functional.pad(audio, (0, -audio.shape[-1] % 4096))
            mel = mel_spectrogram(audio, h.n_fft, h.num_mels, h.sampling_rate, h.hop_size, h.win_size, h.fmin, h.fmax)
            ref.encode(mel)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--config", default=str(REPO / "dcae/configs/default.json"))
    parser.add_argument("--precision", nargs="+", default=None,
                        help="export precisions (default: fp32, plus bf16 where the CPU/GPU computes it natively)")
    parser.add_argument("--num-workers", type=int, default=None, help="decoding workers (default: export's own)")
    args = parser.parse_args()
    from bigvgan.env import AttrDict

    from dcae.latent_export import run_export

    h = AttrDict(json.loads((REPO / "vocoder/configs/bigvgan_v2_22khz_80band_256x.json").read_text()))
    tmp = Path(tempfile.mkdtemp())
    try:
        rng = np.random.default_rng(0)
        speech = speech_seconds(args.files * 4.0)
        files, offset = [], 0
        for i in range(args.files):  # 1.5 .. 6.5 s utterances cut from real speech
            n = int(rng.uniform(1.5, 6.5) * 22050)
            chunk = speech[offset % (len(speech) - n): offset % (len(speech) - n) + n]
            offset += n
            files.append(tmp / f"u{i:04d}.wav")
            sf.write(files[-1], chunk, 22050)
        filelist = tmp / "filelist.txt"
        filelist.write_text("".join(f"{f}\n" for f in files))
        total_seconds = sum(sf.info(f).duration for f in files)

        config = json.loads(Path(args.config).read_text())
        torch.manual_seed(0)
        ckpt = tmp / "generator_0.pt"
        torch.save(ReferenceDCAE(config).state_dict(), ckpt)

        print(f"machine: {machine()}")
        print(f"corpus: {len(files)} files, {total_seconds:.1f} s of speech at 22050 Hz; config {Path(args.config).name}")
        t_ref = reference_loop(config, ckpt, files, h)
        print(f"{'reference loop fp32':24s} {t_ref:7.2f} s  {total_seconds / t_ref:8.1f}x real time  1.00x")
        for precision in args.precision or (["fp32"] + (["bf16"] if native_bf16("cpu") else [])):
            out = tmp / f"out_{precision}"
            start = time.perf_counter()
            run_export(filelist, out, ckpt, Path(args.config), None, None, precision, "float32",
                       batch_size=16, max_batch_seconds=320, num_workers=args.num_workers, poll_seconds=0.1)
            t = time.perf_counter() - start
            print(f"{'dcae export ' + precision:24s} {t:7.2f} s  {total_seconds / t:8.1f}x real time  {t_ref / t:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
