"""The FSQ tokenizer trains on real speech through the shared harness (``python -m tts.train --model
fsq-tokenizer``): the loss falls in a few seconds, a crashed run resumes exactly, a finished run
continues to more steps, the run folder loads as a tokenizer. The slow test (``-m slow``) trains the
tiny preset for a few CPU minutes and reports, on held-out clips, the reconstruction mel L1 against
the trivial per-bin-mean baseline, and codebook usage (the harness's validation and an independent
recomputation from the saved run folder)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dcae.audio import load_audio
from dcae.precision import resolve_precision
from dcae.training.scalars import read_metrics
from tests.conftest import REPO
from tts import train as tts_train
from tts.tokenizers import FSQTokenizer, codebook_usage, load_fsq_tokenizer, load_tokenizer
from tts.trainers.fsq_tokenizer import FSQTokenizerTrainer, valid_frames
from vocoder.mel import MelSpectrogram

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_filelist(path: Path, files: list[Path]) -> Path:
    path.write_text("".join(f"{f}\n" for f in files))
    return path


def split(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """(train, held-out): every 10th clip of the sorted list is held out."""
    files = sorted(files)
    return [f for i, f in enumerate(files) if i % 10], [f for i, f in enumerate(files) if not i % 10]


@pytest.fixture
def small_filelist(speech_files, tmp_path) -> Path:
    """10 of the 16 kHz prompts."""
    return write_filelist(tmp_path / "train.txt", sorted(f for f in speech_files if f.parent.name == "en")[:40:4])


def train(filelist: Path, out: Path, *extra: str) -> int:
    return tts_train.main(["--model", "fsq-tokenizer", "--filelist", str(filelist), "--output-dir", str(out),
                           "--preset", "tiny", "--num-workers", "0", "--cpu-threads", "1", "--log-interval", "1", *extra])


def train_rows(run: Path) -> dict[int, dict]:
    """metrics.jsonl training rows by step (validation rows left out)."""
    return {r["step"]: r for r in read_metrics(run / "metrics.jsonl") if "train/loss" in r}


def without_speed(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("speed/")}


def test_loss_falls_in_a_few_seconds(small_filelist, tmp_path):
    run = tmp_path / "run"
    assert train(small_filelist, run, "--max-steps", "40", "--batch-size", "8", "--segment-frames", "64",
                 "--warmup-steps", "10", "--save-interval", "40") == 0
    losses = [train_rows(run)[s]["train/loss"] for s in range(1, 41)]
    first, last = sum(losses[:3]) / 3, sum(losses[-5:]) / 5
    assert last < 0.7 * first, losses
    # the run folder is a tokenizer: its weights are the last checkpoint's, its tokens have the promised count
    tok = load_tokenizer(run)
    assert isinstance(tok, FSQTokenizer) and json.loads((run / "fsq_tokenizer.json").read_text())["extra"]["step"] == 40
    state = torch.load(run / "checkpoints" / "model_40.pt", weights_only=True)
    assert all(torch.equal(state[k], v) for k, v in load_file(run / "fsq_tokenizer.safetensors").items())
    audio = load_audio(small_filelist.read_text().split()[0], None)
    (tokens,) = tok.tokenize(audio, 16000)
    assert tokens.numel() == tok.num_tokens(audio.numel(), 16000) > 0


def test_crashed_run_resumes_exactly(small_filelist, tmp_path, monkeypatch, capsys):
    """Stopped by an exception in step 5 (after the step-4 checkpoint set), then rerun: every step's
    logged values and the final weights equal an uninterrupted run's."""
    args = ("--max-steps", "6", "--save-interval", "2", "--batch-size", "4", "--segment-frames", "32",
            "--warmup-steps", "2")
    assert train(small_filelist, tmp_path / "clean", *args) == 0

    class Crash(Exception):
        pass

    original = FSQTokenizerTrainer.train_step

    def crash_at_step_5(self, batch, run):
        if run.step == 4:
            raise Crash
        return original(self, batch, run)

    monkeypatch.setattr(FSQTokenizerTrainer, "train_step", crash_at_step_5)
    with pytest.raises(Crash):
        train(small_filelist, tmp_path / "killed", *args)
    monkeypatch.setattr(FSQTokenizerTrainer, "train_step", original)
    assert sorted(train_rows(tmp_path / "killed")) == [1, 2, 3, 4]
    capsys.readouterr()
    assert train(small_filelist, tmp_path / "killed", *args) == 0
    captured = capsys.readouterr()
    assert "resumed from step 4" in captured.out + captured.err
    clean, killed = train_rows(tmp_path / "clean"), train_rows(tmp_path / "killed")
    assert sorted(clean) == sorted(killed) == [1, 2, 3, 4, 5, 6]
    for step in clean:
        assert without_speed(clean[step]) == without_speed(killed[step]), step
    a = load_file(tmp_path / "clean" / "fsq_tokenizer.safetensors")
    b = load_file(tmp_path / "killed" / "fsq_tokenizer.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_finished_run_continues_to_more_steps(small_filelist, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(small_filelist, run, "--max-steps", "4", "--save-interval", "2", "--batch-size", "4",
                 "--segment-frames", "32") == 0
    after_4 = load_fsq_tokenizer(run).state_dict()
    capsys.readouterr()
    # only the run folder and the new limit: the rest comes from the run's saved config.json
    assert tts_train.main(["--model", "fsq-tokenizer", "--output-dir", str(run), "--max-steps", "6",
                           "--num-workers", "0"]) == 0
    captured = capsys.readouterr()
    assert "resumed from step 4" in captured.out and "continuing the run's saved config" in captured.err
    assert sorted(train_rows(run)) == [1, 2, 3, 4, 5, 6]
    config = json.loads((run / "config.json").read_text())
    assert config["max_steps"] == 6 and config["channels"] == 64 and config["segment_frames"] == 32
    info = json.loads((run / "fsq_tokenizer.json").read_text())
    assert info["extra"]["step"] == 6 and info["config"]["levels"] == [8, 5, 5, 5]
    after_6 = load_fsq_tokenizer(run).state_dict()
    assert any(not torch.equal(after_4[k], after_6[k]) for k in after_4)  # it trained on


@pytest.mark.parametrize("flags, message", [
    (["--filelist", "/nonexistent/train.txt"], "--filelist: /nonexistent/train.txt: filelist not found"),
    (["--mel-frames-per-token", "3"], "mel_frames_per_token must divide 16"),
    (["--levels", "[8,2]"], "levels must be a non-empty list of integers >= 3"),
    (["--segment-frames", "2"], "--segment-frames: must be at least --mel-frames-per-token (4)"),
])
def test_bad_options_are_one_line(flags, message, small_filelist, tmp_path, capsys):
    argv = ["--model", "fsq-tokenizer", "--filelist", str(small_filelist), "--output-dir", str(tmp_path / "r"), *flags]
    assert tts_train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err


def test_padding_of_short_files_is_masked():
    # a short file (300 samples) zero-padded by the dataset: ceil(300 / 256) = 2 frames; a full window;
    # nothing read: one frame, never zero
    assert valid_frames(torch.tensor([300, 1000, 0]), 256).tolist() == [2, 4, 1]


def test_silent_tail_of_a_short_file_is_audio_not_padding(tmp_path, monkeypatch):
    """Only the dataset's zero padding is masked: a file's own digital silence (exact zeros) is trained on."""
    import soundfile as sf

    audio = torch.zeros(4096)  # 16 mel frames, shorter than the 32-frame window
    audio[:1000] = 0.3 * torch.sin(torch.arange(1000) / 5)  # then 3096 samples of exact silence
    sf.write(tmp_path / "short.wav", audio.numpy(), 22050, subtype="FLOAT")
    seen = []
    original = FSQTokenizer.forward

    def recording(self, mel, lengths=None):
        seen.append(lengths.tolist())
        return original(self, mel, lengths)

    monkeypatch.setattr(FSQTokenizer, "forward", recording)
    filelist = write_filelist(tmp_path / "train.txt", [tmp_path / "short.wav"])
    assert train(filelist, tmp_path / "run", "--max-steps", "1", "--batch-size", "1", "--segment-frames", "32",
                 "--save-interval", "1") == 0
    assert seen == [[16]]


# --------------------------------------------------------------------------- slow: does it learn?
def load_mels(files: list[Path]) -> list[torch.Tensor]:
    mel = MelSpectrogram()
    with torch.inference_mode():
        return [mel(load_audio(f))[0] for f in files]


def held_out_figures(model: FSQTokenizer, held_out: list[torch.Tensor]) -> dict:
    """Mel L1 (log-mel units) of whole held-out clips through the tokens and of the per-bin mean of those
    same mels (the trivial baseline), and codebook usage."""
    bin_mean = torch.cat(held_out, -1).mean(-1, keepdim=True)  # (80, 1)
    err = base = count = 0.0
    tokens = []
    with torch.inference_mode():
        for mel in held_out:
            err += (model.reconstruct(mel[None])[0] - mel).abs().sum().item()
            base += (bin_mean - mel).abs().sum().item()
            count += mel.numel()
            tokens.append(model.encode(mel[None])[0])
    return {"mel_l1": err / count, "baseline_mel_l1": base / count,
            "usage": codebook_usage(tokens, model.codebook_size), "frames": int(count // 80)}


@pytest.mark.slow
def test_tiny_fsq_learns_real_speech(speech_files, tmp_path):
    train_files, held_files = split(speech_files)
    run = tmp_path / "run"
    steps = 3000
    cmd = [sys.executable, "-m", "tts.train", "--model", "fsq-tokenizer", "--preset", "tiny",
           "--filelist", str(write_filelist(tmp_path / "train.txt", train_files)),
           "--val-filelist", str(write_filelist(tmp_path / "held.txt", held_files)), "--val-num-clips", "1000",
           "--val-max-seconds", "120", "--output-dir", str(run), "--max-steps", str(steps), "--warmup-steps", "50",
           "--val-interval", str(steps), "--save-interval", "1000", "--log-interval", "100", "--cpu-threads", "1"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600)
    train_s = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_metrics(run / "metrics.jsonl")
    logged = next(r for r in rows if r["step"] == steps and "validation/mel_l1" in r)
    losses = [r["train/mel_l1"] for r in rows if "train/mel_l1" in r]
    model = load_tokenizer(run)  # the run folder's inference files, written after the last checkpoint set
    fig = held_out_figures(model, load_mels(held_files))
    precision = resolve_precision(json.loads((run / "config.json").read_text())["precision"], torch.device("cpu"))
    print(f"\nFSQ tiny ({sum(p.numel() for p in model.parameters())} parameters, {model.codebook_size} codes, "
          f"{model.token_rate:.2f} tokens/s) through python -m tts.train: {steps} steps of 16 x 128 frames in "
          f"{train_s:.0f} s (1 torch thread + 2 decoding workers, precision {precision}, "
          f"{torch.backends.cpu.get_cpu_capability()}); train mel L1 {losses[0]:.3f} -> {losses[-1]:.3f} "
          f"(means over 100 steps)")
    print(f"harness validation ({len(held_files)} held-out clips): mel L1 {logged['validation/mel_l1']:.3f} vs "
          f"baseline {logged['validation/baseline_mel_l1']:.3f} ({logged['validation/mel_l1_ratio']:.2f}x); "
          f"{int(logged['validation/codes_used'])} codes used, perplexity {logged['validation/perplexity']:.1f}")
    print(f"recomputed from the run folder ({fig['frames']} frames): mel L1 {fig['mel_l1']:.3f} vs per-bin-mean "
          f"baseline {fig['baseline_mel_l1']:.3f} ({fig['mel_l1'] / fig['baseline_mel_l1']:.2f}x); {fig['usage']}")
    assert fig["mel_l1"] < 0.6 * fig["baseline_mel_l1"]
    assert fig["usage"].codes_used >= 50
    # the harness scored the same clips (whole, up to 120 s, cut to whole tokens) with the same weights
    assert logged["validation/mel_l1"] == pytest.approx(fig["mel_l1"], rel=0.05)
    assert logged["validation/codes_used"] == pytest.approx(fig["usage"].codes_used, rel=0.05)
