"""Fine-tuning: ``--init-from`` starts a new run from a generator (official layout or our
safetensors), refused in one line when it does not fit the config; ``--freeze encoder|decoder``
keeps that half bit-identical (for the encoder: the latent space, so exported latents stay valid)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dcae import DCAEWrapper
from dcae.model import trainer as train
from dcae.model.checkpoint import save_generator
from tests.dcae.model.test_trainer_loop import SEGMENT, TINY, args, corpus  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def start(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """A tiny generator in the official layout (weight norm, torch.save), seeded apart from a new run's."""
    torch.manual_seed(99)
    generator = DCAEWrapper(TINY)
    path = tmp_path_factory.mktemp("start") / "generator_700.pt"
    torch.save(generator.state_dict(), path)
    return path, {k: v.clone() for k, v in generator.state_dict().items()}


def part(state: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(f"model.{name}.")}


def step_distance(trained: dict, start: dict, key: str) -> float:
    return (trained[key] - start[key]).norm().item()


def test_init_from_starts_a_new_run_from_the_generator(corpus, start, tmp_path, capsys):  # noqa: F811
    path, weights = start
    assert train.main(args(corpus, tmp_path, 2, "--batch-size", "1", "--init-from", str(path))) == 0
    out = capsys.readouterr().out
    assert f"generator initialised from {path}" in out and "new discriminator, optimizers" in out
    assert "resumed" not in out
    assert "step 1: " in out and "steps/s)" in out  # no progress bar in a log: a line per --log-interval
    ckpt = tmp_path / "ckpt"
    state = torch.load(ckpt / "state_2.pt", weights_only=True)
    assert state["step"] == 2 and state["scheduler_g"][0]["last_epoch"] == 2  # a new schedule from step 0
    trained = torch.load(ckpt / "generator_2.pt", weights_only=True)
    fresh = DCAEWrapper(TINY).state_dict()  # what a run without --init-from starts from (seed 1234)
    key = "model.decoder.conv_out.parametrizations.weight.original1"
    assert step_distance(trained, weights, key) < 0.2 * step_distance(fresh, weights, key)
    # the saved config keeps the flag; a resumed run continues from its own checkpoint, not from --init-from
    assert json.loads((ckpt / "train_config.json").read_text())["init_from"] == str(path.resolve())
    assert train.main(["--config", str(ckpt / "train_config.json"), "--max-steps", "3", "--save-interval", "3"]) == 0
    out = capsys.readouterr().out
    assert "resumed from step 2" in out and "--init-from" in out and "not used" in out


def test_init_from_takes_our_safetensors_export(corpus, start, tmp_path, capsys):  # noqa: F811
    path, weights = start
    generator = DCAEWrapper(TINY).eval()
    generator.load_state_dict(weights)
    exported = tmp_path / "tiny.safetensors"
    save_generator(generator, exported)  # folded (plain) weights
    assert train.main(args(corpus, tmp_path, 1, "--batch-size", "1", "--init-from", str(exported),
                           "--gen-learning-rate", "0", "--freeze", "encoder")) == 0
    assert f"generator initialised from {exported}" in capsys.readouterr().out
    trained = torch.load(tmp_path / "ckpt" / "generator_1.pt", weights_only=True)
    # weight norm is put back on the plain weights: same function (lr 0 leaves the decoder as loaded too)
    mel = torch.randn(1, 80, 64)
    with torch.no_grad():
        expected = generator.decode(generator.encode(mel))
        generator.load_state_dict(trained)
        assert torch.allclose(generator.decode(generator.encode(mel)), expected, atol=1e-5)


def test_init_from_that_does_not_fit_is_refused_in_one_line_naming_the_config(corpus, start, tmp_path, capsys):  # noqa: F811
    path, _ = start
    other = json.loads(TINY.read_text())
    other["latent_channels"] = other["latent_channels"] // 2
    config = tmp_path / "wider.json"
    config.write_text(json.dumps(other))
    code = train.main(args(corpus, tmp_path, 1, "--init-from", str(path), "--model-config-path", str(config)))
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith(f"error: --init-from: {path}: does not fit") and "--model-config-path tiny" in err
    assert not (tmp_path / "ckpt").exists() or not list((tmp_path / "ckpt").glob("*.pt"))


def test_init_from_missing_file_is_refused_before_training(corpus, tmp_path, capsys):  # noqa: F811
    assert train.main(args(corpus, tmp_path, 1, "--init-from", str(tmp_path / "nope.pt"))) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --init-from:") and "nope.pt" in err and "\n" not in err


@pytest.mark.parametrize("frozen, trained_part", [("encoder", "decoder"), ("decoder", "encoder")])
def test_freeze_keeps_that_half_bit_identical(corpus, start, tmp_path, capsys, frozen, trained_part):  # noqa: F811
    path, weights = start
    assert train.main(args(corpus, tmp_path, 2, "--batch-size", "1", "--init-from", str(path),
                           "--freeze", frozen)) == 0
    assert f"{frozen} frozen" in capsys.readouterr().out
    trained = torch.load(tmp_path / "ckpt" / "generator_2.pt", weights_only=True)
    for key, value in part(weights, frozen).items():
        assert torch.equal(trained[key], value), key
    assert any(not torch.equal(trained[k], v) for k, v in part(weights, trained_part).items())
    if frozen == "encoder":  # the latent space: the same latents, bit for bit
        before, after = DCAEWrapper(TINY).eval(), DCAEWrapper(TINY).eval()
        before.load_state_dict(weights)
        after.load_state_dict(trained)
        mel = torch.randn(2, 80, 128)
        with torch.no_grad():
            assert torch.equal(before.encode(mel), after.encode(mel))


def test_freeze_takes_encoder_or_decoder_only(corpus, tmp_path, capsys):  # noqa: F811
    assert train.main(args(corpus, tmp_path, 1, "--freeze", "everything")) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --freeze: expected encoder or decoder, got 'everything'"
