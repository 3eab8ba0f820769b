"""Tiny TTS run folders of every kind, trained for one step (for command-line checks that need a run of
a given kind, not a good one). Token runs share one synthetic corpus, so a token-lm and a token-flow
run pair up (25 tokens/s, 4.64 tokens per latent frame)."""
from __future__ import annotations

from pathlib import Path

from tts.synthetic import SyntheticCorpus, SyntheticTextTokenCorpus
from tts.train import main as train_main


def train_runs(root: Path) -> dict[str, Path]:
    """{"ar", "flow", "token-flow", "token-lm"}: run folders under ``root``."""
    text = SyntheticCorpus(alphabet="abcd", frames_per_char=2, dim=8)
    text_manifest = text.write(root / "text", text.random_texts(16, seed=1, max_len=6))
    tokens = SyntheticTextTokenCorpus(alphabet="abcdefgh", vocab=32, seed=0)
    token_manifest = tokens.write(root / "tokens", tokens.random_texts(16, seed=1))
    common = ["--preset", "tiny", "--max-steps", "1", "--save-interval", "1", "--batch-size", "4",
              "--cpu-threads", "1", "--precision", "fp32"]
    runs = {}
    for kind, manifest, extra in (("ar", text_manifest, []), ("flow", text_manifest, []),
                                  ("token-flow", token_manifest, []),
                                  ("token-lm", token_manifest, ["--bistream", "true", "--text-chunk", "4",
                                                                "--speech-chunk", "8"])):
        runs[kind] = root / kind
        assert train_main(["--model", kind, "--manifest", str(manifest), "--output-dir", str(runs[kind]),
                           *common, *extra]) == 0
    return runs


def one_line_error(result, *fragments: str) -> None:
    """A click result that ended with exit 2 and one ``error:`` line holding every fragment."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
