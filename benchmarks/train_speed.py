"""Training speed: our GAN step vs the same step written the reference trainer's way, and data loading
from long files (seek-decoding a segment) vs the reference's decode-the-whole-file.

    python benchmarks/train_speed.py                          # tiny model, CPU
    python benchmarks/train_speed.py --model-config dcae/configs/default.json --batch-size 4 \
        --segment-samples 245760 --device cuda --precision bf16   # the reference's setting on a GPU

Both steps use the same generator (our DCAEWrapper), the same batch and the same losses. The
reference side uses the reference repository's own discriminator, loss functions and Muon optimizer
(read from its mirror): two discriminator passes per update, discriminator weight gradients
computed in the generator update, the real branch kept in the graph, per-loss ``.item()`` calls.
Ours: the trainer's own step (train.gan_step through the shared harness's update): one concatenated
discriminator pass, frozen discriminator weights and a graph-free real branch in the generator
update, torch.optim.Muon. Muon's Newton-Schulz orthogonalization runs in fp32 in the reference;
ours is timed both with fp32 (the same arithmetic: the step itself) and with the default dtype
(bf16 where the CPU/GPU computes it natively, see dcae.precision.fast_matmul_dtype).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dcae import DCAEWrapper, dispersive_loss  # noqa: E402
from dcae.audio import audio_info, load_audio  # noqa: E402
from dcae.distributed import DistInfo  # noqa: E402
from dcae.model import trainer as train  # noqa: E402
from dcae.precision import cpu_capability, fast_matmul_dtype  # noqa: E402
from dcae.training import TrainingRun  # noqa: E402
from preprocess.dataset import read_segment  # noqa: E402
from tests.reference_repo import REFERENCE_REPO, import_reference_file, reference_available  # noqa: E402
from vocoder.mel import MelSpectrogram  # noqa: E402


def reference_module(path: str, folder: Path):
    return import_reference_file(path, folder)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def our_step_fn(cfg: train.TrainConfig, device: torch.device, ns_dtype: torch.dtype):
    """The trainer's step on a single-process TrainingRun (generator seeded like the reference's)."""
    run = TrainingRun(cfg, DistInfo(rank=0, local_rank=0, world_size=1, device=device))
    trainer = train.DCAETrainer(cfg)
    torch.manual_seed(0)
    trainer.build(run)
    trainer.generator.train()
    trainer.opt_g.ns_dtype = trainer.opt_d.ns_dtype = ns_dtype
    return lambda mel: train.gan_step(trainer, mel, run)


def reference_step_fn(cfg: train.TrainConfig, generator: DCAEWrapper, device: torch.device, folder: Path):
    ref_disc = reference_module("models/discriminator.py", folder)
    ref_muon = reference_module("utils/muon.py", folder)
    discriminator = ref_disc.AEDiscriminator(cfg.output_channels).to(device)
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # it prints parameter counts
        opt_g = ref_muon.get_muon_optimizer([generator], lr=cfg.gen_learning_rate)
        opt_d = ref_muon.get_muon_optimizer([discriminator], lr=cfg.disc_learning_rate)

    def step(mel: torch.Tensor):
        recon, latent = generator(mel)
        opt_d.zero_grad()
        real, fake, _, _ = discriminator(mel, recon.detach())
        loss_d, _, _ = ref_disc.discriminator_loss(real, fake)
        loss_d.backward()
        torch.nn.utils.clip_grad_norm_(discriminator.parameters(), cfg.max_grad_norm)
        opt_d.step()
        opt_g.zero_grad()
        loss_recon = F.l1_loss(recon, mel)
        loss_disp = dispersive_loss(latent)
        real, fake, fmap_real, fmap_fake = discriminator(mel, recon)
        loss_fm = ref_disc.feature_loss(fmap_real, fmap_fake)
        loss_adv, _ = ref_disc.generator_loss(fake)
        loss_g = loss_adv + loss_fm + loss_recon * cfg.recon_loss_factor + loss_disp * cfg.disp_loss_factor
        loss_g.backward()
        torch.nn.utils.clip_grad_norm_(generator.parameters(), cfg.max_grad_norm)
        opt_g.step()
        for value in (loss_g, loss_fm, loss_adv, loss_d, loss_recon, loss_disp):  # the reference logs .item()s
            value.item()

    return step


def time_steps(step, mel: torch.Tensor, n: int, device: torch.device) -> list[float]:
    times = []
    for _ in range(n):
        synchronize(device)
        t = time.perf_counter()
        step(mel)
        synchronize(device)
        times.append(time.perf_counter() - t)
    return times


def bench_steps(args, folder: Path) -> None:
    device = torch.device(args.device)
    cfg = train.TrainConfig(model_config_path=args.model_config, batch_size=args.batch_size,
                            segment_samples=args.segment_samples, precision=args.precision, device=str(device))
    mel_fn = MelSpectrogram().to(device)
    torch.manual_seed(0)
    mel = mel_fn(0.1 * torch.randn(args.batch_size, args.segment_samples, device=device))
    default_ns = fast_matmul_dtype(device)
    steps = {"ours, NS fp32": our_step_fn(cfg, device, torch.float32)}
    if default_ns != torch.float32:
        steps[f"ours, NS {str(default_ns).replace('torch.', '')}"] = our_step_fn(cfg, device, default_ns)
    torch.manual_seed(0)
    steps["reference"] = reference_step_fn(cfg, DCAEWrapper(args.model_config).to(device).train(), device, folder)
    for step in steps.values():
        time_steps(step, mel, args.warmup, device)
    times = {name: [] for name in steps}
    for _ in range(args.rounds):  # interleaved rounds: load changes on a shared machine hit both
        for name in times:
            times[name] += time_steps(steps[name], mel, args.steps, device)
    audio_seconds = args.batch_size * args.segment_samples / 22050
    print(f"\n== training step: {Path(args.model_config).name}, batch {args.batch_size} x {args.segment_samples} samples "
          f"({audio_seconds:.2f} s audio), {device} (CPU capability {cpu_capability()}), ours in precision "
          f"{args.precision}; median of {args.rounds * args.steps} steps")
    median = {k: statistics.median(v) for k, v in times.items()}
    for name, t in median.items():
        ratio = "" if name == "reference" else f"  {median['reference'] / t:.2f}x the reference"
        print(f"{name:>18}: {1 / t:7.3f} steps/s  {audio_seconds / t:8.2f} audio-s/s  ({t * 1000:.0f} ms/step){ratio}")


def write_tone(path: Path, seconds: float, sample_rate: int) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    data = 0.2 * np.sin(2 * np.pi * 180 * t) + 0.02 * rng.standard_normal(t.size)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes((data * 32767).astype(np.int16).tobytes())
    return path


def reference_load(path: Path, segment_samples: int) -> torch.Tensor:
    """The reference's way: decode (and resample) the whole file, then cut a random window."""
    audio = load_audio(path, 22050)
    start = np.random.randint(0, max(1, audio.numel() - segment_samples))
    return audio[start:start + segment_samples]


def bench_loading(args, folder: Path) -> None:
    rate = 44100  # a common corpus rate: both sides resample to 22050 Hz
    files = {"5 s": write_tone(folder / "short.wav", 5, rate),
             f"{args.long_minutes:g} min": write_tone(folder / "long.wav", args.long_minutes * 60, rate)}
    segment = args.load_segment_samples
    torch.set_num_threads(1)  # as in DataLoader worker processes
    print(f"\n== data loading: one random {segment}-sample segment (22050 Hz) from a {rate} Hz WAV, per sample")
    for label, path in files.items():
        duration = audio_info(path).duration  # the dataset reads each header once and keeps it
        loaders = {"ours (seek)": lambda: read_segment(path, segment, duration=duration),
                   "reference (whole file)": lambda: reference_load(path, segment)}
        times: dict[str, list[float]] = {name: [] for name in loaders}
        for _ in range(args.load_repeats):  # interleaved, so load changes on a shared machine hit both
            for name, fn in loaders.items():
                t = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t)
        row = {name: statistics.median(v) for name, v in times.items()}
        ratio = row["reference (whole file)"] / row["ours (seek)"]
        print(f"{label:>8}: " + "  ".join(f"{k} {v * 1000:8.1f} ms" for k, v in row.items()) + f"  -> {ratio:.1f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-config", default=str(REPO / "dcae" / "configs" / "tiny.json"))
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--segment-samples", type=int, default=16384)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="fp32",
                   help="autocast of our step (the reference step runs in fp32)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per round and side")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--long-minutes", type=float, default=10.0)
    p.add_argument("--load-segment-samples", type=int, default=256 * 16 * 60)
    p.add_argument("--load-repeats", type=int, default=20)
    p.add_argument("--skip-steps", action="store_true")
    p.add_argument("--skip-loading", action="store_true")
    args = p.parse_args()
    if not reference_available() and not args.skip_steps:
        sys.exit(f"error: {REFERENCE_REPO}: reference mirror not found (needed for the reference step)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_steps:
            bench_steps(args, Path(tmp))
        if not args.skip_loading:
            bench_loading(args, Path(tmp))


if __name__ == "__main__":
    main()
