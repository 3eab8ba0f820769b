"""Speech tokens too few for one latent frame (fewer than ~2.3 at 4.64 tokens per frame) are refused
in one line everywhere: token files, the synthesis API, streaming, and a token-lm that wrote too few."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from dcae.cli import main as dcae_main
from dcae.corpus import save_tokens
from tests.tts_runs import one_line_error, train_runs
from tts.run import load_run
from tts.synthesis import NoFrameError, SynthesisError
from tts.token_flow.inputs import load_token_file
from tts.token_flow.streaming import open_stream, stream_latents
from tts.token_flow.synthesis import synthesize_tokens

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REASON = "2 tokens make no latent frame at 25 tokens/s (one frame needs at least 3)"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    return train_runs(tmp_path_factory.mktemp("few_tokens"))


@pytest.fixture
def two_tokens(tmp_path) -> Path:
    path = tmp_path / "two.safetensors"
    save_tokens(path, torch.tensor([3, 5]), 25.0)
    return path


def test_api_refuses(runs, two_tokens):
    run = load_run(runs["token-flow"])
    assert run.model.num_frames(2) == 0 < run.model.num_frames(3)
    with pytest.raises(SynthesisError, match=re.escape(f"two.safetensors: {REASON}")):
        load_token_file(run, two_tokens)
    with pytest.raises(NoFrameError, match=re.escape(REASON)):
        synthesize_tokens(run, [3, 5])
    with pytest.raises(NoFrameError, match=re.escape(REASON)):
        synthesize_tokens(run, [3, 5], max_frames=4)
    with pytest.raises(NoFrameError, match=re.escape(f"the token stream: {REASON}")):
        list(stream_latents(run, [3, 5]))
    stream = open_stream(run)
    assert stream.push([3, 5]) == []
    with pytest.raises(NoFrameError, match=re.escape(REASON)):
        stream.finish()
    assert synthesize_tokens(run, [3, 5, 7]).shape == (16, 1)  # three make one
    assert synthesize_tokens(run, [3, 5], frames=2).shape == (16, 2)  # an explicit length still rules


@pytest.mark.parametrize("stream", [[], ["--stream"]])
def test_token_file_refused_by_dcae_tts(runs, two_tokens, tmp_path, stream):
    out = tmp_path / "out.safetensors"
    result = CliRunner().invoke(dcae_main, ["tts", "--checkpoint", str(runs["token-flow"]), "--tokens",
                                            str(two_tokens), "--out-latent", str(out), *stream])
    one_line_error(result, f"two.safetensors: {REASON}")
    assert not out.exists()


@pytest.fixture(scope="module")
def terse_lm(runs, tmp_path_factory) -> Path:
    """The token-lm run with a length rule that allows exactly one speech token for a two-letter text."""
    lm = tmp_path_factory.mktemp("terse") / "lm"
    shutil.copytree(runs["token-lm"], lm)
    info = json.loads((lm / "latent.json").read_text())
    info.update(min_len_ratio=0.1, max_len_ratio=0.1)
    (lm / "latent.json").write_text(json.dumps(info))
    return lm


@pytest.mark.parametrize("stream", [[], ["--stream"]])
def test_token_lm_that_wrote_too_few(runs, terse_lm, tmp_path, stream):
    out = tmp_path / "out.safetensors"
    result = CliRunner().invoke(dcae_main, ["tts", "--checkpoint", str(terse_lm), "--flow", str(runs["token-flow"]),
                                            "--text", "ab", "--out-latent", str(out), *stream])
    one_line_error(result, "the LM wrote too few speech tokens: 1 token make", "(one frame needs at least 3)")
    assert not out.exists()
