"""One entry point for commands: a tokenizer spec (``s3`` or an FSQ run folder) -> a SpeechTokenizer."""
from __future__ import annotations

from pathlib import Path

import torch

from tts.tokenizers import S3_SPEC
from tts.tokenizers.base import SpeechTokenizer
from tts.tokenizers.fsq_run import load_fsq_tokenizer


def load_tokenizer(spec: str | Path, device: str | torch.device = "cpu", s3_model: str | Path | None = None,
                   s3_flag: str = "--s3-model") -> SpeechTokenizer:
    """``"s3"`` -> :class:`~tts.tokenizers.s3.S3Tokenizer` with the published weights (``s3_model``: a local
    ``speech_tokenizer_v2_25hz.onnx``; ``s3_flag``: the option named in the offline message); anything
    else is an FSQ tokenizer run folder (:func:`~tts.tokenizers.fsq_run.load_fsq_tokenizer`).
    Errors are one line: ``S3TokenizerUnavailable`` / ``S3WeightsNotFound`` / ``FSQTokenizerRunError``."""
    if str(spec) == S3_SPEC:
        from tts.tokenizers.s3 import S3Tokenizer

        return S3Tokenizer.from_pretrained(s3_model, device=device, flag=s3_flag)

    return load_fsq_tokenizer(spec, device=device)
