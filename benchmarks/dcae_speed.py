"""Encode/decode time of 10 s of speech: the reference (diffusers AutoencoderDC, weight norm removed,
as the reference inference does) vs ours in fp32 and (where the CPU computes it natively) bf16, same
random weights, in one run.

    python benchmarks/dcae_speed.py [--seconds 10] [--device cpu] [--repeats 3] [--precisions fp32 bf16]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import machine, speech_seconds, timeit  # noqa: E402
from dcae import load_dcae  # noqa: E402
from dcae.precision import native_bf16  # noqa: E402
from tests.reference_dcae import ReferenceDCAE, relative_error  # noqa: E402


def default_precisions(device: torch.device) -> list[str]:
    """fp32, bf16 where the device computes it natively (emulated bf16 is ~30x slower: not worth timing),
    fp16 on CUDA."""
    return (["fp32"] + (["bf16"] if native_bf16(device) else [])
            + (["fp16"] if device.type == "cuda" else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--config", default=str(REPO / "dcae/configs/default.json"))
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "bf16", "fp16"],
                        help="ours in these precisions (default: fp32, plus bf16 where native, plus fp16 on CUDA)")
    args = parser.parse_args()
    device = torch.device(args.device)
    from bigvgan.env import AttrDict
    from bigvgan.meldataset import mel_spectrogram

    h = AttrDict(json.loads((REPO / "vocoder/configs/bigvgan_v2_22khz_80band_256x.json").read_text()))
    audio = torch.from_numpy(speech_seconds(args.seconds, h.sampling_rate))[None]
    audio = torch.nn.functional.pad(audio, (0, -audio.shape[-1] % (h.hop_size * 16)))
    mel = mel_spectrogram(audio, h.n_fft, h.num_mels, h.sampling_rate, h.hop_size, h.win_size, h.fmin, h.fmax).to(device)

    config = json.loads(Path(args.config).read_text())
    torch.manual_seed(0)
    ref = ReferenceDCAE(config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "generator_0.pt"
        torch.save(ref.state_dict(), ckpt)
        for m in ref.model.modules():  # the reference inference removes weight norm
            if torch.nn.utils.parametrize.is_parametrized(m, "weight"):
                torch.nn.utils.parametrize.remove_parametrizations(m, "weight")
        ref.to(device)
        ours = {p: load_dcae(ckpt, config, device=device, precision=p) for p in
                (args.precisions or default_precisions(device))}

    print(f"machine: {machine()}")
    print(f"input: {args.seconds:.0f} s of speech, mel {tuple(mel.shape)}, config {Path(args.config).name}")
    with torch.inference_mode():
        z_ref = ref.encode(mel)
        y_ref = ref.decode(z_ref)
        t_ref = {"encode": timeit(lambda: ref.encode(mel), args.repeats), "decode": timeit(lambda: ref.decode(z_ref), args.repeats)}
        print(f"{'':18s}{'encode s':>10s}{'decode s':>10s}{'enc x':>8s}{'dec x':>8s}  rel.err enc / dec vs reference fp32")
        print(f"{'reference fp32':18s}{t_ref['encode']:10.3f}{t_ref['decode']:10.3f}{1:8.2f}{1:8.2f}")
        for precision, model in ours.items():
            z = model.encode(mel)
            y = model.decode(z_ref)
            te = timeit(lambda: model.encode(mel), args.repeats)
            td = timeit(lambda: model.decode(z_ref), args.repeats)
            print(f"{'ours ' + precision:18s}{te:10.3f}{td:10.3f}{t_ref['encode'] / te:8.2f}{t_ref['decode'] / td:8.2f}"
                  f"  {relative_error(z.float(), z_ref):.2e} / {relative_error(y.float(), y_ref):.2e}")


if __name__ == "__main__":
    main()
