"""Two-stage TTS latency: text -> token LM (KV-cached sampling) -> token-flow (chunk by chunk) -> DC-AE
decoder -> BigVGAN -> audio chunks, all streaming into each other, on this machine.

For each preset (the LM and the token-flow model of the same preset name), the text is spoken in
both LM modes (plain: the whole text read first; text-stream: the bistream layout, the text handed
over a character at a time, all available at once as from an LLM faster than real time), and timed
from the call:

- LM alone: time to its first token, tokens per second, RTF (time to write / the tokens' duration);
- LM + token-flow: time to the first latent chunk, how many tokens the LM had written then (of all
  it wrote), RTF of the latents;
- first audio: to the first audio sample (LM prefill + the tokens the first latent chunk needs + the
  flow chunk + the decoder/vocoder's wait for its lookahead), with the decoder's exact lookahead and
  with lookahead 0, and the tokens written then;
- audio stream RTF: the whole call's time / the audio's duration (< 1: faster than real time), exact
  lookahead (dominated by the DC-AE decoder and BigVGAN; ``--no-audio-rtf`` skips it).

Weights are random (timing does not depend on them); the LM's length rule is pinned so that it
writes exactly ``--seconds`` of 25 Hz tokens (S3Tokenizer's rate and 6561 codes). The DC-AE is the
default config and BigVGAN has the real 22 kHz structure (``--vocoder-channels 1536``), as in
``benchmarks/token_flow_latency.py`` (whose token-flow builder this reuses). The torch CPU capability
is printed with the table.

    python benchmarks/two_stage_latency.py                          # tiny + base
    python benchmarks/two_stage_latency.py --presets tiny --seconds 4 --threads 1
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from benchmarks.common import machine  # noqa: E402
from benchmarks.token_flow_latency import TOKEN_RATE, VOCAB, random_wrapper, token_flow_run  # noqa: E402
from tts import two_stage  # noqa: E402
from tts.presets import load_presets  # noqa: E402
from tts.run import TTSRun  # noqa: E402
from tts.text import TextFrontend  # noqa: E402
from tts.token_lm.model import TokenLM, TokenLMConfig  # noqa: E402
from tts.token_lm.synthesis import speech_tokens  # noqa: E402
from tts.two_stage import speak, speak_latents  # noqa: E402

CHARS_PER_SECOND = 10.0  # the text's length for --seconds of speech (2.5 tokens per character at 25 Hz)
TEXT = ("The quick brown fox jumps over the lazy dog while the five boxing wizards jump quickly, "
        "and then everyone goes home for a quiet evening.")


def token_lm_run(preset: str, frontend: TextFrontend, tokens_per_id: float) -> TTSRun:
    """A random-weight token LM of ``preset``'s size (bistream 5 : 10, as for a character front end),
    writing exactly ``ceil(tokens_per_id * text ids)`` tokens."""
    sizes = load_presets("token-lm")[preset]
    fields = {k: v for k, v in sizes.items() if k in TokenLMConfig.__dataclass_fields__}
    model = TokenLM(TokenLMConfig(text_vocab=frontend.vocab_size, codebook_size=VOCAB, bistream=True,
                                  **{**fields, "dropout": 0.0, "text_chunk": 5, "speech_chunk": 10}))
    info = {"token_rate": TOKEN_RATE, "min_len_ratio": tokens_per_id, "max_len_ratio": tokens_per_id}
    return TTSRun(Path(preset), "token-lm", model.eval(), frontend, None, info, 0)


def measure(chunks, written: list[int], rate: float, whole: bool = True) -> dict:
    """Time an iterator of chunks (audio (samples,) or latents (D, n)) from now: to its first chunk and
    (``whole``) to its end; ``written`` is filled by the LM's on_token; ``rate``: chunk units per second."""
    first, length = None, 0
    start = time.perf_counter()
    for chunk in chunks:
        if first is None:
            first = (time.perf_counter() - start, len(written))
            if not whole:
                chunks.close()
                break
        length += chunk.shape[-1]
    total = time.perf_counter() - start
    return {"first_s": first[0], "tokens_at_first": first[1], "tokens": len(written),
            "rtf": total / (length / rate) if whole else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny,base")
    parser.add_argument("--seconds", type=float, default=6.0, help="speech the LM writes (25 Hz tokens)")
    parser.add_argument("--chunk-frames", type=int, default=2, help="latent frames per token-flow chunk")
    parser.add_argument("--steps", type=int, default=10, help="flow steps per chunk")
    parser.add_argument("--cfg-scale", type=float, default=1.5, help="token-flow guidance")
    parser.add_argument("--config", default=str(REPO / "dcae/configs/default.json"), help="DC-AE config")
    parser.add_argument("--vocoder-channels", type=int, default=1536, help="BigVGAN upsample_initial_channel")
    parser.add_argument("--no-audio-rtf", action="store_true", help="time only the first audio chunk (the whole "
                        "audio stream is dominated by the DC-AE decoder and BigVGAN: benchmarks/token_flow_latency.py)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    wrapper = random_wrapper(args.config, args.vocoder_channels)
    text = TEXT[: round(args.seconds * CHARS_PER_SECOND)]
    frontend = TextFrontend.fit([text], "chars")
    ids = len(frontend.encode(text))
    tokens_per_id = args.seconds * TOKEN_RATE / ids
    flow_options = dict(chunk_frames=args.chunk_frames, steps=args.steps, cfg_scale=args.cfg_scale)
    print(f"{machine()}; fp32")
    print(f"text of {len(text)} characters ({ids} ids) -> {math.ceil(tokens_per_id * ids)} tokens at {TOKEN_RATE:g}/s "
          f"({args.seconds:g} s; codebook {VOCAB}; top-k 25, top-p 0.8, RAS); token-flow chunks of {args.chunk_frames} "
          f"latent frames, {args.steps} flow steps, CFG {args.cfg_scale}; DC-AE {Path(args.config).name} (decoder "
          f"lookahead up to {wrapper.max_lookahead} latent frames), BigVGAN-v2 22 kHz structure with "
          f"{args.vocoder_channels} channels; random weights")
    print("\n| preset | LM / flow parameters | LM mode | LM alone: first token (s), tokens/s, RTF | LM + token-flow: "
          "first latent chunk (s), tokens written then, RTF | first audio (s), tokens written then: exact decoder "
          "lookahead / lookahead 0 | audio stream RTF (exact) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for preset in args.presets.split(","):
        lm = token_lm_run(preset, frontend, tokens_per_id)
        flow = token_flow_run(preset, wrapper.frame_rate, wrapper.latent_dim)
        sizes = "/".join(f"{sum(p.numel() for p in r.model.parameters()) / 1e6:.1f}" for r in (lm, flow))
        speech_tokens(lm, text[:20], seed=0, min_ratio=0.0, max_ratio=2.0)  # warm-up
        for text_stream in (False, True):
            source = list(text) if text_stream else text
            kw = dict(text_stream=text_stream, seed=0)
            written: list[int] = []
            alone = measure((torch.zeros(1) for _ in speech_token_source(lm, source, on=written, **kw)), written,
                            TOKEN_RATE)  # one unit per token: the RTF is the tokens' duration vs the time to write them
            written = []
            latents = measure(speak_latents(lm, flow, source, flow_options=flow_options, on_token=written.append, **kw),
                              written, wrapper.frame_rate)
            firsts = []
            for lookahead in (wrapper.max_lookahead, 0):
                written = []
                whole = lookahead == wrapper.max_lookahead and not args.no_audio_rtf
                firsts.append(measure(speak(lm, flow, wrapper, source, flow_options=flow_options, lookahead=lookahead,
                                            on_token=written.append, **kw), written, wrapper.sample_rate, whole))
            mode = "text-stream (bistream)" if text_stream else "plain"
            rtf = "-" if firsts[0]["rtf"] is None else f"{firsts[0]['rtf']:.2f}"
            print(f"| {preset} | {sizes} M | {mode} | {alone['first_s']:.3f}, {TOKEN_RATE / alone['rtf']:.0f}, "
                  f"{alone['rtf']:.3f} | {latents['first_s']:.3f}, "
                  f"{latents['tokens_at_first']} of {latents['tokens']}, {latents['rtf']:.3f} | "
                  f"{firsts[0]['first_s']:.2f}, {firsts[0]['tokens_at_first']} / {firsts[1]['first_s']:.2f}, "
                  f"{firsts[1]['tokens_at_first']} | {rtf} |", flush=True)


def speech_token_source(lm, text, on: list[int], **kw):
    for token in two_stage.speech_token_source(lm, text, **kw):
        on.append(token)
        yield token


if __name__ == "__main__":
    main()
