"""What the downstream trainers share: one model described by a run folder's ``model.json``, trained
with AdamW and a warm-up + cosine schedule on a ``forward(**batch) -> {"loss", ...}`` objective.

A subclass prepares its run files and calls :meth:`ModelTrainer.setup` from ``build``; the model's
description (``{"kind", "config"}``) is written to ``model.json`` once the checkpoint (if any) has
loaded, and every step logs the model's losses, the learning rate and the gradient norm.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dcae.training import Trainer, TrainingRun
from dcae.training.schedule import cosine_schedule_with_warmup
from dcae.utils.atomic import atomic_write_json

from ..run import build_model


class ModelTrainer(Trainer):
    """A :class:`~dcae.training.Trainer` for one TTS model (config: a :class:`tts.config.TTSRunConfig`)."""

    def setup(self, run: TrainingRun, kind: str, config: dict[str, Any]) -> None:
        """Build the ``kind`` model from ``config`` on the run's device, with its optimizer and schedule,
        registered for checkpoints; ``self.step_model`` is the (DDP / compiled) module to call."""
        cfg = self.cfg
        self.spec = {"kind": kind, "config": config}
        self.model = build_model(kind, config).to(run.device)
        run.log(f"{kind} model: {sum(p.numel() for p in self.model.parameters()) / 1e6:.2f} M parameters; "
                f"{run.world_size} process(es) on {run.device}, {run.precision}")
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.learning_rate,
                                           weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
        self.scheduler = cosine_schedule_with_warmup(self.optimizer, cfg.warmup_steps, cfg.max_steps, min_lr_ratio=0.1)
        run.register_module("model", self.model)
        run.register_optimizer("optimizer", self.optimizer, self.model.parameters(), self.scheduler, "scheduler")
        self.step_model = run.compile(run.distributed(self.model))

    def started(self, run: TrainingRun) -> None:
        if run.is_main:  # the checkpoint fits: options that do not change the weights' shapes may have changed
            atomic_write_json(Path(self.cfg.output_dir) / "model.json", self.spec)

    def train_step(self, batch: dict[str, torch.Tensor], run: TrainingRun) -> dict[str, torch.Tensor | float]:
        self.model.train()
        with run.autocast():
            losses = self.step_model(**batch)
        update = run.update("optimizer", losses["loss"])
        return {**{f"train/{k}": v.detach() for k, v in losses.items()}, "train/lr": self.scheduler.get_last_lr()[0],
                "train/grad_norm": update.grad_norm}
