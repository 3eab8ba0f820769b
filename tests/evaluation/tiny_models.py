"""Tiny randomly initialised transformers models saved like the real ones (``save_pretrained`` folders),
for plumbing tests of ``--asr`` and ``--sim-model``: their outputs are meaningless, their interfaces real."""
from __future__ import annotations

import json
from pathlib import Path

import torch

WHISPER_SPECIALS = ("<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>")


def tiny_whisper(folder: Path, seed: int = 0) -> Path:
    """A 2-layer Whisper (d_model 16) with a byte-level tokenizer (256 byte tokens + Whisper's special
    tokens, no merges), the generation config a multilingual Whisper folder has (language and task ids),
    and a ``normalizer.json`` spelling map {"colour": "color"}."""
    import transformers as tf
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(bytes_to_unicode().values())}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "normalizer.json").write_text(json.dumps({"colour": "color"}))
    tokenizer = tf.WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                    normalizer_file=str(folder / "normalizer.json"), unk_token=WHISPER_SPECIALS[0],
                                    bos_token=WHISPER_SPECIALS[0], eos_token=WHISPER_SPECIALS[0])
    tokenizer.add_special_tokens({"additional_special_tokens": list(WHISPER_SPECIALS[1:])})
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in WHISPER_SPECIALS}
    end, start = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    config = tf.WhisperConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
                              encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                              decoder_ffn_dim=32, num_mel_bins=80, max_target_positions=32,
                              decoder_start_token_id=start, eos_token_id=end, pad_token_id=end, bos_token_id=end)
    torch.manual_seed(seed)
    model = tf.WhisperForConditionalGeneration(config)
    generation = model.generation_config
    generation.lang_to_id = {"<|en|>": ids["<|en|>"]}
    generation.task_to_id = {"transcribe": ids["<|transcribe|>"]}
    generation.no_timestamps_token_id = ids["<|notimestamps|>"]
    generation.is_multilingual = True
    generation.max_length = 32
    generation.decoder_start_token_id, generation.eos_token_id, generation.pad_token_id = start, end, end
    generation.begin_suppress_tokens = generation.suppress_tokens = None
    generation._from_model_config = False  # else from_pretrained rebuilds it from the model config, ids lost
    model.save_pretrained(folder)
    tf.WhisperProcessor(tf.WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(folder)
    return folder


def tiny_xvector(folder: Path, seed: int = 0) -> Path:
    """A 1-layer WavLM x-vector speaker model (24-d embeddings) with its feature extractor."""
    import transformers as tf

    config = tf.WavLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=16,
                            num_conv_pos_embedding_groups=2, tdnn_dim=(16, 16), tdnn_kernel=(3, 1),
                            tdnn_dilation=(1, 1), xvector_output_dim=24, num_buckets=32, max_bucket_distance=64)
    torch.manual_seed(seed)
    tf.WavLMForXVector(config).save_pretrained(folder)
    tf.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                                return_attention_mask=True).save_pretrained(folder)
    return folder
