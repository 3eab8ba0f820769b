"""Bad configurations and bad checkpoints give one clear error naming the file and the reason."""
from __future__ import annotations

import json

import pytest
import torch

from dcae import CheckpointError, ConfigError, DCAEConfig, DCAEWrapper, load_dcae, save_generator
from tests.conftest import TINY_CONFIG


def tiny_dict() -> dict:
    return json.loads(TINY_CONFIG.read_text())


def write_config(tmp_path, **changes) -> str:
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({**tiny_dict(), **changes}))
    return str(path)


@pytest.mark.parametrize("changes,message", [
    ({"encoder_block_types": "TransformerBlock"}, "unknown block type 'TransformerBlock'"),
    ({"decoder_block_types": ["ResBlock", "Foo", "ResBlock", "ResBlock", "ResBlock"]}, "unknown block type 'Foo'"),
    ({"encoder_layers_per_block": [1, 1, 1]}, "encoder_layers_per_block has 3 entries but the model has 5 stages"),
    ({"decoder_block_out_channels": [8, 16, 16, 16]}, "decoder_block_out_channels has 4 entries"),
    ({"encoder_qkv_multiscales": [[], []]}, "encoder_qkv_multiscales has 2 entries"),
    ({"decoder_norm_types": "group_norm"}, "unknown norm 'group_norm'"),
    ({"decoder_act_fns": "tanh"}, "unknown activation 'tanh'"),
    ({"downsample_block_type": "maxpool"}, "downsample_block_type 'maxpool'"),
    ({"latent_channels": 12}, "divisible by latent_channels=12"),
    ({"encoder_block_types": "EfficientViTBlock", "attention_head_dim": 12}, "divisible by attention_head_dim"),
    ({"block_size": 3}, "unknown DC-AE config field(s): block_size"),
])
def test_bad_config(tmp_path, changes, message):
    path = write_config(tmp_path, **changes)
    with pytest.raises(ConfigError) as e:
        DCAEConfig.from_json(path)
    assert message in str(e.value)
    assert str(e.value).startswith(path)
    assert "\n" not in str(e.value)


def test_config_not_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json: not valid JSON"):
        DCAEConfig.from_json(path)
    with pytest.raises(ConfigError, match="config file not found"):
        DCAEConfig.from_json(tmp_path / "missing.json")


@pytest.fixture
def checkpoint(tmp_path):
    model = DCAEWrapper(TINY_CONFIG)
    path = tmp_path / "generator_10.pt"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


def test_missing_and_unexpected_keys(tmp_path, checkpoint):
    _, state = checkpoint
    broken = dict(state)
    broken.pop("model.decoder.conv_in.bias")
    broken["model.decoder.extra.weight"] = torch.zeros(3)
    path = tmp_path / "broken.pt"
    torch.save(broken, path)
    with pytest.raises(CheckpointError) as e:
        load_dcae(path, TINY_CONFIG)
    msg = str(e.value)
    assert msg.startswith(str(path)) and "1 missing keys: model.decoder.conv_in.bias" in msg
    assert "1 unexpected keys: model.decoder.extra.weight" in msg


def test_wrong_shapes_name_the_key(tmp_path, checkpoint):
    _, state = checkpoint
    big = DCAEWrapper({**tiny_dict(), "encoder_block_out_channels": [16, 16, 16, 16, 16]}).state_dict()
    path = tmp_path / "other.pt"
    torch.save(big, path)
    with pytest.raises(CheckpointError, match=r"wrong shapes: model\.encoder\.conv_in"):
        load_dcae(path, TINY_CONFIG)


def test_checkpoint_of_a_packaged_config_says_which_in_one_line(tmp_path, checkpoint):
    """A tiny checkpoint loaded with the default config names the config it fits and what differs."""
    from tests.conftest import DEFAULT_CONFIG

    path, _ = checkpoint
    with pytest.raises(CheckpointError) as e:
        load_dcae(path, DEFAULT_CONFIG)
    msg = str(e.value)
    assert msg.startswith(f"{path}: does not fit {DEFAULT_CONFIG}") and "\n" not in msg, msg
    assert len(msg.replace(str(path), "").replace(str(DEFAULT_CONFIG), "")) < 350, msg  # no key dump
    assert f"it fits the packaged {TINY_CONFIG.name} (--ae-config {TINY_CONFIG.stem})" in msg
    assert "encoder_block_out_channels" in msg and "decoder_layers_per_block" in msg  # fields that differ
    # a checkpoint that fits no packaged config says so
    odd = DCAEWrapper({**tiny_dict(), "latent_channels": 8})
    torch.save(odd.state_dict(), tmp_path / "odd.pt")
    with pytest.raises(CheckpointError) as e:
        load_dcae(tmp_path / "odd.pt", TINY_CONFIG)
    assert "fits none of the packaged configs" in str(e.value) and "\n" not in str(e.value)


class NotAStateDict:
    def __init__(self):
        self.payload = [1, 2, 3]


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": NotAStateDict()}, path)
    with pytest.raises(CheckpointError, match="refused to load: the pickle holds more than tensors"):
        load_dcae(path, TINY_CONFIG)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="expected a state dict"):
        load_dcae(path, TINY_CONFIG)


def test_truncated_file(tmp_path, checkpoint):
    path, _ = checkpoint
    data = path.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_dcae(cut, TINY_CONFIG)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_dcae(tmp_path / "nope.pt", TINY_CONFIG)


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_our_formats_round_trip(tmp_path, checkpoint, suffix):
    """Folded (inference) and safetensors checkpoints load too, with the same outputs."""
    path, _ = checkpoint
    reference = load_dcae(path, TINY_CONFIG)
    out = tmp_path / f"folded{suffix}"
    save_generator(reference, out)
    again = load_dcae(out, TINY_CONFIG)
    mel = torch.randn(1, 80, 32)
    with torch.no_grad():
        assert torch.allclose(again.encode(mel), reference.encode(mel), atol=1e-6)


def test_compile_and_ddp_prefixes(tmp_path, checkpoint):
    _, state = checkpoint
    path = tmp_path / "prefixed.pt"
    torch.save({f"module._orig_mod.{k}": v for k, v in state.items()}, path)
    load_dcae(path, TINY_CONFIG)


def test_fp16_on_cpu_is_a_clear_error(checkpoint):
    path, _ = checkpoint
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        load_dcae(path, TINY_CONFIG, precision="fp16")


def test_training_mode_noise_has_a_per_sample_sigma_up_to_half():
    """Train mode: noisy = clean + sigma_i * N(0, I), sigma_i ~ U(0, 0.5) drawn per sample (sigma-VAE);
    eval adds no noise unless a fixed strength is asked for."""
    model = DCAEWrapper(TINY_CONFIG)
    mel = torch.randn(64, 80, 128)
    model.train()
    with torch.no_grad():
        noisy, clean = model.encode(mel)
    assert noisy.shape == clean.shape == (64, 16, 5, 8)
    noise = (noisy - clean).flatten(1)  # (64, 640): each sample's noise
    sigma = noise.std(dim=1)
    assert noise.mean(dim=1).abs().max() < 0.08  # zero-mean (4 standard errors at sigma 0.5)
    assert float(sigma.max()) <= 0.5 * 1.1  # never above 0.5 (the estimate is good to ~3%)
    assert float(sigma.min()) < 0.05 and float(sigma.max()) > 0.45  # the whole range [0, 0.5] is used
    assert abs(float(sigma.mean()) - 0.25) < 0.06 and abs(float(sigma.std()) - 0.5 / 12 ** 0.5) < 0.04  # U(0, 0.5)
    # one sigma per sample: both halves of a sample have the same noise level
    halves = noise.reshape(64, 2, -1).std(dim=2)
    assert float(((halves[:, 0] - halves[:, 1]).abs() / sigma).max()) < 0.25
    recon, _ = model(mel[:4])
    assert recon.shape == (4, 80, 128)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.encode(mel[:4]), model.encode(mel[:4]))
        # the latent is LayerNorm-ed over channels: zero mean, unit variance per (freq, time) cell
        z = model.encode(mel[:4])
        assert torch.allclose(z.mean(dim=1), torch.zeros(()), atol=1e-5)
        fixed = (model.encode(mel[:8], noise_strength=0.3) - z.new_zeros(()) - model.encode(mel[:8])).flatten(1)
        assert torch.allclose(fixed.std(dim=1), torch.full((8,), 0.3), rtol=0.05)


def test_dispersive_loss_matches_pairwise_definition():
    from dcae import dispersive_loss

    z = torch.randn(5, 16, 5, 3)
    flat = torch.nn.functional.normalize(z.reshape(5, -1), dim=-1)
    pairs = [float(flat[i] @ flat[j]) ** 2 for i in range(5) for j in range(5) if i != j]
    assert abs(dispersive_loss(z).item() - sum(pairs) / len(pairs)) < 1e-6
    same = z[:1].expand(4, -1, -1, -1)
    assert abs(dispersive_loss(same).item() - 1.0) < 1e-5  # identical samples: maximal loss
    assert dispersive_loss(z[:1]).item() == 0.0
