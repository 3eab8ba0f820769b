"""``python -m tts.train``: train a downstream model on exported latents (and tokens):

    python -m tts.train --model KIND --manifest M --output-dir RUN [--preset tiny|base] [--config FILE] [--field VALUE ...]
    python -m tts.train --model KIND --help                 # that model's fields, with their meaning
    torchrun --nproc_per_node N -m tts.train ...            # data-parallel (NCCL on GPU, gloo on CPU)

Kinds (:mod:`tts.trainers`): ``ar`` and ``flow`` (text -> latents), ``token-flow`` (speech tokens ->
latents), ``token-lm`` (text -> speech tokens) and ``fsq-tokenizer`` (audio -> speech tokens, the
tokenizer the two-stage models can use instead of S3). Every trainer runs on the shared
harness (:mod:`dcae.training`): the same flags for the run settings, the same resume, precision,
NaN guard, logging and checkpoints. A restart with the same ``--output-dir`` continues the run with
its saved ``config.json`` (options given again override it).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dcae.training import run_main
from tts.trainers import TRAINERS, trainer_class

PROG = "python -m tts.train"


def model_kind(argv: list[str]) -> str:
    """The ``--model`` of a command line: given, else in its ``--config`` file, else in the run folder, else ar."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in ("--model", "--config", "--output-dir"):
        parser.add_argument(flag)
    known, _ = parser.parse_known_args(argv)
    if known.model:
        return known.model
    for path in (known.config, known.output_dir and Path(known.output_dir) / "config.json"):
        if path and Path(path).is_file() and str(path).endswith(".json"):
            try:
                kind = json.loads(Path(path).read_text()).get("model")
            except (OSError, ValueError, AttributeError):
                kind = None
            if kind:
                return kind
    return "ar"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    kind = model_kind(argv)
    if kind not in TRAINERS:
        print(f"error: --model: expected one of {', '.join(TRAINERS)}, got {kind!r}", file=sys.stderr)
        return 2
    return run_main(trainer_class(kind), argv, prog=f"{PROG} --model {kind}")
