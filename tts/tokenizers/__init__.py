"""Speech tokenizers: audio -> discrete tokens at a fixed rate (stage 1 of the two-stage TTS).

- :mod:`.base`: the :class:`SpeechTokenizer` interface (``sample_rate``, ``token_rate``,
  ``codebook_size``, ``tokenize(audio, sample_rate) -> [LongTensor (N_i,)]``, ``save_tokens``).
- :mod:`.s3`: S3Tokenizer v2 (25 Hz, 6561 codes; optional extra ``[s3]``), weights in :mod:`.s3_weights`,
  long audio in overlapping windows (:mod:`.windows`).
- :mod:`.fsq` / :mod:`.fsq_config` / :mod:`.fsq_run`: our trainable FSQ tokenizer on the BigVGAN log-mel
  (21.53 Hz = 4 tokens per DC-AE latent frame by default), its presets and run folders.
- :mod:`.usage`: codebook usage (fraction of codes used, perplexity).
- :mod:`.load`: ``load_tokenizer("s3" | RUN_DIR)`` for commands.
- :mod:`.export`: token files + manifest fields for an exported corpus (``dcae tokens``).

The S3 modules import the ``s3tokenizer`` package only when an S3 tokenizer is built; the names
below are loaded on first use (``from tts.tokenizers import FSQTokenizer``).
"""
from __future__ import annotations

from dcae.lazy import lazy_exports

S3_SPEC = "s3"  # what --tokenizer names S3Tokenizer by

_EXPORTS = {
    "SpeechTokenizer": "tts.tokenizers.base", "FSQTokenizer": "tts.tokenizers.fsq",
    "FSQTokenizerConfig": "tts.tokenizers.fsq_config", "fsq_preset": "tts.tokenizers.fsq_config",
    "FSQTokenizerRunError": "tts.tokenizers.fsq_run", "load_fsq_tokenizer": "tts.tokenizers.fsq_run",
    "save_fsq_tokenizer": "tts.tokenizers.fsq_run", "load_tokenizer": "tts.tokenizers.load",
    "CodebookUsage": "tts.tokenizers.usage", "codebook_usage": "tts.tokenizers.usage",
}

__all__ = ["S3_SPEC", *_EXPORTS]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
