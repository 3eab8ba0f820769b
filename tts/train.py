"""Train a TTS model on exported latents:

    python -m tts.train --model ar|flow --manifest M --output-dir RUN [--preset tiny|base] [--config FILE] [--field VALUE ...]
    torchrun --nproc_per_node N -m tts.train ...      # data-parallel (NCCL on GPU, gloo on CPU)

The first start writes the run files (see :mod:`tts.run`): the text vocabulary fitted on the
manifest's texts, the latent stats, the duration rule (frames per text token, a least-squares fit
through the origin) and the model description. A restart with the same ``--output-dir`` reuses them
and resumes from the newest complete checkpoint set.
"""
from __future__ import annotations

import json
import random
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from dcae.utils.atomic import atomic_write_json
from dcae.training.flags import ConfigError, parse_config, save_config
from dcae.utils.distributed import DistInfo, barrier, cleanup, init_distributed
from dcae.training.schedule import cosine_schedule_with_warmup

from .config import TTSTrainConfig, check_config, load_presets
from .data import LatentManifestDataset, LatentStats, ManifestError, pad_sequences
from .run import build_model, checkpoint_manager, model_config, save_run_files
from .text import FrontendError, TextFrontend


class TokenizedLatents(Dataset):
    """Latent items with their text as token ids (tokenised once, up front): ``{"tokens", "latent"}``."""

    def __init__(self, latents: LatentManifestDataset, frontend: TextFrontend):
        self.latents = latents
        self.tokens = [torch.tensor(ids, dtype=torch.long) for ids in frontend.encode_batch(latents.texts)]
        empty = [latents.rows[i]["id"] for i, t in enumerate(self.tokens) if t.numel() == 0]
        if empty:
            raise ManifestError(f"{latents.manifest_path}: {len(empty)} row(s) have empty text (first: {empty[0]})")

    def __len__(self) -> int:
        return len(self.latents)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"tokens": self.tokens[index], "latent": self.latents[index]["latent"]}


def collate_tts(items: list[dict[str, torch.Tensor]], left_pad_text: bool) -> dict[str, torch.Tensor]:
    """Text (B, L) padded (left for the AR model) with mask, latents (B, T, D) right-padded with mask."""
    text, text_mask = pad_sequences([it["tokens"] for it in items], left=left_pad_text)
    latent, latent_mask = pad_sequences([it["latent"] for it in items])
    return {"text": text, "text_mask": text_mask, "latent": latent, "latent_mask": latent_mask}


def fit_frames_per_token(num_frames: list[int], num_tokens: list[int]) -> float:
    """Least-squares rate through the origin: frames ~ rate * tokens."""
    return sum(f * t for f, t in zip(num_frames, num_tokens)) / max(1, sum(t * t for t in num_tokens))


def prepare_run(cfg: TTSTrainConfig, log) -> None:
    """Write the run files on the first start (main process only)."""
    out = Path(cfg.output_dir)
    if (out / "model.json").is_file():  # a restart: same vocabulary, stats and duration rule
        kind = json.loads((out / "model.json").read_text())["kind"]
        if kind != cfg.model:
            raise ConfigError(f"{out}: holds a {kind} run, not --model {cfg.model}")
        return
    stats_arg = None if cfg.stats in (None, "none") else cfg.stats
    data = LatentManifestDataset(cfg.manifest, stats_path=stats_arg, normalize=stats_arg is not None,
                                 max_frames=cfg.max_frames, require_text=True)
    frontend = TextFrontend.fit(data.texts, cfg.text_frontend, cfg.lowercase, cfg.phoneme_language)
    tokens = [len(t) for t in frontend.encode_batch(data.texts)]
    rate = fit_frames_per_token(data.num_frames, tokens)
    stats = data.stats or LatentStats(torch.zeros(data.latent_dim), torch.ones(data.latent_dim), sum(data.num_frames))
    meta = data.meta
    latent_info = {"frames_per_token": rate, "sample_rate": meta.sample_rate, "hop_length": meta.hop_length,
                   "frame_rate": meta.frame_rate, "model": meta.model, "latent_dim": data.latent_dim}
    config = model_config(cfg.model, cfg, frontend.vocab_size, data.latent_dim, rate)
    save_run_files(out, cfg.model, config, frontend, stats, latent_info)
    log(f"{len(data)} utterances, {sum(data.num_frames)} frames, latent dim {data.latent_dim}, "
        f"vocabulary {frontend.vocab_size} ({cfg.text_frontend}), {rate:.2f} frames per token")


def train(cfg: TTSTrainConfig) -> int:
    check_config(cfg)
    if cfg.cpu_threads > 0:
        torch.set_num_threads(cfg.cpu_threads)
    info: DistInfo = init_distributed(None if cfg.device == "auto" else cfg.device)
    device = info.device
    log = (lambda msg: tqdm.write(msg)) if info.is_main else (lambda msg: None)
    random.seed(cfg.seed + info.rank)
    torch.manual_seed(cfg.seed + info.rank)
    out = Path(cfg.output_dir)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        prepare_run(cfg, log)
    barrier()

    frontend = TextFrontend.load(out / "vocab.json")
    run_info = json.loads((out / "latent.json").read_text())
    spec = {"kind": cfg.model, "config": model_config(cfg.model, cfg, frontend.vocab_size, run_info["latent_dim"],
                                                      run_info["frames_per_token"])}
    dataset = TokenizedLatents(LatentManifestDataset(cfg.manifest, stats_path=out / "stats.json",
                                                     max_frames=cfg.max_frames, require_text=True), frontend)
    model = build_model(spec["kind"], spec["config"]).to(device)
    log(f"{cfg.model} model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters; "
        f"{info.world_size} process(es) on {device}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay,
                                  betas=(0.9, 0.98))
    scheduler = cosine_schedule_with_warmup(optimizer, cfg.warmup_steps, cfg.max_steps, min_lr_ratio=0.1)

    checkpoints = checkpoint_manager(out, keep=cfg.keep_checkpoints)
    step = checkpoints.latest_step() or 0
    if step:
        try:
            model.load_state_dict(checkpoints.load("model", step, device))
        except RuntimeError:
            raise ConfigError(f"{checkpoints.path('model', step)}: does not fit the model these options describe "
                              f"(size options changed? use a new --output-dir)") from None
        optimizer.load_state_dict(checkpoints.load("optimizer", step, device))
        state = checkpoints.load("state", step)
        scheduler.load_state_dict(state["scheduler"])
        log(f"resumed from step {step} ({checkpoints.path('state', step)})")
    if info.is_main:  # options that do not change the weights' shapes may differ on a restart
        atomic_write_json(out / "model.json", spec)
        save_config(cfg, out / "config.json")

    sampler = DistributedSampler(dataset, shuffle=True, seed=cfg.seed, drop_last=True) if info.is_distributed else None
    batch_size = min(cfg.batch_size, len(dataset))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=sampler is None, sampler=sampler, drop_last=True,
                        num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                        collate_fn=partial(collate_tts, left_pad_text=cfg.model == "ar"))
    def infinite(epoch):
        while True:
            if sampler is not None:
                sampler.set_epoch(epoch)
            yield from loader
            epoch += 1

    batches = infinite(step // max(1, len(loader)))
    step_model = DDP(model, device_ids=[device] if device.type == "cuda" else None) if info.is_distributed else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if cfg.precision == "bf16" else nullcontext()

    writer = None
    if info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "logs"))
    bar = tqdm(total=cfg.max_steps, initial=step, disable=not info.is_main, dynamic_ncols=True, unit="step")
    start = time.perf_counter()
    sums: dict[str, float] = {}
    model.train()

    def save() -> None:
        if info.is_main:
            checkpoints.save(step, {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                                    "optimizer": optimizer.state_dict(),
                                    "state": {"step": step, "scheduler": scheduler.state_dict(), "config": asdict(cfg)}})

    while step < cfg.max_steps:
        batch = {k: v.to(device, non_blocking=True) for k, v in next(batches).items()}
        with autocast:
            losses = step_model(**batch)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        if torch.isfinite(grad_norm):
            optimizer.step()
        else:
            log(f"step {step + 1}: non-finite gradient; update skipped")
        scheduler.step()
        step += 1
        bar.update(1)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        if step % cfg.log_interval == 0:
            means = {k: v / cfg.log_interval for k, v in sums.items()}
            sums = {}
            bar.set_postfix({k: f"{v:.4f}" for k, v in means.items()})
            if writer is not None:
                for k, v in means.items():
                    writer.add_scalar(f"train/{k}", v, step)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                writer.add_scalar("train/grad_norm", float(grad_norm), step)
        out_of_time = cfg.max_minutes > 0 and time.perf_counter() - start > 60 * cfg.max_minutes
        if info.is_distributed:  # every rank stops together when the main one is out of time
            flag = torch.tensor([float(out_of_time)], device=device)
            torch.distributed.broadcast(flag, 0)
            out_of_time = bool(flag.item())
        if step % cfg.save_interval == 0 or step == cfg.max_steps or out_of_time:
            save()
        if out_of_time:
            log(f"stopping after {cfg.max_minutes} minutes at step {step}")
            break
    bar.close()
    if writer is not None:
        writer.close()
    barrier()
    cleanup()
    return step


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_config(TTSTrainConfig, argv, prog="python -m tts.train", presets=load_presets())
        train(cfg)
    except (ConfigError, ManifestError, FrontendError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
