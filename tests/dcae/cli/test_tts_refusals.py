"""``dcae tts`` refuses every option that would be ignored for the run and command line given (one line
naming the option and where it applies, exit 2), and takes the same options where they apply."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dcae.cli import main as dcae_main
from dcae.corpus import save_tokens
from tests.tts_runs import train_runs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LOOKAHEAD = "--lookahead applies to --stream with -o only"
CHUNKS = "--chunk-frames applies to token-flow runs (token-lm runs: with --flow) only"
DECODER = "with -o (or --prompt-audio, --speaker-audio) only: they load the DC-AE"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("refusals")
    runs = train_runs(root)
    save_tokens(root / "t.safetensors", torch.arange(20) % 32, 25.0)
    runs["tokens"] = root / "t.safetensors"
    return runs


def dcae_tts(runs, kind: str, *args: str, out: Path):
    """``dcae tts`` with a run of ``kind``, its input (text or tokens) and ``--out-latent``/``--out-tokens``."""
    what = ["--tokens", str(runs["tokens"])] if kind == "token-flow" else ["--text", "abcd"]
    output = ["--out-latent", str(out)] if kind != "token-lm" or "--flow" in args else ["--out-tokens", str(out)]
    args = [a.replace("FLOW", str(runs["token-flow"])) for a in args]
    return CliRunner().invoke(dcae_main, ["tts", "--checkpoint", str(runs[kind]), *what, *output, *args])


@pytest.mark.parametrize("kind, args, message", [
    ("token-lm", ["--flow", "FLOW", "--lookahead", "0"], LOOKAHEAD),  # offline: the decode is exact
    ("token-lm", ["--flow", "FLOW", "--stream", "--lookahead", "0"], LOOKAHEAD),  # no -o: nothing decoded
    ("token-flow", ["--stream", "--lookahead", "0"], LOOKAHEAD),
    ("token-flow", ["--lookahead", "1"], "--lookahead applies to --stream"),
    ("ar", ["--lookahead", "1"], LOOKAHEAD),
    ("ar", ["--chunk-frames", "2"], CHUNKS),
    ("flow", ["--chunk-frames", "2"], CHUNKS),
    ("token-lm", ["--chunk-frames", "2"], CHUNKS),
    ("token-lm", ["--steps", "3"], "--steps applies to a token-lm run with --flow only"),
    ("token-lm", ["--cfg-scale", "2", "--temperature", "0.5"], "--cfg-scale, --temperature apply to a token-lm run "
                                                             "with --flow only"),
    ("token-lm", ["--tokenizer", "s3"], "--tokenizer applies with --prompt-audio only"),
    ("ar", ["--ae-model", "g.pt"], f"--ae-model applies {DECODER}"),
    ("token-flow", ["--vocoder", "bigvgan", "--precision", "bf16"], f"--vocoder, --precision apply {DECODER}"),
    ("token-lm", ["--flow", "FLOW", "--chunk-frames", "-1"], "--chunk-frames must be at least 0, got -1"),
    ("token-lm", ["--flow", "FLOW", "--stream", "--chunk-frames", "0"], "--chunk-frames must be at least 1 with "
                                                                         "--stream, got 0"),
    ("token-flow", ["--chunk-frames", "-2"], "--chunk-frames must be at least 0, got -2"),
])
def test_inapplicable_option_is_refused(runs, tmp_path, kind, args, message):
    out = tmp_path / "out.safetensors"
    result = dcae_tts(runs, kind, *args, out=out)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.output
    assert not out.exists()


@pytest.mark.parametrize("kind, args", [
    ("token-lm", ["--flow", "FLOW", "--steps", "2", "--cfg-scale", "1", "--temperature", "0.5", "--chunk-frames", "1"]),
    ("token-lm", ["--flow", "FLOW", "--stream", "--chunk-frames", "1"]),
    ("token-flow", ["--stream", "--chunk-frames", "1", "--steps", "2"]),
    ("token-flow", ["--chunk-frames", "0"]),
    ("ar", ["--steps", "2", "--cfg-scale", "1", "--temperature", "0.5", "--max-frames", "4"]),
    ("flow", ["--steps", "2"]),
])
def test_applicable_options_are_taken(runs, tmp_path, kind, args):
    out = tmp_path / "out.safetensors"
    result = dcae_tts(runs, kind, *args, out=out)
    assert result.exit_code == 0, result.output
    assert out.is_file()
