"""``dcae tts --list LIST -o DIR``: a Seed-TTS-eval test list synthesised line by line on recorded speech, with
the tiny two-stage pair of tests/tts/token_lm/test_e2e.py (FSQ tokens), a one-stage run and a token LM
with the learnable speaker encoder trained a few steps on the same corpus.

What must hold: one ``DIR/<id>.wav`` per good line at 22.05 kHz with the length the model's rule allows;
bad lines named (``error: LIST:LINE (id): reason``), listed in ``failed.jsonl`` and exit 1 while the good
ones are written; resuming redoes only the missing lines and gives the same bytes (each line's seed comes
from --seed and its id, not its position); another folder's settings and misused flags refused in one line.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from dcae.cli import main as dcae_main
from dcae.corpus import read_manifest
from tests.conftest import TINY_CONFIG, text_from_name
from tests.tts.token_lm.test_e2e import two_stage  # noqa: F401 - the recorded-speech corpus and runs
from tests.tts_runs import one_line_error
from tts.batch_synthesis import VOICES, line_seed
from tts.run import load_run
from tts.token_flow.length_regulator import frames_for_tokens
from tts.train import main as train_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SAMPLES_PER_FRAME = 256 * 16
TEXTS = ["agent logged on", "all circuits are busy now", "please try your call again later", "goodbye"]
SUMMARY = re.compile(r"(\d+) lines? synthesised, (\d+) skipped \(already there\), (\d+) failed -> (.+)$", re.M)


@pytest.fixture(scope="module")
def prompts(two_stage) -> list[Path]:  # noqa: F811
    return [Path(row["audio_path"]) for row in read_manifest(two_stage["manifest"])]


@pytest.fixture(scope="module")
def model_flags(tiny_generator, small_vocoder) -> list[str]:
    return ["--ae-model", str(tiny_generator), "--ae-config", str(TINY_CONFIG), "--vocoder", str(small_vocoder),
            "--device", "cpu"]


def write_list(path: Path, prompts: list[Path], texts: list[str] = TEXTS, extra: str = "") -> Path:
    """A test list in the list's folder: prompt paths relative to it where they can be (absolute here)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"utt{i}|{text_from_name(p)}|{p}|{t}\n" for i, (p, t) in enumerate(zip(prompts, texts)))
                    + extra)
    return path


def tts(*args: str):
    return CliRunner().invoke(dcae_main, ["tts", *args], catch_exceptions=False)


def summary(result) -> tuple[int, int, int, str]:
    found = SUMMARY.search(result.output)
    assert found, result.output
    return int(found[1]), int(found[2]), int(found[3]), found[4]


def two_stage_args(runs, out: Path, listing: Path, *more: str) -> list[str]:
    return ["--checkpoint", str(runs["lm"]), "--flow", str(runs["flow"]), "--list", str(listing), "-o", str(out),
            "--tokenizer", str(runs["fsq"]), "--steps", "2", *more]


def test_two_stage_prompt_voice_writes_one_wav_per_line(two_stage, prompts, model_flags, tmp_path):  # noqa: F811
    listing = write_list(tmp_path / "lists" / "test.lst", prompts[:3], TEXTS[:3])
    out = tmp_path / "out"
    result = tts(*two_stage_args(two_stage, out, listing, "--seed", "3"), *model_flags)
    assert result.exit_code == 0, result.output
    assert summary(result) == (3, 0, 0, str(out))
    lm = load_run(two_stage["lm"])
    low, high = lm.latent_info["min_len_ratio"], lm.latent_info["max_len_ratio"]
    for i, text in enumerate(TEXTS[:3]):
        audio, rate = sf.read(out / f"utt{i}.wav")
        assert rate == 22050 and audio.ndim == 1 and np.isfinite(audio).all()
        frames = len(audio) / SAMPLES_PER_FRAME
        ids = len(lm.frontend.encode(text))  # the LM's length rule bounds the tokens, the tokens the frames
        assert frames == int(frames) and 1 <= frames <= frames_for_tokens(int(high * ids) + 1, 4.0), (text, frames)
        assert frames >= frames_for_tokens(max(0, int(low * ids) - 1), 4.0)
    recorded = json.loads((out / "synthesis.json").read_text())
    assert recorded["list_voice"] == "prompt" and recorded["seed"] == 3 and recorded["steps"] == 2
    assert recorded["checkpoint"] == str(two_stage["lm"].resolve()) and recorded["step"] == lm.step
    assert recorded["flow"] == str(two_stage["flow"].resolve()) and recorded["tokenizer"] == str(two_stage["fsq"].resolve())
    assert not (out / "failed.jsonl").exists()
    assert sorted(p.name for p in out.iterdir()) == ["synthesis.json", "utt0.wav", "utt1.wav", "utt2.wav"]


def test_resumed_run_equals_an_uninterrupted_one(two_stage, prompts, model_flags, tmp_path):  # noqa: F811
    """Four lines; two outputs deleted (a run stopped midway) and the command run again: only those two
    are made, bit for bit the same, and the two kept are not rewritten. The same lines in another order
    into another folder: the same audio per id (the seed follows the id, not the position)."""
    listing = write_list(tmp_path / "test.lst", prompts[:4])
    out = tmp_path / "out"
    result = tts(*two_stage_args(two_stage, out, listing), *model_flags)
    assert result.exit_code == 0, result.output
    first = {i: (out / f"utt{i}.wav").read_bytes() for i in range(4)}
    assert len(set(first.values())) == 4  # four different lines
    (out / "utt1.wav").unlink()
    (out / "utt3.wav").unlink()
    kept = {i: (out / f"utt{i}.wav").stat().st_mtime_ns for i in (0, 2)}
    result = tts(*two_stage_args(two_stage, out, listing), *model_flags)
    assert result.exit_code == 0, result.output
    assert summary(result)[:3] == (2, 2, 0)
    assert {i: (out / f"utt{i}.wav").read_bytes() for i in range(4)} == first
    assert {i: (out / f"utt{i}.wav").stat().st_mtime_ns for i in (0, 2)} == kept
    # everything there: nothing to do, and the decoder is not even needed
    result = tts(*two_stage_args(two_stage, out, listing), *model_flags)
    assert result.exit_code == 0 and summary(result)[:3] == (0, 4, 0), result.output
    # another order (line 3 first): the same bytes for the same ids
    lines = listing.read_text().splitlines()
    reordered = tmp_path / "reordered.lst"
    reordered.write_text("\n".join([lines[3], lines[0]]) + "\n")
    result = tts(*two_stage_args(two_stage, tmp_path / "other", reordered), *model_flags)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "other" / "utt3.wav").read_bytes() == first[3]
    assert (tmp_path / "other" / "utt0.wav").read_bytes() == first[0]


def test_line_seeds_follow_the_id_and_the_seed():
    assert line_seed(0, "utt1") == line_seed(0, "utt1")  # no per-process hash salt
    assert len({line_seed(0, "utt1"), line_seed(0, "utt2"), line_seed(1, "utt1")}) == 3
    assert 0 <= line_seed(123, "x" * 500) < 2 ** 31
    from dcae.cli.tts import LIST_VOICES

    assert LIST_VOICES == VOICES


def test_bad_lines_are_named_and_the_others_written(two_stage, prompts, model_flags, tmp_path):  # noqa: F811
    silent, broken = tmp_path / "silent.wav", tmp_path / "broken.wav"
    sf.write(silent, np.zeros(22050, dtype=np.float32), 22050)
    broken.write_text("not audio")
    listing = write_list(tmp_path / "test.lst", prompts[:2], TEXTS[:2], extra=(
        "three|fields|only\n"                              # line 3
        f"quiet|hello there|{silent}|say something\n"      # line 4: silent prompt
        f"junk|hello there|{broken}|say something\n"       # line 5: not audio
        "gone|hello there|nowhere.wav|say something\n"     # line 6: no prompt file
        f"utt0|again|{prompts[0]}|repeated id\n"))          # line 7
    out = tmp_path / "out"
    result = tts(*two_stage_args(two_stage, out, listing), *model_flags)
    assert result.exit_code == 1, result.output
    assert summary(result)[:3] == (2, 0, 5)
    assert (out / "utt0.wav").is_file() and (out / "utt1.wav").is_file()
    assert not any((out / f"{name}.wav").exists() for name in ("quiet", "junk", "gone"))
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 5, result.output
    for lineno, utt, reason in ((3, "three", "3 fields"), (4, "quiet", "silent"), (5, "junk", "broken.wav"),
                                (6, "gone", "not found"), (7, "utt0", "repeated")):
        prefix = f"error: {listing}:{lineno}" + (f" ({utt})" if utt else "") + ": "
        assert any(e.startswith(prefix) and reason in e for e in errors), (prefix, reason, errors)
    failed = [json.loads(line) for line in (out / "failed.jsonl").read_text().splitlines()]
    assert [row["line"] for row in failed] == [3, 4, 5, 6, 7]
    assert failed[1]["id"] == "quiet" and "silent" in failed[1]["reason"]
    # the good lines are there now: a rerun skips them and names the same failures again
    result = tts(*two_stage_args(two_stage, out, listing), *model_flags)
    assert result.exit_code == 1 and summary(result)[:3] == (0, 2, 5), result.output


def test_other_settings_in_the_folder_are_refused(two_stage, prompts, model_flags, tmp_path):  # noqa: F811
    listing = write_list(tmp_path / "test.lst", prompts[:1], TEXTS[:1])
    out = tmp_path / "out"
    assert tts(*two_stage_args(two_stage, out, listing), *model_flags).exit_code == 0
    before = (out / "utt0.wav").read_bytes()
    result = tts(*two_stage_args(two_stage, out, listing, "--seed", "7"), *model_flags)
    one_line_error(result, str(out), "seed: 0, now 7", "another -o folder")
    result = tts(*two_stage_args(two_stage, out, listing, "--top-k", "5"), *model_flags)
    one_line_error(result, "lm_sampling")
    assert (out / "utt0.wav").read_bytes() == before
    # audio in the folder but no synthesis.json: settings unknown, refused too
    (out / "synthesis.json").unlink()
    one_line_error(tts(*two_stage_args(two_stage, out, listing), *model_flags), "utt0.wav", "no synthesis.json")


def test_one_stage_run_in_the_prompt_voice(two_stage, prompts, model_flags, tmp_path):  # noqa: F811
    run = tmp_path / "ar"
    assert train_main(["--model", "ar", "--manifest", str(two_stage["manifest"]), "--output-dir", str(run),
                       "--preset", "tiny", "--max-steps", "5", "--save-interval", "5", "--batch-size", "8",
                       "--cpu-threads", "1", "--precision", "fp32"]) == 0
    listing = write_list(tmp_path / "test.lst", prompts[:2], TEXTS[:2])
    out = tmp_path / "out"
    result = tts("--checkpoint", str(run), "--list", str(listing), "-o", str(out), "--steps", "2", "--max-frames",
                 "12", *model_flags)
    assert result.exit_code == 0, result.output
    assert summary(result)[:3] == (2, 0, 0)
    for i in range(2):
        audio, rate = sf.read(out / f"utt{i}.wav")
        assert rate == 22050 and len(audio) % SAMPLES_PER_FRAME == 0
        assert 1 <= len(audio) // SAMPLES_PER_FRAME <= 12
    recorded = json.loads((out / "synthesis.json").read_text())
    assert recorded["flow"] is None and recorded["max_frames"] == 12 and recorded["tokenizer"] is None
    # a one-stage run has no speaker encoder: no reference voice, and no tokenizer
    one_line_error(tts("--checkpoint", str(run), "--list", str(listing), "-o", str(tmp_path / "ref"),
                       "--list-voice", "reference", *model_flags), "--speaker-encoder learnable", "--list-voice prompt")
    one_line_error(tts("--checkpoint", str(run), "--list", str(listing), "-o", str(tmp_path / "tok"),
                       "--tokenizer", str(two_stage["fsq"]), *model_flags), "--tokenizer")


def test_reference_voice_with_a_learnable_speaker_encoder(two_stage, prompts, model_flags, tmp_path):  # noqa: F811
    """A token LM trained a few steps with --speaker-encoder learnable reads each line's prompt audio as a
    reference (no transcript: an empty prompt_text is fine); the pair without an encoder refuses."""
    lm = tmp_path / "lm-spk"
    assert train_main(["--model", "token-lm", "--manifest", str(two_stage["manifest"]), "--output-dir", str(lm),
                       "--preset", "tiny", "--max-steps", "5", "--save-interval", "5", "--batch-size", "8",
                       "--cpu-threads", "1", "--precision", "fp32", "--speaker-encoder", "learnable"]) == 0
    listing = tmp_path / "test.lst"
    listing.write_text(f"a||{prompts[0]}|{TEXTS[0]}\nb|{text_from_name(prompts[1])}|{prompts[1]}|{TEXTS[1]}\n")
    out = tmp_path / "out"
    args = ["--checkpoint", str(lm), "--flow", str(two_stage["flow"]), "--list", str(listing), "-o", str(out),
            "--list-voice", "reference", "--steps", "2", *model_flags]
    result = tts(*args)
    assert result.exit_code == 0, result.output
    assert summary(result)[:3] == (2, 0, 0)
    for name in ("a", "b"):
        audio, rate = sf.read(out / f"{name}.wav")
        assert rate == 22050 and len(audio) >= SAMPLES_PER_FRAME and len(audio) % SAMPLES_PER_FRAME == 0
    assert json.loads((out / "synthesis.json").read_text())["list_voice"] == "reference"
    # the same list in the prompt voice: the empty transcript is a failed line, the other one is made
    result = tts("--checkpoint", str(lm), "--flow", str(two_stage["flow"]), "--list", str(listing), "-o",
                 str(tmp_path / "prompted"), "--tokenizer", str(two_stage["fsq"]), "--steps", "2", *model_flags)
    assert result.exit_code == 1 and summary(result)[:3] == (1, 0, 1), result.output
    assert f"error: {listing}:1 (a): empty prompt_text" in result.output
    # neither run of the plain pair has the encoder: refused before any line
    result = tts("--checkpoint", str(two_stage["lm"]), "--flow", str(two_stage["flow"]), "--list", str(listing),
                 "-o", str(tmp_path / "plain"), "--list-voice", "reference", *model_flags)
    one_line_error(result, "--speaker-encoder learnable")
    assert not (tmp_path / "plain").exists()


@pytest.mark.parametrize("extra, fragments", [
    ([], ["--list needs -o DIR"]),
    (["-o", "out.wav"], ["-o out.wav", "folder"]),
    (["-o", "OUT", "--text", "hi"], ["--text", "without --list only"]),
    (["-o", "OUT", "--out-latent", "x.safetensors"], ["--out-latent", "without --list only"]),
    (["-o", "OUT", "--stream"], ["--stream", "without --list only"]),
    (["-o", "OUT", "--prompt-text", "hi"], ["--prompt-text", "without --list only"]),
    (["-o", "OUT", "--speaker-audio", "x.wav"], ["--speaker-audio", "without --list only"]),
    (["-o", "OUT", "--lookahead", "1"], ["--lookahead"]),
])
def test_usage_refused_in_one_line_before_loading_a_run(extra, fragments, tmp_path):
    """The run folder does not exist: these are refused before it is read."""
    listing = tmp_path / "test.lst"
    listing.write_text("u|t|p.wav|x\n")
    extra = [str(tmp_path / "OUT") if a == "OUT" else a for a in extra]
    result = tts("--checkpoint", str(tmp_path / "no-run"), "--list", str(listing), *extra)
    one_line_error(result, *fragments)


def test_usage_refused_for_the_run_kind(two_stage, tmp_path):  # noqa: F811
    listing = tmp_path / "test.lst"
    listing.write_text("u|t|p.wav|x\n")
    out = ["-o", str(tmp_path / "out")]
    one_line_error(tts("--checkpoint", str(two_stage["flow"]), "--list", str(listing), *out),
                   "a token-flow run speaks speech tokens", "--flow")
    one_line_error(tts("--checkpoint", str(two_stage["lm"]), "--list", str(listing), *out), "give --flow FLOW_RUN")
    one_line_error(tts("--checkpoint", str(two_stage["lm"]), "--flow", str(two_stage["flow"]), "--list",
                       str(listing), *out), "--tokenizer FSQ_RUN")
    one_line_error(tts("--checkpoint", str(two_stage["lm"]), "--flow", str(two_stage["flow"]), "--list", str(listing),
                       "--list-voice", "reference", "--tokenizer", str(two_stage["fsq"]), *out), "--tokenizer")
    one_line_error(tts("--checkpoint", str(two_stage["lm"]), "--text", "hi", "--list-voice", "reference",
                       "--out-tokens", str(tmp_path / "t.safetensors")), "--list-voice", "with --list only")
    one_line_error(tts("--checkpoint", str(two_stage["lm"]), "--list", str(tmp_path / "missing.lst"), *out),
                   "missing.lst", "cannot read the test list")
    assert not (tmp_path / "out").exists()
