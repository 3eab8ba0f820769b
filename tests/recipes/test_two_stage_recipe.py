"""recipes/two_stage/run.sh: the settings scheme (defaults < --config file < --name value flags, unknown
flags refused) in the default suite; the whole recipe on recorded speech with the CPU smoke config
(slow): corpus -> filelists and test list -> latents -> FSQ tokens -> speaker embeddings -> token LM ->
token flow -> synthesis of the test list -> scores, run as stages 0-3 then 4-7, and a rerun of every
finished stage that redoes nothing."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf

from tests.conftest import REPO, TINY_CONFIG, text_from_name

RECIPE = REPO / "recipes" / "two_stage"
RUN = RECIPE / "run.sh"
SMOKE = RECIPE / "conf" / "smoke.sh"


def recipe(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """run.sh with this interpreter's environment first on PATH (its dcae and python)."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(["bash", str(RUN), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def settings(help_text: str) -> dict[str, str]:
    """--help's settings table: flag name -> value now."""
    rows = re.findall(r"^  --([a-z-]+) +(\S+)", help_text, flags=re.M)
    return {name: value for name, value in rows}


# ---------------------------------------------------------------- default suite: fast
def test_script_parses_and_help_lists_every_setting():
    assert subprocess.run(["bash", "-n", str(RUN)], capture_output=True).returncode == 0
    assert subprocess.run(["bash", "-n", str(SMOKE)], capture_output=True).returncode == 0
    result = recipe("--help", cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "--stage N" in result.stdout and "stage by stage" in result.stdout
    table = settings(result.stdout)
    defaults = re.findall(r"^([a-z_]+)=", RUN.read_text().split("# ---- settings")[1].split("# ---- end")[0],
                          flags=re.M)
    assert len(defaults) > 20 and {name.replace("_", "-") for name in defaults} <= set(table)
    assert table["stage"] == "0" and table["stop-stage"] == "7" and table["tokenizer"] == "s3"
    assert table["corpus"] == '""'


def test_config_file_then_flags_override_the_defaults(tmp_path):
    conf = tmp_path / "mine.sh"
    conf.write_text("preset=tiny\nlm_steps=7\nexp=from/config\n")
    # the flags win over the file wherever --config stands; --stop_stage and --stop-stage are one setting
    result = recipe("--lm-steps=9", "--config", str(conf), "--stop_stage", "5", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    table = settings(result.stdout)
    assert (table["preset"], table["lm-steps"], table["exp"], table["stop-stage"]) == ("tiny", "9", "from/config", "5")
    smoke = settings(recipe("--config", str(SMOKE), "--help", cwd=tmp_path).stdout)
    assert (smoke["device"], smoke["threads"], smoke["preset"], smoke["tokenizer"]) == ("cpu", "1", "tiny", "fsq")


@pytest.mark.parametrize("args, fragment", [
    (["--no-such-setting", "1"], "unknown option --no-such-setting"),
    (["--stage"], "--stage needs a value"),
    (["--stage", "5", "--stop-stage", "2"], "--stage 5 is after --stop-stage 2"),
    (["--stage", "9"], "--stage must be 0-7"),
    (["--html", "yes"], "--html must be true or false"),
    (["stray"], "unexpected argument 'stray'"),
    (["--config", "no/such/file.sh"], "--config no/such/file.sh: no such file"),
    (["--stop-stage", "0"], "--corpus: give the audio folder(s) to scan"),
])
def test_bad_command_lines_are_refused_in_one_line(tmp_path, args, fragment):
    result = recipe("--exp", str(tmp_path / "exp"), *args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("run.sh: error: ") and fragment in errors[0], result.stderr


# ---------------------------------------------------------------- the whole recipe (slow)
def make_corpus(root: Path, speech_dir: Path) -> Path:
    """ROOT/alsa/*.wav (8 clips, one male speaker) and ROOT/en/*.wav (24 prompts of 0.8-4 s, a female
    speaker), each with X.txt beside it saying what it says (the files are named after it)."""
    en = [p for p in sorted((speech_dir / "en").glob("*.wav")) if 0.8 < sf.info(p).duration < 4.0][:24]
    alsa = sorted((speech_dir / "alsa").glob("*.wav"))
    if len(en) < 24 or len(alsa) < 8:
        pytest.skip("too few short recordings in the speech folder")
    for speaker, files in (("alsa", alsa), ("en", en)):
        (root / speaker).mkdir(parents=True)
        for path in files:
            shutil.copy(path, root / speaker / path.name)
            (root / speaker / f"{path.stem}.txt").write_text(text_from_name(path) + "\n")
    return root


def mtimes(folder: Path, pattern: str) -> dict[str, int]:
    found = {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.glob(pattern)}
    assert found, f"nothing matches {folder}/{pattern}"
    return found


def stage_headers(output: str) -> list[int]:
    return [int(n) for n in re.findall(r"^==== stage (\d): ", output, flags=re.M)]


@pytest.mark.slow
def test_smoke_run_stage_by_stage_and_resumed(tmp_path, speech_dir, tiny_generator, small_vocoder):
    from dcae.corpus import read_manifest
    from dcae.corpus.test_list import read_test_list

    corpus = make_corpus(tmp_path / "corpus", speech_dir)
    exp = tmp_path / "exp"
    common = ["--config", str(SMOKE), "--exp", str(exp), "--ae-model", str(tiny_generator), "--ae-config",
              str(TINY_CONFIG), "--vocoder", str(small_vocoder)]
    started = time.perf_counter()

    # stages 0-3: filelists + test list, latents, FSQ tokens, speaker embeddings
    first = recipe(*common, "--corpus", str(corpus), "--transcript-ext", ".txt", "--stop-stage", "3", cwd=tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert stage_headers(first.stdout) == [0, 1, 2, 3]
    lines, bad = read_test_list(exp / "data" / "test_list.txt")
    held_out = (exp / "data" / "test.txt").read_text().splitlines()
    assert bad == [] and len(lines) == len(held_out) >= 4  # test_fraction 0.15 of 32 files
    for line in lines:
        assert line.prompt_wav.parent == line.target_wav.parent and line.prompt_wav != line.target_wav  # same speaker
        assert line.target_text == text_from_name(line.target_wav) and line.prompt_text == text_from_name(line.prompt_wav)
    rows = read_manifest(exp / "latents" / "manifest.jsonl")
    assert len(rows) == 32 - len(lines)
    assert all(r["text"] and r["speaker"] in ("alsa", "en") and r["token_path"] and r["speaker_path"] for r in rows)
    assert (exp / "fsq" / "fsq_tokenizer.safetensors").is_file()
    assert not (exp / "token-lm").exists()
    print(f"smoke run, stages 0-3: {time.perf_counter() - started:.0f} s")

    # stages 4-7: the two models, synthesis of the test list, scores
    second = recipe(*common, "--stage", "4", "--stop-stage", "7", cwd=tmp_path)
    assert stage_headers(second.stdout) == [4, 5, 6, 7]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    for kind in ("token-lm", "token-flow"):
        assert (exp / kind / "checkpoints" / "state_30.pt").is_file()
    wavs = sorted((exp / "synth").glob("*.wav"))
    assert [p.stem for p in wavs] == sorted(line.id for line in lines)
    for wav in wavs:
        info = sf.info(wav)
        assert info.samplerate == 22050 and info.frames > 0
    # stage 7: a score per line (no --asr: no WER), the summary, the table on the screen
    with open(exp / "scores" / "metrics.csv", newline="") as f:
        scored = list(csv.DictReader(f))
    assert sorted(row["file"] for row in scored) == sorted(line.id for line in lines)
    for row in scored:
        assert -1 <= float(row["sim"]) <= 1 and 1 <= float(row["mos"]) <= 5 and not row["wer"], row
    summary = json.loads((exp / "scores" / "summary.json").read_text())
    assert summary["files"] == len(lines) and summary["files_with_errors"] == 0, summary
    assert {"sim", "mos"} <= set(summary["metrics"]) and summary["wer"] is None
    assert re.search(r"^mos\b.*\d\.\d+ ± ", second.stdout, flags=re.M), second.stdout[-2000:]
    print(f"smoke run, stages 0-7: {time.perf_counter() - started:.0f} s")

    # every finished stage again (0-6): nothing is redone
    before = {**mtimes(exp, "data/*.txt"), **mtimes(exp, "latents/latents/*/*.safetensors"),
              **mtimes(exp, "latents/tokens/*/*.safetensors"), **mtimes(exp, "latents/speakers/[0-9a-f][0-9a-f]/*.safetensors"),
              **mtimes(exp, "*/checkpoints/*"), **mtimes(exp, "synth/*.wav")}
    rerun_started = time.perf_counter()
    again = recipe(*common, "--corpus", str(corpus), "--transcript-ext", ".txt", "--stop-stage", "6", cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    out = again.stdout + again.stderr
    assert stage_headers(again.stdout) == [0, 1, 2, 3, 4, 5, 6]
    assert "skipped: " in out and "test_list.txt exist" in out  # stage 0
    assert "this run:" not in out  # dcae tokens and dcae speakers: nothing left to do
    assert out.count("resumed from step 30") == 2 and "resumed from step 20" in out  # LM, flow; the FSQ tokenizer
    assert f"0 lines synthesised, {len(lines)} skipped (already there)" in out
    after = {**mtimes(exp, "data/*.txt"), **mtimes(exp, "latents/latents/*/*.safetensors"),
             **mtimes(exp, "latents/tokens/*/*.safetensors"), **mtimes(exp, "latents/speakers/[0-9a-f][0-9a-f]/*.safetensors"),
             **mtimes(exp, "*/checkpoints/*"), **mtimes(exp, "synth/*.wav")}
    assert after == before  # (the per-speaker means, speakers/by_speaker/, are recomputed: cheap)
    print(f"rerun of stages 0-6: {time.perf_counter() - rerun_started:.0f} s")
