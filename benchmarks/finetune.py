"""Fine-tuning a trained DC-AE on another speaker group (docs/training.md, "Fine-tuning").

    python benchmarks/finetune.py --group-a SPEECH/en --group-b FRENCH/ --out /tmp/finetune
    python benchmarks/finetune.py --group-a A/ --group-b B/ --out /tmp/ft --quick     # a minute: the plumbing only

1. A tiny DC-AE is trained from scratch on group A (``train.py`` as a user runs it).
2. From its generator, three runs of the same length (``--init-from``): fine-tuned on group B with
   everything trained; on group B with ``--freeze encoder``; and, as the control, on group A again
   (as much more training, none of it on B).
3. Every model is scored on held-out clips of both groups (never trained on): mel L1 of
   decode(encode(mel)) against the mel, and that over the L1 of the group's mean training frame
   (the per-bin mean mel, a model that knows nothing of the clip), lower is better. The frozen
   encoder's latents of the held-out B clips are compared bit for bit with the starting model's.

Each group is a folder of audio files (any rate; the last ``--held-out`` files in sorted order are
held out). The figures in docs/training.md come from group A = the suite's English prompts
(``tests/data/get_speech.py``: one female US-English speaker) and group B = the Canadian-French
prompts of another speaker (Debian ``asterisk-core-sounds-fr-g722``: ``apt-get download`` it,
``dpkg -x`` it, and decode its ``.g722`` files to WAV, e.g. with ``tests/data/get_speech.py``'s
``convert``), once as they are and once through a telephone band (another recording chain):

    for f in fr/*.wav; do ffmpeg -i "$f" -af "highpass=f=300,highpass=f=300,lowpass=f=3400,lowpass=f=3400" \
        "fr_tel/$(basename "$f")"; done
    python benchmarks/finetune.py --group-a SPEECH/en --group-b fr_tel --out /tmp/ft --steps-a 1200 --steps-b 600
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine  # noqa: E402
from dcae import load_dcae  # noqa: E402
from dcae.model import trainer as train  # noqa: E402
from dcae.paths import AUDIO_EXTENSIONS  # noqa: E402
from preprocess.dataset import read_clip  # noqa: E402
from vocoder.mel import MelSpectrogram  # noqa: E402

TINY = "tiny"
CLIP = 22050 * 4  # scored clips: 4 s (cut or padded), a multiple of the 4096-sample frame


def group_files(folder: Path, held_out: int) -> tuple[list[Path], list[Path]]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    if len(files) < held_out + 20:
        sys.exit(f"error: {folder}: {len(files)} audio files; need at least {held_out + 20}")
    return files[:-held_out], files[-held_out:]


def mels(files: list[Path], mel_fn: MelSpectrogram) -> list[torch.Tensor]:
    return [mel_fn(read_clip(f, CLIP, 4096)) for f in files]  # (1, 80, T)


def run(out: Path, filelist: Path, steps: int, lr: float, warmup: int, *extra: str) -> Path:
    """One ``train.py`` run; returns its last generator."""
    args = ["--train-dataset-path", str(filelist), "--model-config-path", TINY, "--segment-samples", "16384",
            "--batch-size", "4", "--num-workers", "1", "--gen-learning-rate", str(lr),
            "--disc-learning-rate", "2e-4", "--warmup-steps", str(warmup), "--max-steps", str(steps),
            "--save-interval", str(steps), "--log-interval", str(max(1, steps // 4)),
            "--model-save-path", str(out / "ckpt"), "--log-dir", str(out / "runs"), *extra]
    started = time.perf_counter()
    if train.main(args) != 0:
        sys.exit(f"error: training in {out} failed")
    print(f"  {out.name}: {steps} steps in {time.perf_counter() - started:.0f} s", flush=True)
    return out / "ckpt" / f"generator_{steps}.pt"


@torch.no_grad()
def score(generator: Path, held: list[torch.Tensor], mean_frame: torch.Tensor) -> dict[str, float]:
    model = load_dcae(generator, TINY)
    l1 = sum(F.l1_loss(model.decode(model.encode(m)), m).item() for m in held) / len(held)
    base = sum(F.l1_loss(mean_frame.expand_as(m[0]), m[0]).item() for m in held) / len(held)
    return {"mel_l1": l1, "ratio": l1 / base}


@torch.no_grad()
def same_latents(a: Path, b: Path, held: list[torch.Tensor]) -> bool:
    first, second = load_dcae(a, TINY), load_dcae(b, TINY)
    return all(torch.equal(first.encode(m), second.encode(m)) for m in held)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--group-a", type=Path, required=True, help="folder of audio: the first speaker group")
    p.add_argument("--group-b", type=Path, required=True, help="folder of audio: the group to fine-tune on")
    p.add_argument("--out", type=Path, required=True, help="folder for the runs and results.json")
    p.add_argument("--steps-a", type=int, default=600, help="steps from scratch on group A")
    p.add_argument("--steps-b", type=int, default=300, help="steps of each fine-tuning run")
    p.add_argument("--lr-a", type=float, default=1e-2, help="generator learning rate from scratch")
    p.add_argument("--lr-b", type=float, default=2e-3, help="generator learning rate when fine-tuning")
    p.add_argument("--held-out", type=int, default=30, help="files of each group held out for scoring")
    p.add_argument("--quick", action="store_true", help="20 + 10 steps: checks the plumbing, not the learning")
    a = p.parse_args(argv)
    if a.quick:
        a.steps_a, a.steps_b = 20, 10
    torch.manual_seed(0)
    a.out.mkdir(parents=True, exist_ok=True)
    mel_fn = MelSpectrogram()
    groups = {}
    for name, folder in (("A", a.group_a), ("B", a.group_b)):
        train_files, held_files = group_files(folder, a.held_out)
        filelist = a.out / f"train_{name}.txt"
        filelist.write_text("\n".join(map(str, train_files)) + "\n")
        train_mel = torch.cat([m[0] for m in mels(train_files[:150], mel_fn)], dim=-1)  # (80, frames)
        groups[name] = dict(filelist=filelist, held=mels(held_files, mel_fn),
                            mean=train_mel.mean(dim=-1, keepdim=True), files=len(train_files))
    print(f"machine: {machine()}\ngroup A: {a.group_a} ({groups['A']['files']} training files), "
          f"group B: {a.group_b} ({groups['B']['files']}), {a.held_out} held out of each", flush=True)

    start = run(a.out / "scratch_A", groups["A"]["filelist"], a.steps_a, a.lr_a, 20)
    runs = {"trained on A": start}
    for label, folder, group, extra in (("fine-tuned on B", "finetune_B", "B", ()),
                                        ("fine-tuned on B, encoder frozen", "finetune_B_frozen", "B",
                                         ("--freeze", "encoder")),
                                        ("control: as long again on A", "more_A", "A", ())):
        runs[label] = run(a.out / folder, groups[group]["filelist"], a.steps_b, a.lr_b, 20,
                          "--init-from", str(start), *extra)
    results = {label: {g: score(path, groups[g]["held"], groups[g]["mean"]) for g in ("A", "B")}
               for label, path in runs.items()}
    frozen_same = same_latents(start, runs["fine-tuned on B, encoder frozen"], groups["B"]["held"])

    print(f"\nheld-out mel L1 (and over the group's mean-frame baseline); {a.steps_a} steps on A, then "
          f"{a.steps_b} more:\n")
    print("| model | held-out A | held-out B |\n| --- | --- | --- |")
    for label, r in results.items():
        print(f"| {label} | {r['A']['mel_l1']:.3f} ({r['A']['ratio']:.2f}) | {r['B']['mel_l1']:.3f} "
              f"({r['B']['ratio']:.2f}) |")
    print(f"\nencoder frozen: latents of the held-out B clips bit-identical to the starting model's: {frozen_same}")
    (a.out / "results.json").write_text(json.dumps(
        {"machine": machine(), "args": {k: str(v) for k, v in vars(a).items()}, "results": results,
         "frozen_latents_identical": frozen_same}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
