"""Two-stage streaming latency: speech tokens -> token-flow (chunk by chunk) -> DC-AE decoder (bounded
lookahead) -> BigVGAN -> audio chunks, on this machine.

For each token-flow preset (tiny, base) and each decoder lookahead (0 .. the decoder's receptive
field), ``--seconds`` of 25 Hz tokens (S3Tokenizer's rate: 4.64 tokens per latent frame) are handed
over one at a time, all available at once (a language model faster than real time), and timed:

- first audio: compute time from handing over the first token to the first audio chunk out;
- tokens read: how many tokens had been taken when the first audio came out, and that many tokens'
  duration (what a language model writing tokens in real time would add to the first-audio time);
- RTF: the whole stream's compute time / audio duration (< 1: faster than real time), for the
  smallest and the exact lookahead (``--rtf-lookaheads``; the first-audio columns stop the stream at
  its first audio chunk, so every lookahead is cheap to time);
- token-flow alone: time to its first latent chunk, and its RTF (latents only).

Weights are random (timing does not depend on them); the DC-AE is the default config and BigVGAN has
the real 22 kHz structure (``--vocoder-channels 1536``), both saved in the official layouts and loaded
as a user would. The torch CPU capability is printed with the table.

    python benchmarks/token_flow_latency.py                              # tiny + base, every lookahead
    python benchmarks/token_flow_latency.py --presets tiny --lookaheads 0,7,14 --seconds 6
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
from dcae.corpus import LatentStats  # noqa: E402
from dcae.pipeline import DCAEInferenceWrapper  # noqa: E402
from tts.presets import load_presets  # noqa: E402
from tts.run import TTSRun  # noqa: E402
from tts.token_flow.model import TokenFlowConfig, TokenFlowModel  # noqa: E402
from tts.token_flow.streaming import stream_audio, stream_latents  # noqa: E402
from vocoder.bigvgan_loader import build_generator, save_vocoder_folder  # noqa: E402
from vocoder.mel import load_bigvgan_config  # noqa: E402

TOKEN_RATE, VOCAB = 25.0, 6561  # S3Tokenizer v2


def token_flow_run(preset: str, frame_rate: float, latent_dim: int) -> TTSRun:
    """A random-weight token-flow model of ``preset``'s size, as a loaded run would hold it."""
    sizes = load_presets("token-flow")[preset]
    fields = {k: v for k, v in sizes.items() if k in TokenFlowConfig.__dataclass_fields__}
    model = TokenFlowModel(TokenFlowConfig(vocab_size=VOCAB, latent_dim=latent_dim,
                                           tokens_per_frame=TOKEN_RATE / frame_rate, **{**fields, "dropout": 0.0}))
    stats = LatentStats(torch.zeros(latent_dim), torch.ones(latent_dim), 1)
    info = {"sample_rate": 22050, "hop_length": 256, "frame_rate": frame_rate, "model": "", "token_rate": TOKEN_RATE}
    return TTSRun(Path(preset), "token-flow", model.eval(), None, stats, info, 0)


class Source:
    """Tokens one at a time; records when the first was taken and how many were taken."""

    def __init__(self, tokens: list[int]):
        self.tokens, self.taken, self.start = tokens, 0, None

    def __iter__(self):
        for token in self.tokens:
            if self.start is None:
                self.start = time.perf_counter()
            self.taken += 1
            yield token


def measure(iterator_of, tokens: list[int], whole: bool = True) -> dict:
    """Time ``iterator_of(token source)``: to its first piece, and (``whole``) to its end."""
    source = Source(tokens)
    first, count = None, 0
    pieces = iterator_of(source)
    for piece in pieces:
        if first is None:
            first = (time.perf_counter() - source.start, source.taken)
            if not whole:
                pieces.close()
                break
        count += piece.shape[-1]
    return {"first_s": first[0], "tokens_read": first[1], "total_s": time.perf_counter() - source.start,
            "length": count}


def random_wrapper(dcae_config: str, vocoder_channels: int) -> DCAEInferenceWrapper:
    """A CPU pipeline of random weights (seed 0) saved in the official layouts and loaded as a user would:
    the DC-AE of ``dcae_config`` and BigVGAN-v2 22 kHz with ``vocoder_channels`` initial channels."""
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        save_generator(DCAEWrapper(dcae_config), root / "generator.pt")
        h = dict(load_bigvgan_config(), upsample_initial_channel=vocoder_channels)
        save_vocoder_folder(root / "vocoder", build_generator(h), h)
        return DCAEInferenceWrapper(root / "generator.pt", dcae_config, root / "vocoder", device="cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny,base")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the token stream")
    parser.add_argument("--lookaheads", default="", help="comma-separated decoder lookaheads (default: 0 .. field)")
    parser.add_argument("--chunk-frames", type=int, default=2, help="latent frames per token-flow chunk")
    parser.add_argument("--steps", type=int, default=10, help="flow steps per chunk")
    parser.add_argument("--cfg-scale", type=float, default=1.5)
    parser.add_argument("--config", default=str(REPO / "dcae/configs/default.json"), help="DC-AE config")
    parser.add_argument("--vocoder-channels", type=int, default=1536, help="BigVGAN upsample_initial_channel")
    parser.add_argument("--rtf-lookaheads", default="", help="lookaheads whose whole stream is timed (default: 0 and max)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    wrapper = random_wrapper(args.config, args.vocoder_channels)
    n_tokens = round(args.seconds * TOKEN_RATE)
    tokens = torch.randint(0, VOCAB, (n_tokens,), generator=torch.Generator().manual_seed(0)).tolist()
    lookaheads = ([int(x) for x in args.lookaheads.split(",")] if args.lookaheads
                  else list(range(wrapper.max_lookahead + 1)))
    rtf_lookaheads = ([int(x) for x in args.rtf_lookaheads.split(",")] if args.rtf_lookaheads
                      else [0, wrapper.max_lookahead])
    options = dict(chunk_frames=args.chunk_frames, steps=args.steps, cfg_scale=args.cfg_scale, seed=0)
    print(f"{machine()}; fp32")
    print(f"{n_tokens} tokens at {TOKEN_RATE:g}/s ({args.seconds:g} s), token-flow chunks of {args.chunk_frames} "
          f"latent frames ({args.chunk_frames / wrapper.frame_rate * 1000:.0f} ms), {args.steps} flow steps, "
          f"CFG {args.cfg_scale}; DC-AE {Path(args.config).name} (decoder field {wrapper.decoder_field.left}+"
          f"{wrapper.decoder_field.right} latent frames), BigVGAN-v2 22 kHz structure with {args.vocoder_channels} "
          f"channels (field {wrapper.vocoder_field.left}+{wrapper.vocoder_field.right} mel frames); random weights")
    print("\n| preset | parameters | decoder lookahead (frames / s) | first audio (s compute) | tokens read "
          "(= s at 25 Hz) | stream RTF | token-flow first chunk (s) | token-flow RTF |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for preset in args.presets.split(","):
        run = token_flow_run(preset, wrapper.frame_rate, wrapper.latent_dim)
        params = sum(p.numel() for p in run.model.parameters()) / 1e6
        measure(lambda src: stream_latents(run, src, **options), tokens[:40])  # warm-up
        alone = measure(lambda src: stream_latents(run, src, **options), tokens)
        duration = alone["length"] / wrapper.frame_rate
        for lookahead in lookaheads:
            whole = lookahead in rtf_lookaheads
            r = measure(lambda src: stream_audio(run, wrapper, src, lookahead=lookahead, **options), tokens, whole)
            if whole:
                assert r["length"] == alone["length"] * wrapper.padding_factor
            rtf = f"{r['total_s'] / duration:.2f}" if whole else "-"
            print(f"| {preset} | {params:.1f} M | {lookahead} / {lookahead / wrapper.frame_rate:.2f} "
                  f"| {r['first_s']:.2f} | {r['tokens_read']} (= {r['tokens_read'] / TOKEN_RATE:.2f}) "
                  f"| {rtf} | {alone['first_s']:.3f} | {alone['total_s'] / duration:.3f} |", flush=True)


if __name__ == "__main__":
    main()
