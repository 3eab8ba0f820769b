"""Speech tokens per second of the token LM on a pretrained-LLM backbone (tts.token_lm.backbone) at
CosyVoice 2's size: Qwen2.5-0.5B's config (896 wide, 24 layers, 14 heads, 151936 text ids), random
weights (nothing is downloaded), a 6561-code speech head, KV-cached decoding with CosyVoice's sampler.

    python benchmarks/backbone_lm_speed.py                    # fp32, and bf16 where the CPU has it natively
    python benchmarks/backbone_lm_speed.py --device cuda      # on a GPU
    python benchmarks/backbone_lm_speed.py --quick            # a tiny config: the plumbing only

Printed per precision: the time to the first token (the prompt: start marker, 40 text ids, task id),
then tokens/s over ``--tokens`` drawn tokens (``<eos>`` masked so that every run draws as many), and
the same without the KV cache for the first 32 tokens (the ratio is what the cache buys).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

QWEN25_05B = dict(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                  num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                  rope_theta=1000000.0, rms_norm_eps=1e-6, tie_word_embeddings=True)
TINY = dict(QWEN25_05B, vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2)


def native_bf16() -> bool:
    from torch.backends import cpu
    return cpu.get_cpu_capability() in ("AVX512_BF16", "AMX") or "bf16" in open("/proc/cpuinfo").read()


def decode(model, text: list[int], count: int, use_cache: bool, dtype: torch.dtype) -> tuple[float, float]:
    """(seconds to the first token, tokens/s after it) drawing ``count`` tokens."""
    from tts.token_lm.generate import GenerationOptions, _Sampler
    from tts.token_lm.sampling import SamplingSettings

    options = GenerationOptions(sampling=SamplingSettings(style="cosyvoice"), use_cache=use_cache)
    vocab = model.cfg.vocab
    device = model.device
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        sampler = _Sampler(model, options, torch.Generator(device="cpu").manual_seed(0))
        start = time.perf_counter()
        sampler.feed([vocab.plain], False)
        sampler.feed(text, True)
        sampler.feed([vocab.sos], False)
        sampler.sample(allow_eos=False)
        first = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(count - 1):
            sampler.sample(allow_eos=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return first, (count - 1) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="a tiny config (the plumbing only)")
    args = parser.parse_args(argv)
    from transformers import Qwen2Config

    from tts.token_lm.backbone import BackboneLMConfig, BackboneTokenLM

    sizes = TINY if args.quick else QWEN25_05B
    with tempfile.TemporaryDirectory() as folder:
        Qwen2Config(**sizes).save_pretrained(folder)
        torch.manual_seed(0)
        started = time.perf_counter()
        model = BackboneTokenLM(BackboneLMConfig(backbone=str(Path(folder)), text_vocab=sizes["vocab_size"],
                                                 codebook_size=6561)).to(args.device).eval()
        built = time.perf_counter() - started
    params = sum(p.numel() for p in model.parameters()) / 1e6
    from torch.backends import cpu
    print(f"backbone LM: Qwen2 {sizes['hidden_size']} wide, {sizes['num_hidden_layers']} layers, {params:.0f} M "
          f"parameters (random), built in {built:.1f} s; device {args.device}; torch {torch.__version__}, "
          f"CPU capability {cpu.get_cpu_capability()}, {torch.get_num_threads()} threads")
    text = list(range(100, 140))
    dtypes = [torch.float32]
    if args.device != "cpu" or native_bf16():
        dtypes.append(torch.bfloat16)
    count = 20 if args.quick else args.tokens
    for dtype in dtypes:
        first, rate = decode(model, text, count, True, dtype)
        _, uncached = decode(model, text, min(32, count), False, dtype)
        name = str(dtype).replace("torch.", "")
        print(f"{name}: first token after {first * 1000:.0f} ms; KV-cached {rate:.1f} tokens/s "
              f"({rate / 25:.2f}x real time at 25 tokens/s); uncached (32 tokens) {uncached:.1f} tokens/s, "
              f"cache speed-up {rate / uncached:.1f}x")


if __name__ == "__main__":
    main()
