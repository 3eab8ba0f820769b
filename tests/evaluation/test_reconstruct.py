"""evaluation.reconstruct as a library: problems that stop an evaluation are exceptions (one line),
which ``dcae evaluate`` turns into its ``error:`` line; nothing in the library exits the process."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from evaluation.reconstruct import ReconstructError, reconstruct_filelist


def _two_files_one_output(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    tone = np.sin(np.arange(8000) / 10).astype(np.float32) * 0.1
    sf.write(str(folder / "x.wav"), tone, 16000)
    sf.write(str(folder / "x.flac"), tone, 16000)
    filelist = tmp_path / "test.txt"
    filelist.write_text(f"{folder / 'x.wav'}\n{folder / 'x.flac'}\n")
    return filelist


def test_colliding_files_raise_instead_of_exiting(tmp_path):
    with pytest.raises(ReconstructError, match=r"x\.wav and .*x\.flac would both be reconstructed as x\.wav"):
        reconstruct_filelist(_two_files_one_output(tmp_path), tmp_path / "audio", ae_model=str(tmp_path / "no.pt"))
    assert not (tmp_path / "audio").exists()


def test_collisions_use_the_commands_rule(tmp_path, monkeypatch):
    """One rule for 'two inputs write one output': dcae.paths.colliding_outputs, which the audio commands use too."""
    import dcae.cli.audio
    import dcae.paths
    import evaluation.reconstruct

    assert evaluation.reconstruct.colliding_outputs is dcae.paths.colliding_outputs
    seen = []
    # the commands import it when they run: the one in dcae.paths is what they call
    monkeypatch.setattr(dcae.paths, "colliding_outputs", lambda jobs: seen.append(jobs) or [])
    (tmp_path / "a.wav").write_bytes(b"")
    dcae.cli.audio.prepare_jobs([str(tmp_path / "a.wav")], str(tmp_path / "o"), (".wav",), ".wav")
    assert len(seen) == 1 and seen.pop()[0][0] == tmp_path / "a.wav"

    def spy(jobs):
        seen.append(jobs)
        return []

    monkeypatch.setattr(evaluation.reconstruct, "colliding_outputs", spy)
    with pytest.raises(ReconstructError, match="AE checkpoint not found"):  # spy let it through to the model
        reconstruct_filelist(_two_files_one_output(tmp_path), tmp_path / "audio", ae_model=str(tmp_path / "no.pt"))
    assert len(seen) == 1 and [str(dst) for _, dst in seen[0]] == ["x.wav", "x.wav"]


@pytest.mark.parametrize("content, reason", [("", "the filelist is empty"), ("|text only\n", "no audio path")])
def test_unusable_filelist_raises(tmp_path, content, reason):
    filelist = tmp_path / "list.txt"
    filelist.write_text(content)
    with pytest.raises(ReconstructError, match=reason):
        reconstruct_filelist(filelist, tmp_path / "audio")


def test_missing_model_raises_and_evaluate_prints_one_line(tmp_path):
    from dcae.cli.evaluate import evaluate_command

    folder = tmp_path / "corpus"
    folder.mkdir()
    sf.write(str(folder / "a.wav"), np.zeros(8000, np.float32), 16000)
    filelist = tmp_path / "test.txt"
    filelist.write_text(f"{folder / 'a.wav'}\n")
    with pytest.raises(ReconstructError, match="AE checkpoint not found"):
        reconstruct_filelist(filelist, tmp_path / "audio", ae_model=str(tmp_path / "no.pt"))
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    for listed in (filelist, empty):
        result = CliRunner().invoke(evaluate_command, ["--filelist", str(listed), "--ae-model", str(tmp_path / "no.pt"),
                                                       "--out", str(tmp_path / "report"), "--no-progress", "--no-sim"])
        assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
        assert result.output.startswith("error: "), result.output
