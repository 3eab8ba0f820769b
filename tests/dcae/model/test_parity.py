"""Our DC-AE against the reference (diffusers AutoencoderDC + weight norm + LayerNorm), same weights."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from dcae import DCAEConfig, DCAEWrapper, load_dcae
from dcae.model.weight_norm import fold_weight_norm
from tests.conftest import DEFAULT_CONFIG, REPO, TINY_CONFIG
from tests.reference_dcae import ReferenceDCAE, randomize_, relative_error

pytest.importorskip("diffusers")

# Every option of the configuration space in one model: both block types, multi-scale attention
# with one and two kernel sizes, linear and quadratic attention (stage sizes vs head dim),
# pixel_unshuffle / pixel_shuffle resampling, no blocks at full resolution (conv_in / conv_out as
# resampling blocks), batch_norm and rms_norm, several activations, shortcuts off.
EVERY_OPTION = {
    "in_channels": 1, "latent_channels": 8, "attention_head_dim": 8,
    "encoder_block_types": ["ResBlock", "ResBlock", "EfficientViTBlock", "EfficientViTBlock"],
    "decoder_block_types": ["ResBlock", "EfficientViTBlock", "ResBlock", "EfficientViTBlock", "ResBlock"],
    "encoder_block_out_channels": [8, 16, 16, 32], "decoder_block_out_channels": [8, 16, 16, 32],
    "encoder_layers_per_block": [0, 1, 2, 1], "decoder_layers_per_block": [0, 2, 1, 1],
    "encoder_qkv_multiscales": [[], [], [5], [3, 5]], "decoder_qkv_multiscales": [[], [3], [], [5]],
    "downsample_block_type": "pixel_unshuffle", "upsample_block_type": "pixel_shuffle",
    "decoder_norm_types": ["rms_norm", "batch_norm", "rms_norm", "batch_norm"],
    "decoder_act_fns": ["silu", "relu", "gelu", "mish"],
    "encoder_out_shortcut": False, "decoder_in_shortcut": False, "decoder_conv_act_fn": "silu",
}
SHORTCUTS_CONV = {**EVERY_OPTION, "downsample_block_type": "Conv", "upsample_block_type": "interpolate",
                  "encoder_layers_per_block": [1, 1, 1, 2], "decoder_layers_per_block": [1, 1, 2, 1],
                  "encoder_out_shortcut": True, "decoder_in_shortcut": True, "decoder_act_fns": "gelu",
                  "decoder_norm_types": "batch_norm", "attention_head_dim": 16}


def official_checkpoint(config: dict, path, seed: int = 0) -> ReferenceDCAE:
    """Build the reference with random weights and save it the way the reference trainer does."""
    torch.manual_seed(seed)
    ref = randomize_(ReferenceDCAE(config), seed).eval()
    torch.save(ref.state_dict(), path)
    return ref


def check_parity(config: dict, tmp_path, frames: int, batch: int = 2, tol: float = 1e-5) -> None:
    ref = official_checkpoint(config, tmp_path / "generator_1.pt")
    ours = DCAEWrapper(config).eval()
    ours.load_state_dict(torch.load(tmp_path / "generator_1.pt", weights_only=True), strict=True)
    assert set(ours.state_dict()) == set(ref.state_dict())
    mel = torch.randn(batch, 80, frames) * 2 - 5
    with torch.no_grad():
        z_ref, z = ref.encode(mel), ours.encode(mel)
        assert z.shape == z_ref.shape
        assert relative_error(z, z_ref) < tol
        y_ref, y = ref.decode(z_ref), ours.decode(z_ref)
        assert y.shape == (batch, 80, frames)
        assert relative_error(y, y_ref) < tol
        # the inference path (weight norm folded) gives the same numbers
        folded = load_dcae(tmp_path / "generator_1.pt", config)
        assert relative_error(folded.encode(mel), z_ref) < tol
        assert relative_error(folded.decode(z_ref), y_ref) < tol


@pytest.mark.parametrize("name,config", [("every_option", EVERY_OPTION), ("conv_shortcuts", SHORTCUTS_CONV)])
def test_parity_option_configs(name, config, tmp_path):
    check_parity(config, tmp_path, frames=48 if config["encoder_block_out_channels"].__len__() == 4 else 64)


def test_parity_tiny_config(tmp_path):
    check_parity(json.loads(TINY_CONFIG.read_text()), tmp_path, frames=96)


def test_parity_default_config(tmp_path):
    """The published 190M configuration, loaded from the reference's official generator layout."""
    check_parity(json.loads(DEFAULT_CONFIG.read_text()), tmp_path, frames=64, batch=1)


def test_default_parameter_counts():
    counts = DCAEWrapper(DEFAULT_CONFIG).num_params()
    assert round(counts["encoder"] / 1e6, 1) == 91.9
    assert round(counts["decoder"] / 1e6, 1) == 98.1


def test_reference_parameter_counts_match():
    from diffusers import AutoencoderDC

    ref = AutoencoderDC.from_config(json.loads(DEFAULT_CONFIG.read_text()))
    ours = DCAEWrapper(DEFAULT_CONFIG).model
    fold_weight_norm(ours)
    for part in ("encoder", "decoder"):
        assert sum(p.numel() for p in getattr(ours, part).parameters()) == \
            sum(p.numel() for p in getattr(ref, part).parameters())


def test_loads_without_diffusers(tmp_path):
    """The model code never imports diffusers: load and run with diffusers made unimportable."""
    official_checkpoint(json.loads(TINY_CONFIG.read_text()), tmp_path / "g.pt")
    code = (
        "import sys; sys.modules['diffusers'] = None\n"
        "import torch; from dcae import load_dcae\n"
        f"m = load_dcae(r'{tmp_path / 'g.pt'}', r'{TINY_CONFIG}')\n"
        "z = m.encode(torch.randn(1, 80, 32)); print(tuple(z.shape))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 16, 5, 2)"


def test_published_config_loads_as_is():
    cfg = DCAEConfig.from_json(DEFAULT_CONFIG)
    assert cfg.num_stages == 5 and cfg.compression == 16 and cfg.latent_channels == 16
