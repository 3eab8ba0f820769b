"""The training harness every trainer runs on (the DC-AE, the TTS models, the token models).

A trainer supplies its config dataclass (a :class:`~dcae.training.config.RunConfig`), builds its
models and optimizers, gives a dataset, and writes one training step; the harness does the rest,
the same way for every trainer:

- distributed start-up under ``torchrun`` (NCCL on GPU, gloo on CPU), seeding, and the random
  state of every rank saved with each checkpoint and restored on resume;
- data order from a seeded per-epoch permutation that a restart continues mid-epoch, so a killed
  and resumed run computes the same losses as an uninterrupted one; or, for a streamed dataset (an
  ``IterableDataset`` yielding ``(position, batch)``, :class:`dcae.corpus.stream.BatchStream`), each
  rank's and worker's position saved with the checkpoint and continued exactly;
- autocast precision (``auto``: bf16 only where the device computes it natively), opt-in
  ``torch.compile``, DDP wrapping;
- optimizer updates (:meth:`TrainingRun.update`): backward, gradient clipping, a NaN/Inf guard that
  all ranks agree on (the update is skipped and counted; the run stops after N in a row);
- step and wall-time limits, tqdm progress, TensorBoard + ``metrics.jsonl``, validation hooks;
- keep-K checkpoint sets written atomically, one file per registered module/optimizer plus
  ``state_{step}.pt`` (step, schedulers, RNG, config) written last as the completion marker;
  a restart resumes from the newest complete set (also from a set without a state file, such as
  the reference DC-AE trainer writes: weights and optimizers, schedule fast-forwarded).

    class MyTrainer(Trainer):
        config_class = MyConfig
        def build(self, run): ...          # run.register_module / run.register_optimizer
        def dataset(self, run): ...        # a torch Dataset
        def train_step(self, batch, run):  # losses; run.update("optimizer", loss) applies one update
            ...
    sys.exit(run_main(MyTrainer, prog="python -m mypackage.train"))
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate
from tqdm import tqdm

from dcae.distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed
from dcae.errors import ConfigError
from dcae.precision import resolve_precision
from dcae.progress import progress_bar
from dcae.seeds import mix_seed
from dcae.training.checkpoints import CheckpointManager
from dcae.training.config import RunConfig
from dcae.training.flags import config_to_dict, parse_config, save_config
from dcae.training.positions import PositionLog
from dcae.training.rng import rng_state, rng_unchanged, seed_everything, set_rng_state
from dcae.training.sampling import ResumableSampler
from dcae.training.scalars import ScalarLog

STATE_FILE = "state"
TRAINING_PRECISIONS = ("auto", "fp32", "bf16")


class Trainer:
    """What a trainer gives the harness; subclass it and set ``config_class``."""

    config_class: type[RunConfig] = RunConfig
    user_errors: tuple[type[Exception], ...] = ()  # exceptions whose message is a one-line error for the user

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg

    @classmethod
    def presets(cls) -> dict[str, dict[str, Any]]:
        """Named sets of field values for ``--preset`` (none by default)."""
        return {}

    def check(self) -> None:
        """Raise :class:`ConfigError` (one line) for values this trainer cannot run with."""

    def build(self, run: "TrainingRun") -> None:
        """Make the models and optimizers on ``run.device`` and register them with ``run``."""
        raise NotImplementedError

    def started(self, run: "TrainingRun") -> None:
        """Called once the checkpoint (if any) is loaded, before the first step: write run files that
        must not change unless the run can continue (every process; ``run.step`` is the start step)."""

    def saved(self, run: "TrainingRun", step: int) -> None:
        """Main process, after a checkpoint set was written: e.g. export inference weights to the run folder."""

    def dataset(self, run: "TrainingRun") -> Dataset:
        """The training items (set ``uses_item_seeds = True`` on it to receive ``(index, seed)`` keys), or a
        stream of batches (an ``IterableDataset`` of ``(position, batch)`` with ``workers``, ``starts``,
        ``role_offset`` and ``resume(state)``, such as :class:`dcae.corpus.stream.BatchStream`)."""
        raise NotImplementedError

    def collate(self, items: list[Any]) -> Any:
        return default_collate(items)

    def train_step(self, batch: Any, run: "TrainingRun") -> dict[str, torch.Tensor | float]:
        """One step on ``batch`` (already on ``run.device`` when it is a tensor or a dict of tensors):
        apply the updates with :meth:`TrainingRun.update`; return the values to log."""
        raise NotImplementedError

    def validate(self, run: "TrainingRun", step: int) -> dict[str, float]:
        """Main process only, every ``val_interval`` steps: values to log (none by default)."""
        return {}

    def extra_state(self) -> dict[str, Any]:
        """Trainer state saved in ``state_{step}.pt`` (plain Python/tensors)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`extra_state` from a loaded state file."""

    def adapt_state_dict(self, name: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A saved module's state dict as ``load_state_dict`` needs it (DDP/compile prefixes stripped)."""
        return {k.replace("_orig_mod.", "").removeprefix("module."): v for k, v in state.items()}


@dataclass
class _Optimizer:
    optimizer: Any  # torch.optim.Optimizer or anything with zero_grad/step/state_dict/load_state_dict
    parameters: list[nn.Parameter]
    scheduler: Any
    state_key: str


@dataclass(frozen=True)
class Update:
    """What :meth:`TrainingRun.update` did: the gradient norm before clipping, and whether it applied."""

    grad_norm: torch.Tensor
    applied: bool


class TrainingRun:
    """The harness as a trainer sees it: device, precision, registration, updates, logging."""

    def __init__(self, cfg: RunConfig, info: DistInfo):
        self.cfg = cfg
        self.info = info
        self.device = info.device
        self.precision = resolve_precision(cfg.precision, info.device)
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, _Optimizer] = {}
        self.step = 0
        self.writer = None  # TensorBoard SummaryWriter on the main process (for images/audio in validation)
        self.applied: dict[str, bool] = {}
        self.saved_state: dict[str, Any] | None = None  # the state file resumed from (None: a new run)
        self.positions: PositionLog | None = None  # a streamed dataset's positions

    @property
    def is_main(self) -> bool:
        return self.info.is_main

    @property
    def world_size(self) -> int:
        return self.info.world_size

    @property
    def rank(self) -> int:
        return self.info.rank

    def log(self, message: str) -> None:
        """Print a line above the progress bar (main process only)."""
        if self.is_main:
            tqdm.write(message)

    def barrier(self) -> None:
        barrier()

    # ---------------------------------------------------------------- models
    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the forward pass (bf16 autocast, or nothing in fp32)."""
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def compile(self, module: nn.Module) -> nn.Module:
        """``torch.compile(module)`` when the run asks for it, else ``module``."""
        return torch.compile(module) if self.cfg.compile else module

    def distributed(self, module: nn.Module) -> nn.Module:
        """``module`` wrapped for data-parallel training when there are several processes."""
        if not self.info.is_distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[self.device] if self.device.type == "cuda" else None)

    def register_module(self, name: str, module: nn.Module) -> None:
        """Save/restore ``module``'s state dict as ``{name}_{step}.pt``."""
        self.modules[name] = module

    def register_optimizer(self, name: str, optimizer: Any, parameters, scheduler: Any = None,
                           state_key: str | None = None) -> None:
        """Save/restore ``optimizer`` as ``{name}_{step}.pt``; its LR ``scheduler`` is stepped once per
        training step and saved in the state file under ``state_key`` (default ``scheduler_{name}``)."""
        self.optimizers[name] = _Optimizer(optimizer, [p for p in parameters if p.requires_grad], scheduler,
                                           state_key or f"scheduler_{name}")

    def update(self, name: str, loss: torch.Tensor) -> Update:
        """Backward ``loss``, clip, and step optimizer ``name`` unless the loss or the gradient norm is
        NaN/Inf on any rank (then the update is skipped and the step counts as non-finite)."""
        entry = self.optimizers[name]
        entry.optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(entry.parameters, self.cfg.max_grad_norm)
        bad = (~torch.isfinite(loss.detach()) | ~torch.isfinite(grad_norm)).float().reshape(1)
        applied = all_reduce_sum(bad).item() == 0
        if applied:
            entry.optimizer.step()
        self.applied[name] = self.applied.get(name, True) and applied
        return Update(grad_norm.detach(), applied)


# ==================================================================== checkpoints
def _checkpoint_manager(run: TrainingRun) -> CheckpointManager:
    return CheckpointManager(run.cfg.checkpoint_dir(), [*run.modules, *run.optimizers, STATE_FILE],
                             keep=run.cfg.keep_checkpoints)


def _gather(run: TrainingRun, value: Any) -> list[Any]:
    """``value`` of every rank, in rank order (a collective)."""
    if not run.info.is_distributed:
        return [value]
    values: list = [None] * run.world_size
    dist.all_gather_object(values, value)
    return values


def save_checkpoint(run: TrainingRun, trainer: Trainer, manager: CheckpointManager, step: int,
                    nonfinite_total: int) -> None:
    """Every module, optimizer, then the state file (a collective: call on every rank)."""
    rng = _gather(run, rng_state())
    streams = _gather(run, run.positions.state()) if run.positions is not None else None
    if not run.is_main:
        return
    objects: dict[str, Any] = {name: {k: v.detach().cpu() for k, v in module.state_dict().items()}
                               for name, module in run.modules.items()}
    objects.update({name: entry.optimizer.state_dict() for name, entry in run.optimizers.items()})
    state = {"step": step, "rng": rng, "config": config_to_dict(run.cfg), "nonfinite_steps": nonfinite_total,
             **({"stream": streams} if streams is not None else {}),
             **{e.state_key: e.scheduler.state_dict() for e in run.optimizers.values() if e.scheduler is not None},
             **trainer.extra_state()}
    objects[STATE_FILE] = state
    manager.save(step, objects)
    run.log(f"step {step}: saved checkpoint set {manager.path(STATE_FILE, step)}")
    trainer.saved(run, step)


def _fast_forward(scheduler: Any, step: int) -> None:
    if hasattr(scheduler, "fast_forward"):
        scheduler.fast_forward(step)
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler.last_epoch = step - 1
        scheduler.step()


def resume(run: TrainingRun, trainer: Trainer, manager: CheckpointManager) -> tuple[int, int]:
    """Load the newest complete checkpoint set: ``(step, non-finite steps so far)``; ``(0, 0)`` if none."""
    step = manager.latest_step()
    with_state = step is not None
    if not with_state:  # e.g. the reference DC-AE trainer's folder: no state file
        step = manager.latest_step([p for p in manager.prefixes if p != STATE_FILE])
        if step is None:
            return 0, 0
    for name, module in run.modules.items():
        state = trainer.adapt_state_dict(name, manager.load(name, step))
        try:
            module.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise ConfigError(f"{manager.path(name, step)}: does not fit the model these options describe "
                              f"({first[:160]}); restart with the run's options or use a new output folder") from None
    for name, entry in run.optimizers.items():
        try:
            entry.optimizer.load_state_dict(manager.load(name, step))
        except (ValueError, KeyError, RuntimeError) as e:
            if with_state:
                raise ConfigError(f"{manager.path(name, step)}: optimizer state does not fit ({e})") from None
            run.log(f"{manager.path(name, step)}: optimizer state not usable here ({e}); it starts afresh")
    if not with_state:
        for entry in run.optimizers.values():
            if entry.scheduler is not None:
                _fast_forward(entry.scheduler, step)
        run.log(f"resumed from step {step} (reference checkpoint set in {manager.directory}: weights and "
                f"optimizers, no state file; learning-rate schedule fast-forwarded)")
        return step, 0
    state = manager.load(STATE_FILE, step)
    run.saved_state = state
    for entry in run.optimizers.values():
        if entry.scheduler is not None and entry.state_key in state:
            entry.scheduler.load_state_dict(state[entry.state_key])
    if len(state.get("rng", [])) == run.world_size:
        set_rng_state(state["rng"][run.rank])
    else:
        run.log(f"the run was saved by {len(state.get('rng', []))} process(es), now {run.world_size}: "
                f"random streams start afresh")
    trainer.load_extra_state(state)
    run.log(f"resumed from step {step} ({manager.path(STATE_FILE, step)})")
    return step, int(state.get("nonfinite_steps", 0))


# ==================================================================== data
def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if hasattr(batch, "to_device"):
        return batch.to_device(device)
    return batch


def _batches(loader: DataLoader, sampler: ResumableSampler, batch_size: int, step: int, seed: int,
             rank: int) -> Iterator[Any]:
    """Batches from ``step`` on, forever: the epoch and the position in it follow from the step."""
    per_epoch = len(sampler) // batch_size
    epoch, offset = divmod(step, per_epoch)
    while True:
        sampler.set_position(epoch, offset * batch_size)
        loader.generator.manual_seed(mix_seed(seed, epoch, rank, 1))  # worker seeds, per epoch
        yield from loader
        epoch, offset = epoch + 1, 0


def _identity(batch: Any) -> Any:
    return batch


def _stream(run: TrainingRun, stream: IterableDataset) -> Iterator[Any]:
    """Batches of a streamed dataset, forever, continuing where the saved run left off; the positions
    consumed go to ``run.positions`` (saved with each checkpoint)."""
    cfg = run.cfg
    saved = (run.saved_state or {}).get("stream")
    mine = None
    if saved is not None and len(saved) != run.world_size:
        run.log(f"the data stream was saved by {len(saved)} process(es), now {run.world_size}: it starts a new "
                f"epoch order")
    elif saved is not None:
        mine = saved[run.rank]
    reason = stream.resume(mine)
    if reason:
        run.log(reason)
    run.positions = PositionLog(stream.workers, stream.starts, stream.role_offset)
    workers = dict(num_workers=cfg.num_workers, persistent_workers=True, prefetch_factor=4) if cfg.num_workers else {}
    # a generator of its own: starting the loader draws its base seed, which must not come from (and shift)
    # the training random streams that a resumed run restores
    loader = DataLoader(stream, batch_size=None, collate_fn=_identity, pin_memory=run.device.type == "cuda",
                        generator=torch.Generator(), **workers)
    for position, batch in loader:
        run.positions.consumed(position)
        yield batch


def _loader(trainer: Trainer, run: TrainingRun, dataset: Dataset) -> tuple[DataLoader, ResumableSampler]:
    cfg = run.cfg
    if len(dataset) < cfg.batch_size * run.world_size:
        raise ConfigError(f"{len(dataset)} training items, fewer than one batch "
                          f"({cfg.batch_size} x {run.world_size} process(es)): lower --batch-size")
    sampler = ResumableSampler(len(dataset), cfg.seed, run.rank, run.world_size,
                               item_seeds=getattr(dataset, "uses_item_seeds", False))
    workers = dict(num_workers=cfg.num_workers, persistent_workers=True, prefetch_factor=4) if cfg.num_workers else {}
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, drop_last=True,
                        collate_fn=trainer.collate, pin_memory=run.device.type == "cuda",
                        generator=torch.Generator(), **workers)
    return loader, sampler


# ==================================================================== the loop
def train(trainer: Trainer) -> int:
    """Run ``trainer`` to its step or time limit. Returns 0, or 1 when it stopped on NaN/Inf."""
    cfg = trainer.cfg
    if cfg.precision not in TRAINING_PRECISIONS:
        raise ConfigError(f"--precision: expected one of {', '.join(TRAINING_PRECISIONS)}, got {cfg.precision!r}")
    for name in ("batch_size", "log_interval", "save_interval", "val_interval", "max_steps", "max_nonfinite_steps"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be at least 1, got {getattr(cfg, name)}")
    trainer.check()
    if cfg.cpu_threads > 0:
        torch.set_num_threads(cfg.cpu_threads)
    info = init_distributed(cfg.device)
    run = TrainingRun(cfg, info)
    seed_everything(cfg.seed + info.rank)
    torch.backends.cudnn.benchmark = True
    torch.set_float32_matmul_precision("high")

    trainer.build(run)
    manager = _checkpoint_manager(run)
    step, nonfinite_total = resume(run, trainer, manager)
    run.step = step
    if run.is_main:
        cfg.run_dir().mkdir(parents=True, exist_ok=True)
        save_config(cfg, cfg.config_path())
    trainer.started(run)
    dataset = trainer.dataset(run)
    if isinstance(dataset, IterableDataset):
        batches = _stream(run, dataset)
    else:
        loader, sampler = _loader(trainer, run, dataset)
        batches = _batches(loader, sampler, cfg.batch_size, step, cfg.seed, run.rank)
    scalars = ScalarLog(cfg.tensorboard_dir(), cfg.run_dir() / "metrics.jsonl", step, enabled=run.is_main)
    run.writer = scalars.writer

    bar = progress_bar(total=cfg.max_steps if cfg.max_steps < 1e12 else None, initial=step, disable=not run.is_main,
               dynamic_ncols=True, unit="step")
    started = time.perf_counter()
    t_last, step_last = started, step
    sums: dict[str, Any] = {}
    counted = consecutive = 0
    code = 0
    try:
        while step < cfg.max_steps:
            batch = _to_device(next(batches), run.device)
            run.applied = {}
            values = trainer.train_step(batch, run)
            for entry in run.optimizers.values():
                if entry.scheduler is not None:
                    entry.scheduler.step()
            step += 1
            run.step = step
            bar.update(1)

            skipped = [name for name, ok in run.applied.items() if not ok]
            if skipped:
                consecutive += 1
                nonfinite_total += 1
                run.log(f"step {step}: non-finite loss or gradient in the {', '.join(skipped)} update; update skipped "
                        f"({consecutive} in a row, {nonfinite_total} in total)")
                if consecutive >= cfg.max_nonfinite_steps:
                    run.log(f"stopping: {consecutive} consecutive steps had NaN/Inf losses or gradients. Lower the "
                            f"learning rate, use --precision fp32, or resume from an earlier checkpoint in "
                            f"{cfg.checkpoint_dir()}.")
                    code = 1
                    break
            else:
                consecutive = 0
                counted += 1
                for key, value in values.items():
                    value = value.detach().float() if isinstance(value, torch.Tensor) else float(value)
                    sums[key] = sums[key] + value if key in sums else value

            if step % cfg.log_interval == 0 and run.is_main:
                now = time.perf_counter()
                rate = (step - step_last) / max(now - t_last, 1e-9)
                t_last, step_last = now, step
                means = {k: float(v) / max(counted, 1) for k, v in sums.items()}
                scalars.write(step, {**means, "speed/steps_per_second": rate,
                                     "speed/samples_per_second": rate * cfg.batch_size * run.world_size,
                                     "training/nonfinite_steps": float(nonfinite_total)})
                bar.set_postfix({k.split("/")[-1]: f"{v:.4f}" for k, v in list(means.items())[:4]})
                if bar.disable:  # no bar (a log file): a line instead
                    shown = ", ".join(f"{k.split('/')[-1]} {v:.4f}" for k, v in list(means.items())[:4])
                    run.log(f"step {step}: {shown} ({rate:.2f} steps/s)")
                sums, counted = {}, 0

            out_of_time = cfg.max_minutes > 0 and time.perf_counter() - started > 60 * cfg.max_minutes
            if info.is_distributed and cfg.max_minutes > 0:  # every rank stops with the main one
                flag = torch.tensor([float(out_of_time)], device=run.device)
                dist.broadcast(flag, 0)
                out_of_time = bool(flag.item())
            if step % cfg.save_interval == 0 or step == cfg.max_steps or out_of_time:
                save_checkpoint(run, trainer, manager, step, nonfinite_total)

            # after the save: a validation that fails loses no steps; it draws nothing from the training streams
            if step % cfg.val_interval == 0 and run.is_main:
                with rng_unchanged():
                    values = trainer.validate(run, step)
                if values:
                    scalars.write(step, values)
                    run.log(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
            if out_of_time:
                run.log(f"stopping after {cfg.max_minutes} minutes at step {step}")
                break
    finally:  # the error line of a failed run starts on a line of its own, and the logs are flushed
        bar.close()
        scalars.close()
    barrier()
    cleanup()
    return code


def user_message(error: Exception) -> str:
    """The message of a user error, also of one a data-loading worker raised: torch re-raises that as
    the same type with "Caught X in DataLoader worker ... Original Traceback" and the worker's
    traceback as its message; the original message is the traceback's closing ``module.X: message``."""
    message = str(error)
    if not (message.startswith(f"Caught {type(error).__name__} ") and "\nOriginal Traceback" in message):
        return message
    lines = message.rstrip().splitlines()
    frames = [i for i, line in enumerate(lines) if line[:1].isspace()]  # frame and code lines are indented
    name, _, text = "\n".join(lines[frames[-1] + 1:] if frames else []).partition(": ")
    return text if text and name.endswith(type(error).__qualname__) else message


def _rank0_print(message: str) -> None:
    if os.environ.get("RANK", "0") == "0":
        print(message, file=sys.stderr)


def run_main(trainer_class: type[Trainer], argv: list[str] | None = None, prog: str | None = None,
             config_class: type[RunConfig] | None = None) -> int:
    """Parse flags into the trainer's config and train. Config and data problems print one line
    (``error: ...``) and return 2."""
    try:
        cfg = parse_config(config_class or trainer_class.config_class, argv, prog=prog,
                           presets=trainer_class.presets() or None, saved_config=lambda c: c.config_path(),
                           log=_rank0_print)
        return train(trainer_class(cfg))
    except (ConfigError, *trainer_class.user_errors) as e:
        print(f"error: {user_message(e)}", file=sys.stderr)
        cleanup()
        return 2

