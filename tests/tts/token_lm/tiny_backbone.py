"""A tiny Qwen2 backbone made on the spot (no download): a byte-level BPE tokenizer trained on given
texts with ``tokenizers`` and a random Qwen2 built from a config, saved as a Hugging Face folder."""
from __future__ import annotations

from pathlib import Path

import torch

CV2_SPECIALS = 19  # ids CosyVoice 2's front end adds to the tokenizer


def train_tokenizer(texts: list[str], vocab_size: int = 200):
    """A byte-level BPE tokenizer (``transformers.PreTrainedTokenizerFast``) fitted on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def tiny_qwen(folder: Path, texts: list[str], hidden: int = 64, layers: int = 2, seed: int = 0,
              tokenizer_vocab: int = 300) -> Path:
    """``folder`` with config.json, model.safetensors (random Qwen2ForCausalLM) and a tokenizer; returns it."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = train_tokenizer(texts, tokenizer_vocab)
    config = Qwen2Config(vocab_size=len(tokenizer) + CV2_SPECIALS + 8, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, tie_word_embeddings=True, rope_theta=10000.0)
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
