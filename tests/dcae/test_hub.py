"""Model resolution: local files, the Hugging Face cache, and the one-line offline message."""
from __future__ import annotations

import pytest

from dcae import hub


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(hub, "_hub_reachable", lambda: False)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def put_in_cache(cache, repo_id: str, filename: str, data: bytes = b"weights") -> None:
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True, exist_ok=True)
    (snapshot / filename).write_bytes(data)


def test_offline_and_not_cached_is_one_clear_line(offline, hub_cache):
    with pytest.raises(hub.ModelNotFound) as e:
        hub.resolve_ae_model(None)
    msg = str(e.value)
    assert "generator_700000.pt" in msg and "KdaiP/DC-Speech-VAE" in msg and "--ae-model" in msg
    assert "\n" not in msg
    with pytest.raises(hub.ModelNotFound, match=r"config\.json.*--vocoder"):
        hub.resolve_vocoder_dir(None)


def test_cached_published_weights_need_no_network(offline, hub_cache):
    put_in_cache(hub_cache, hub.DEFAULT_AE_REPO, hub.DEFAULT_AE_FILE)
    put_in_cache(hub_cache, hub.DEFAULT_VOCODER_REPO, "config.json", b"{}")
    put_in_cache(hub_cache, hub.DEFAULT_VOCODER_REPO, "bigvgan_generator.pt")
    assert hub.resolve_ae_model(None).read_bytes() == b"weights"
    assert (hub.resolve_vocoder_dir(None) / "bigvgan_generator.pt").is_file()


def test_local_paths(tmp_path):
    ckpt = tmp_path / "generator_5.pt"
    ckpt.write_bytes(b"x")
    assert hub.resolve_ae_model(ckpt) == ckpt
    assert hub.resolve_ae_config(None) == hub.DEFAULT_CONFIG
    with pytest.raises(hub.ModelNotFound, match="AE checkpoint not found"):
        hub.resolve_ae_model(tmp_path / "missing.pt")
    with pytest.raises(hub.ModelNotFound, match="not a folder"):
        hub.resolve_ae_model(tmp_path)
    with pytest.raises(hub.ModelNotFound, match="AE config not found"):
        hub.resolve_ae_config(tmp_path / "nope.json")


def test_offline_names_every_missing_file_and_flag_in_one_line(offline, hub_cache):
    with pytest.raises(hub.ModelNotFound) as e:
        hub.resolve_models(None, None, None)
    msg = str(e.value)
    assert "\n" not in msg
    for needed in ("generator_700000.pt", "https://huggingface.co/KdaiP/DC-Speech-VAE", "config.json + bigvgan_generator.pt",
                   "https://huggingface.co/nvidia/bigvgan_v2_22khz_80band_256x", "--ae-model", "--vocoder"):
        assert needed in msg, needed
    put_in_cache(hub_cache, hub.DEFAULT_VOCODER_REPO, "config.json", b"{}")  # half of the vocoder is cached
    with pytest.raises(hub.ModelNotFound) as e:
        hub.resolve_models(None, None, None)
    assert "bigvgan_generator.pt" in str(e.value) and "config.json +" not in str(e.value)
    # encoding needs only the vocoder's mel settings: the packaged copy, nothing to fetch for it
    with pytest.raises(hub.ModelNotFound) as e:
        hub.resolve_models(None, None, None, vocoder_weights=False)
    assert "generator_700000.pt" in str(e.value) and "bigvgan" not in str(e.value)


def test_vocoder_given_by_its_config_json(tmp_path):
    folder = tmp_path / "bigvgan"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "bigvgan_generator.pt").write_bytes(b"x")
    assert hub.resolve_vocoder_dir(folder / "config.json") == folder
    assert hub.resolve_mel_config_dir(folder / "config.json") == folder == hub.resolve_mel_config_dir(folder)
    assert hub.resolve_mel_config_dir(None) is None and hub.resolve_mel_config_dir(hub.DEFAULT_VOCODER_REPO) is None
    with pytest.raises(hub.ModelNotFound, match="config.json"):
        hub.resolve_mel_config_dir(tmp_path)  # a folder without config.json
    with pytest.raises(hub.ModelNotFound, match="not found"):
        hub.resolve_mel_config_dir(tmp_path / "nope" / "config.json")
