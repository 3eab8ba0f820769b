"""Streaming decode (``DCAEInferenceWrapper.stream_decode``) per lookahead: error against exact decoding,
frames waited before the first audio, first-audio compute latency and real-time factor.

Latents come from real speech (the test speech, ``~/.cache/dcae-speech``) encoded by the same model;
weights are random (no pretrained weights are used anywhere in the tests and benchmarks), saved in
the official layouts, so the error figures show the mechanism, not a trained model's numbers.
Frames are sent one at a time and are available at once: "first audio" is the compute time until
the first audio chunk, "waited" the latent frames that had to arrive before it (x 186 ms each in
a real stream).

    python benchmarks/decode_stream_latency.py --config default --vocoder-channels 64      # error table, all lookaheads
    python benchmarks/decode_stream_latency.py --config tiny --vocoder-channels 64
    python benchmarks/decode_stream_latency.py --config default --lookaheads 0,7,14        # timings, real BigVGAN (1536)
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
from benchmarks.pipeline_speed import speech  # noqa: E402
from dcae import DCAEWrapper, save_generator  # noqa: E402
from dcae.pipeline import DCAEInferenceWrapper  # noqa: E402
from vocoder.bigvgan_loader import build_generator, save_vocoder_folder  # noqa: E402
from vocoder.mel import load_bigvgan_config  # noqa: E402


def stream(w: DCAEInferenceWrapper, latent: torch.Tensor, **kwargs) -> dict:
    """Send ``latent`` one frame at a time; time the first audio and the whole stream."""
    sent = []

    def frames():
        for t in range(latent.shape[-1]):
            sent.append(time.perf_counter())
            yield latent[..., t: t + 1]

    chunks, first = [], None
    for audio in w.stream_decode(frames(), **kwargs):
        if first is None:
            first = (len(sent), time.perf_counter() - sent[0])
        chunks.append(audio)
    return {"audio": torch.cat(chunks, dim=-1), "waited": first[0], "first_s": first[1],
            "total_s": time.perf_counter() - sent[0], "chunks": len(chunks)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="default", help="default | tiny | path to a DC-AE JSON")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--chunk-frames", type=int, default=None, help="emission chunk (default: the wrapper's)")
    parser.add_argument("--lookaheads", default="", help="comma-separated (default: 0 .. the receptive field)")
    parser.add_argument("--vocoder-channels", type=int, default=1536,
                        help="BigVGAN-v2 22 kHz structure with this upsample_initial_channel (1536 = the real size)")
    parser.add_argument("--precision", default="fp32")
    args = parser.parse_args()
    config = {"default": REPO / "dcae/configs/default.json", "tiny": REPO / "dcae/configs/tiny.json"}.get(
        args.config, Path(args.config))
    torch.manual_seed(0)
    audio = speech(args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        save_generator(DCAEWrapper(config), root / "generator.pt")
        h = dict(load_bigvgan_config(), upsample_initial_channel=args.vocoder_channels)
        save_vocoder_folder(root / "vocoder", build_generator(h), h)
        w = DCAEInferenceWrapper(root / "generator.pt", config, root / "vocoder", precision=args.precision, device="cpu")
    latent = w.encode(audio, 22050)
    start = time.perf_counter()
    exact = w.decode(latent)
    offline_s = time.perf_counter() - start
    duration = exact.shape[-1] / w.sample_rate
    kwargs = {} if args.chunk_frames is None else {"chunk_frames": args.chunk_frames}
    lookaheads = ([int(x) for x in args.lookaheads.split(",")] if args.lookaheads
                  else list(range(w.max_lookahead + 1)))
    print(f"{machine()}; precision {args.precision}")
    print(f"DC-AE {Path(config).name} (decoder field {w.decoder_field} latent frames), BigVGAN-v2 22 kHz structure "
          f"with {args.vocoder_channels} channels (field {w.vocoder_field} mel frames), random weights; "
          f"{duration:.1f} s of real speech = {latent.shape[-1]} latent frames; emission chunk "
          f"{kwargs.get('chunk_frames', 'default')}; offline decode {offline_s:.2f} s (RTF {offline_s / duration:.2f})")
    print("| lookahead (frames) | lookahead (s) | rel. L2 error | max abs error / max abs | frames waited "
          "| first audio (s compute) | stream RTF |\n| --- | --- | --- | --- | --- | --- | --- |")
    for lookahead in lookaheads:
        r = stream(w, latent, lookahead=lookahead, **kwargs)
        assert r["audio"].shape == exact.shape
        l2 = ((r["audio"] - exact).norm() / exact.norm()).item()
        peak = ((r["audio"] - exact).abs().max() / exact.abs().max()).item()
        print(f"| {lookahead} | {lookahead / w.frame_rate:.2f} | {l2:.1e} | {peak:.1e} | {r['waited']} "
              f"| {r['first_s']:.2f} | {r['total_s'] / duration:.2f} |", flush=True)


if __name__ == "__main__":
    main()
