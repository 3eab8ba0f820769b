"""``python -m tts.train --model ar|flow|token-flow|token-lm|fsq-tokenizer ...``: train a downstream model
(the command is :mod:`dcae.cli.tts_train`, the trainers :mod:`tts.trainers`)."""
import sys

from dcae.cli.tts_train import PROG, main, model_kind

__all__ = ["PROG", "main", "model_kind"]

if __name__ == "__main__":
    sys.exit(main())
