"""The settings every trainer shares (:class:`RunConfig`); each trainer's config dataclass extends it.

A trainer's config adds its own fields (data, model sizes, loss weights), may redeclare a shared
field to change its default, and says where its run lives (:meth:`RunConfig.run_dir`,
:meth:`RunConfig.checkpoint_dir`, :meth:`RunConfig.tensorboard_dir`, :meth:`RunConfig.config_path`).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar


@dataclass
class RunConfig:
    """Shared training-run settings (the harness reads them)."""

    PATH_FIELDS: ClassVar[tuple[str, ...]] = ()  # fields saved as absolute paths (see dcae.training.flags)
    SHARED_FIELDS: ClassVar[tuple[str, ...]] = ()  # filled in below: the names of RunConfig's own fields

    batch_size: int = 16  # examples per process per step
    max_steps: int = 200_000  # stop after this many steps
    max_minutes: float = 0.0  # also stop (after saving) when this much wall time has passed (0: no limit)
    max_grad_norm: float = 1.0  # gradient clipping: largest L2 norm of each optimizer's gradients
    max_nonfinite_steps: int = 20  # stop after this many consecutive steps with a NaN/Inf loss or gradient
    seed: int = 1234  # seeds initialisation, data order and every random draw (a resumed run continues them)
    precision: str = "auto"  # auto | fp32 | bf16 (autocast); auto: bf16 where the device computes it natively
    compile: bool = False  # torch.compile the models the trainer marks for it
    device: str = "auto"  # auto | cpu | cuda | cuda:N (auto: this rank's GPU if there is one)
    num_workers: int = 0  # data-loading worker processes per training process
    cpu_threads: int = 0  # torch threads on the CPU (0: torch's default)
    log_interval: int = 50  # steps between logged losses (means over the interval)
    save_interval: int = 1000  # steps between checkpoint sets
    keep_checkpoints: int = 3  # newest complete checkpoint sets kept (0: keep all)
    val_interval: int = 1000  # steps between validations (trainers that validate)

    # ---------------------------------------------------------------- where the run lives
    def run_dir(self) -> Path:
        """The run's folder (metrics.jsonl lives here)."""
        raise NotImplementedError

    def checkpoint_dir(self) -> Path:
        return self.run_dir() / "checkpoints"

    def tensorboard_dir(self) -> Path:
        """TensorBoard folder."""
        return self.run_dir() / "logs"

    def config_path(self) -> Path:
        """The resolved config, written at start and read back by a restart."""
        return self.run_dir() / "config.json"


RunConfig.SHARED_FIELDS = tuple(f.name for f in fields(RunConfig))
