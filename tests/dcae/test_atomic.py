"""dcae.atomic: files appear whole or not at all, with the permissions the umask gives."""
from __future__ import annotations

import os
import stat

import pytest
import torch

from dcae.atomic import atomic_path, atomic_write_text
from dcae.audio import save_audio
from dcae.corpus import LatentMeta, save_latent


@pytest.fixture
def umask():
    """Set the process umask for one test; restore it afterwards."""
    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask, mask):
    umask(mask)
    expected = 0o666 & ~mask
    atomic_write_text(tmp_path / "a.json", "{}")
    save_audio(tmp_path / "b.wav", torch.zeros(1000), 22050)
    save_audio(tmp_path / "c.mp3", 0.1 * torch.ones(4000), 22050)
    save_latent(tmp_path / "d.safetensors", torch.zeros(80, 2), LatentMeta(22050, 256, 22050 / 4096, 8192, ""))
    for name in ("a.json", "b.wav", "c.mp3", "d.safetensors"):
        assert mode(tmp_path / name) == expected, (name, oct(mode(tmp_path / name)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.wav", "c.mp3", "d.safetensors"]


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_temporary_keeps_the_extension_when_asked(tmp_path):
    with atomic_path(tmp_path / "x.mp3", keep_suffix=True) as tmp:
        assert tmp.suffix == ".mp3" and tmp.parent == tmp_path and tmp.name.startswith(".")
        tmp.write_bytes(b"data")
    assert (tmp_path / "x.mp3").read_bytes() == b"data"
