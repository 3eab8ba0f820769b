"""The training harness shared by every trainer (DC-AE, TTS, token models): see :mod:`.harness`.

Modules: ``config`` (the shared run settings), ``flags`` (dataclass fields as command-line flags),
``harness`` (the loop), ``checkpoints`` (rotating atomic checkpoint sets), ``sampling`` (resumable
data order), ``rng`` (random state), ``scalars`` (TensorBoard + metrics.jsonl), ``schedule``
(learning-rate schedule).
"""
from dcae.errors import ConfigError
from dcae.training.config import RunConfig
from dcae.training.harness import Trainer, TrainingRun, Update, run_main, train

__all__ = ["ConfigError", "RunConfig", "Trainer", "TrainingRun", "Update", "run_main", "train"]
