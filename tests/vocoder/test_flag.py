"""One rule for ``--vocoder`` (dcae.hub): a BigVGAN folder or its config.json, for the commands that load
the weights (resolve_vocoder_dir) and for those that read only the mel settings (resolve_mel_config_dir)."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from dcae import hub


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "bigvgan"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "bigvgan_generator.pt").write_bytes(b"x")
    (folder / "other.json").write_text("{}")
    return folder


@pytest.mark.parametrize("resolve", [hub.resolve_vocoder_dir, hub.resolve_mel_config_dir])
def test_folder_and_its_config_json_are_the_same(resolve, folder):
    assert resolve(folder) == folder == resolve(folder / "config.json")


@pytest.mark.parametrize("resolve", [hub.resolve_vocoder_dir, hub.resolve_mel_config_dir])
@pytest.mark.parametrize("name", ["other.json", "bigvgan_generator.pt"])
def test_another_file_is_refused_by_both(resolve, folder, name):
    """other.json would be silently replaced by the folder's config.json: refused, naming the file."""
    with pytest.raises(hub.ModelNotFound, match=rf"{name}: --vocoder takes a BigVGAN folder .* or that folder's "
                                                 r"config\.json, not another file"):
        resolve(folder / name)


def test_weights_are_needed_only_to_vocode(folder):
    (folder / "bigvgan_generator.pt").unlink()
    assert hub.resolve_mel_config_dir(folder) == folder
    with pytest.raises(hub.ModelNotFound, match="lacks bigvgan_generator.pt"):
        hub.resolve_vocoder_dir(folder / "config.json")


@pytest.mark.parametrize("resolve", [hub.resolve_vocoder_dir, hub.resolve_mel_config_dir])
def test_missing_path_is_named(resolve, tmp_path):
    with pytest.raises(hub.ModelNotFound, match="vocoder folder not found"):
        resolve(tmp_path / "nope" / "config.json")


def test_reconstruct_refuses_another_json_in_one_line(folder, tmp_path):
    import numpy as np
    import soundfile as sf

    from dcae.cli.audio import reconstruct_command

    wav = tmp_path / "a.wav"  # a good input: the inputs are checked first (an empty file would be named instead)
    sf.write(wav, 0.1 * np.sin(np.linspace(0, 2000, 22050)), 22050)
    args = [str(wav), "-o", str(tmp_path / "out.wav"), "--ae-model", str(folder / "config.json"),
            "--vocoder", str(folder / "other.json"), "--device", "cpu"]
    result = CliRunner().invoke(reconstruct_command, args)
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
    assert "other.json: --vocoder takes a BigVGAN folder" in result.output
