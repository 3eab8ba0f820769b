"""Audio corpora in shards (WebDataset tar, Parquet audio bytes) read in place: the same audio as the
files, listed like a filelist, exported by `dcae export` and trained on by the DC-AE trainer."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dcae import DCAEWrapper
from dcae.audio import AudioError, audio_info, load_audio
from dcae.cli.export import export_command
from dcae.corpus import load_latent, read_manifest
from preprocess.filelist import read_filelist
from tests.conftest import TINY_CONFIG


def tone(seconds: float, sr: int, f0: float) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * f0 * t)).astype(np.float32)


@pytest.fixture
def corpus(tmp_path) -> dict:
    """The same 6 utterances as files, in two WebDataset tars (Emilia's layout) and in a Parquet file."""
    files, texts = [], []
    for i in range(6):
        path = tmp_path / "files" / f"utt{i}.{'flac' if i % 2 else 'wav'}"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, tone(0.5 + 0.2 * i, (16000, 22050, 24000)[i % 3], 200 + 30 * i),
                 (16000, 22050, 24000)[i % 3])
        files.append(path)
        texts.append(f"words of {i}")
    (tmp_path / "tars").mkdir()
    for t, chunk in enumerate((range(0, 3), range(3, 6))):
        with tarfile.open(tmp_path / "tars" / f"shard{t}.tar", "w") as tar:
            for i in chunk:
                for name, data in ((f"EN/utt{i}{files[i].suffix}", files[i].read_bytes()),
                                   (f"EN/utt{i}.json", json.dumps({"text": texts[i], "speaker": "S1"}).encode())):
                    info = tarfile.TarInfo(name)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    table = pa.table({"id": [f"utt{i}" for i in range(6)], "text": texts,
                      "audio": [{"bytes": f.read_bytes(), "path": f.name} for f in files]})
    (tmp_path / "parquet").mkdir()
    pq.write_table(table, tmp_path / "parquet" / "audio.parquet", row_group_size=2)
    filelist = tmp_path / "filelist.txt"
    filelist.write_text("".join(f"{f}|{t}\n" for f, t in zip(files, texts)))
    return {"files": files, "texts": texts, "filelist": filelist, "tars": tmp_path / "tars",
            "parquet": tmp_path / "parquet"}


@pytest.mark.parametrize("layout", ["tars", "parquet"])
def test_listed_and_decoded_like_the_files(corpus, layout):
    entries = read_filelist(corpus[layout])
    assert [e.text for e in entries] == corpus["texts"]
    for entry, path in zip(entries, corpus["files"]):
        assert "::" in str(entry.path)
        assert torch.equal(load_audio(entry.path, 22050), load_audio(path, 22050))
        assert audio_info(entry.path).sample_rate == sf.info(path).samplerate
        assert torch.equal(load_audio(entry.path, None, offset=0.1, duration=0.2),
                           load_audio(path, None, offset=0.1, duration=0.2))
    with pytest.raises(AudioError, match="no such"):
        load_audio(f"{corpus[layout] / ('shard0.tar' if layout == 'tars' else 'audio.parquet')}::nothing", 22050)


@pytest.mark.parametrize("layout", ["tars", "parquet"])
def test_export_from_shards_gives_the_files_latents(corpus, layout, tmp_path):
    torch.manual_seed(0)
    ckpt = tmp_path / "g.pt"
    torch.save(DCAEWrapper(TINY_CONFIG).state_dict(), ckpt)

    def export(source: Path, out: Path) -> list[dict]:
        result = CliRunner().invoke(export_command, ["--filelist", str(source), "--out", str(out), "--ae-model",
                                                     str(ckpt), "--ae-config", str(TINY_CONFIG), "--num-workers", "0"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return read_manifest(out / "manifest.jsonl")

    from_files, from_shards = export(corpus["filelist"], tmp_path / "a"), export(corpus[layout], tmp_path / "b")
    assert [r["text"] for r in from_shards] == corpus["texts"]
    assert all("::" in r["audio_path"] for r in from_shards)
    for a, b in zip(from_files, from_shards):
        assert torch.equal(load_latent(a["latent_path"])[0], load_latent(b["latent_path"])[0])


def test_dcae_trainer_trains_on_a_tar_folder(corpus, tmp_path):
    from dcae.model import trainer

    code = trainer.main(["--train-dataset-path", str(corpus["tars"]), "--model-config-path", str(TINY_CONFIG),
                         "--segment-samples", "16384", "--batch-size", "2", "--max-steps", "2", "--num-workers", "0",
                         "--cpu-threads", "1", "--model-save-path", str(tmp_path / "ckpt"),
                         "--log-dir", str(tmp_path / "tb")])
    assert code == 0 and (tmp_path / "ckpt" / "generator_2.pt").is_file()
