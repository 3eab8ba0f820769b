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

The S3 modules import the ``s3tokenizer`` package only when an S3 tokenizer is built.
"""
from tts.tokenizers.base import SpeechTokenizer
from tts.tokenizers.fsq import FSQTokenizer
from tts.tokenizers.fsq_config import FSQTokenizerConfig, fsq_preset
from tts.tokenizers.fsq_run import FSQTokenizerRunError, load_fsq_tokenizer, save_fsq_tokenizer
from tts.tokenizers.load import load_tokenizer
from tts.tokenizers.usage import CodebookUsage, codebook_usage

__all__ = ["SpeechTokenizer", "FSQTokenizer", "FSQTokenizerConfig", "fsq_preset", "FSQTokenizerRunError",
           "load_fsq_tokenizer", "save_fsq_tokenizer", "load_tokenizer", "CodebookUsage", "codebook_usage"]
