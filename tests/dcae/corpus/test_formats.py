"""Latent and token file formats: round trips, truncation, wrong contents, files from other tools."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from dcae.corpus import (
    DEFAULT_FRAME_RATE,
    LatentFileError,
    LatentMeta,
    TokenFileError,
    TokenMeta,
    load_latent,
    load_tokens,
    save_latent,
    save_tokens,
)


def _one_line(error: pytest.ExceptionInfo, path) -> str:
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    return message


def _refused(tmp_path, tensors: dict, metadata: dict, load, error: type, reason: str) -> None:
    """A file written with plain safetensors is refused by ``load`` with a one-line ``error`` naming it."""
    path = tmp_path / "bad.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(error, match=reason) as e:
        load(path)
    _one_line(e, path)


def test_tokens_round_trip(tmp_path):
    path = tmp_path / "t" / "u1.safetensors"
    ids = torch.tensor([5, 0, 4095, 17], dtype=torch.int32)
    save_tokens(path, ids, token_rate=25.0, extra={"tokenizer": "toy-v1", "codebook_size": 4096})
    tokens, meta = load_tokens(path)
    assert tokens.dtype == torch.int64 and tokens.tolist() == [5, 0, 4095, 17]
    assert meta == TokenMeta(token_rate=25.0, extra={"tokenizer": "toy-v1", "codebook_size": "4096"})
    save_tokens(path, [], token_rate=12.5)  # empty utterance, list input, overwrite
    tokens, meta = load_tokens(path)
    assert tokens.shape == (0,) and meta.token_rate == 12.5 and meta.extra == {}
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left nothing behind


def test_tokens_truncated_file(tmp_path):
    path = tmp_path / "u1.safetensors"
    save_tokens(path, torch.arange(100), token_rate=50.0)
    data = path.read_bytes()
    path.write_bytes(data[:-8])
    with pytest.raises(TokenFileError) as e:
        load_tokens(path)
    assert "truncated" in _one_line(e, path)
    path.write_bytes(data[:5])
    with pytest.raises(TokenFileError) as e:
        load_tokens(path)
    _one_line(e, path)
    with pytest.raises(TokenFileError, match="cannot read") as e:
        load_tokens(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("tensors, metadata, reason", [
    ({"tokens": torch.rand(4)}, {"token_rate": "25"}, "integer tensor, got torch.float32"),
    ({"tokens": torch.zeros(2, 3, dtype=torch.int64)}, {"token_rate": "25"}, r"shape \(num_tokens,\), got \(2, 3\)"),
    ({"codes": torch.zeros(3, dtype=torch.int64)}, {"token_rate": "25"}, "no 'tokens' tensor"),
    ({"tokens": torch.tensor([1, -1])}, {"token_rate": "25"}, "negative token id"),
    ({"tokens": torch.tensor([1, 2])}, {"token_rate": "fast"}, "bad token_rate"),
])
def test_tokens_wrong_contents_name_the_file(tmp_path, tensors, metadata, reason):
    _refused(tmp_path, tensors, metadata, load_tokens, TokenFileError, reason)


def test_tokens_from_other_tools(tmp_path):
    """Narrow integer dtypes and no metadata at all are read; the rate is then unknown."""
    path = tmp_path / "other.safetensors"
    save_file({"tokens": torch.tensor([3, 1, 2], dtype=torch.int16)}, str(path))
    tokens, meta = load_tokens(path)
    assert tokens.dtype == torch.int64 and tokens.tolist() == [3, 1, 2] and meta.token_rate is None


def test_save_tokens_refuses_bad_input(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(ValueError, match="1-D integer"):
        save_tokens(path, torch.rand(3), token_rate=25)
    with pytest.raises(ValueError, match="positive"):
        save_tokens(path, [1, 2], token_rate=0)
    with pytest.raises(ValueError, match="own argument"):
        save_tokens(path, [1, 2], token_rate=25, extra={"token_rate": 3})
    assert not path.exists()


def test_latent_round_trip_and_truncation(tmp_path):
    path = tmp_path / "u.safetensors"
    latent = torch.randn(80, 7)
    meta = LatentMeta(sample_rate=22050, hop_length=256, frame_rate=22050 / 4096, num_samples=28000, model="abc")
    save_latent(path, latent, meta)
    again, again_meta = load_latent(path)
    assert torch.equal(again, latent) and again_meta == meta
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(LatentFileError, match="truncated") as e:
        load_latent(path)
    _one_line(e, path)


def test_latent_without_metadata_gets_dc_ae_defaults(tmp_path):
    """A latent written by another tool (plain safetensors, no metadata) is read; D comes from the tensor."""
    path = tmp_path / "plain.safetensors"
    save_file({"latent": torch.randn(32, 11)}, str(path))
    latent, meta = load_latent(path)
    assert latent.shape == (32, 11)
    assert meta == LatentMeta(sample_rate=22050, hop_length=256, frame_rate=DEFAULT_FRAME_RATE,
                              num_samples=11 * 4096, model="")
    assert DEFAULT_FRAME_RATE == 22050 / 4096


def test_latent_partial_metadata_uses_what_is_there(tmp_path):
    path = tmp_path / "partial.safetensors"
    save_file({"latent": torch.randn(80, 10, dtype=torch.bfloat16)}, str(path),
              metadata={"sample_rate": "24000", "frame_rate": "10.0", "model": "other-tool"})
    latent, meta = load_latent(path)
    assert latent.dtype == torch.float32
    assert meta == LatentMeta(sample_rate=24000, hop_length=256, frame_rate=10.0, num_samples=24000, model="other-tool")


@pytest.mark.parametrize("tensors, metadata, reason", [
    ({"latent": torch.randn(80, 4)}, {"frame_rate": "fast"}, "bad latent metadata frame_rate='fast'"),
    ({"latent": torch.randn(80, 4)}, {"sample_rate": "0"}, "bad latent metadata sample_rate"),
    ({"latent": torch.randn(80, 4)}, {"frame_rate": "inf"}, "bad latent metadata frame_rate"),
    ({"latent": torch.randn(1, 80, 4)}, {}, r"\(D, frames\) tensor, got torch.float32 of shape \(1, 80, 4\)"),
    ({"latent": torch.zeros(80, 4, dtype=torch.int64)}, {}, "floating-point"),
    ({"z": torch.randn(80, 4)}, {}, "no 'latent' tensor"),
])
def test_latent_wrong_contents_name_the_file(tmp_path, tensors, metadata, reason):
    _refused(tmp_path, tensors, metadata, load_latent, LatentFileError, reason)
