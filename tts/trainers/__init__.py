"""The downstream trainers, one per ``python -m tts.train --model KIND``, all on :mod:`dcae.training`."""
from __future__ import annotations

import importlib

from dcae.training import Trainer

# kind -> (module, class); imported on use so one trainer's optional dependency never breaks another
TRAINERS: dict[str, tuple[str, str]] = {
    "ar": ("tts.trainers.text_latent", "ARTrainer"),
    "flow": ("tts.trainers.text_latent", "FlowTrainer"),
    "token-flow": ("tts.trainers.token_flow", "TokenFlowTrainer"),
    "token-lm": ("tts.trainers.token_lm", "TokenLMTrainer"),
    "fsq-tokenizer": ("tts.trainers.fsq_tokenizer", "FSQTokenizerTrainer"),
}


def trainer_class(kind: str) -> type[Trainer]:
    module, name = TRAINERS[kind]
    return getattr(importlib.import_module(module), name)
