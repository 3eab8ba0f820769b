"""What the downstream trainers share: one model described by a run folder's ``model.json``, trained
with AdamW and a warm-up + cosine schedule on a ``forward(**batch) -> {"loss", ...}`` objective.

A subclass names its ``--model`` kind (which picks its presets), writes its run files through :meth:`ModelTrainer.run_files`
and calls :meth:`ModelTrainer.setup` from ``build``; the model's description (``{"kind", "config"}``)
is written to ``model.json`` once the checkpoint (if any) has loaded, and every step logs the
model's losses, the learning rate and the gradient norm.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import torch

from dcae.atomic import atomic_write_json
from dcae.training import ConfigError, Trainer, TrainingRun
from dcae.training.schedule import cosine_schedule_with_warmup
from tts.presets import load_presets
from tts.run import build_model


def is_restart(out: Path, kind: str) -> bool:
    """True when ``out`` already holds a ``kind`` run's files (a restart reuses them); ConfigError
    when it holds another kind's."""
    if not (out / "model.json").is_file():
        return False
    held = json.loads((out / "model.json").read_text())["kind"]
    if held != kind:
        raise ConfigError(f"{out}: holds a {held} run, not --model {kind}")
    return True


class ModelTrainer(Trainer):
    """A :class:`~dcae.training.Trainer` for one TTS model (config: a :class:`tts.trainers.config.TTSRunConfig`)."""

    kind: str  # the --model it trains; its presets are tts/presets/KIND/*.json

    @classmethod
    def presets(cls) -> dict[str, dict]:
        return load_presets(cls.kind)

    def run_files(self, run: TrainingRun, prepare: Callable[[Any, Callable[[str], None]], None]) -> dict[str, Any]:
        """Create the run folder and, on the main process, write its files with ``prepare(cfg, log)`` (a
        restart keeps them); every process then reads the run's ``latent.json``."""
        out = Path(self.cfg.output_dir)
        if run.is_main:
            out.mkdir(parents=True, exist_ok=True)
            prepare(self.cfg, run.log)
        run.barrier()
        return json.loads((out / "latent.json").read_text())

    def setup(self, run: TrainingRun, kind: str, config: dict[str, Any], **build: Any) -> None:
        """Build the ``kind`` model from ``config`` (``build``: :func:`tts.run.build_model`'s other arguments)
        on the run's device, with its optimizer and schedule, registered for checkpoints;
        ``self.step_model`` is the (DDP / compiled) module to call."""
        cfg = self.cfg
        self.spec = {"kind": kind, "config": config}
        self.model = build_model(kind, config, **build).to(run.device)
        run.log(f"{kind} model: {sum(p.numel() for p in self.model.parameters()) / 1e6:.2f} M parameters; "
                f"{run.world_size} process(es) on {run.device}, {run.precision}")
        trainable = [p for p in self.model.parameters() if p.requires_grad]  # a frozen part (LoRA's base) is left out
        self.optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate,
                                           weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
        self.scheduler = cosine_schedule_with_warmup(self.optimizer, cfg.warmup_steps, cfg.max_steps, min_lr_ratio=0.1)
        run.register_module("model", self.model)
        run.register_optimizer("optimizer", self.optimizer, trainable, self.scheduler, "scheduler")
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
