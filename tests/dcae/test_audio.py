"""dcae.audio: decoding (torchcodec + soundfile fallback), checks, resampling, atomic WAV writing."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import soundfile as sf
import torch

from dcae.audio import AudioError, audio_info, check_audio, check_output_suffix, load_audio, resample, save_audio


def tone(sr: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    x = 0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def test_load_resamples_and_downmixes(tmp_path):
    sf.write(tmp_path / "st.flac", tone(16000, 1.0, channels=2), 16000)
    audio = load_audio(tmp_path / "st.flac")
    assert audio.dtype == torch.float32 and audio.shape == (22050,)
    info = audio_info(tmp_path / "st.flac")
    assert (info.sample_rate, info.num_channels, info.num_samples) == (16000, 2, 16000)
    assert load_audio(tmp_path / "st.flac", None).shape == (16000,)


def test_offset_and_duration_decode_only_that_range(tmp_path):
    sf.write(tmp_path / "a.wav", tone(22050, 2.0), 22050, subtype="FLOAT")
    whole = load_audio(tmp_path / "a.wav")
    part = load_audio(tmp_path / "a.wav", offset=0.5, duration=0.25)
    assert part.shape == (5512,) or part.shape == (5513,)
    torch.testing.assert_close(part, whole[11025:11025 + part.shape[0]], atol=1e-6, rtol=0)


def test_soundfile_fallback_matches(tmp_path, monkeypatch):
    sf.write(tmp_path / "a.wav", tone(22050, 0.5), 22050, subtype="FLOAT")
    expected = load_audio(tmp_path / "a.wav")

    def broken(*_args, **_kwargs):
        raise RuntimeError("FFmpeg unavailable")

    monkeypatch.setattr("dcae.audio._torchcodec_decoder", broken)
    torch.testing.assert_close(load_audio(tmp_path / "a.wav"), expected)


@pytest.mark.parametrize("name,content,reason", [
    ("empty.wav", b"", "empty file"),
    ("corrupt.wav", b"RIFF" + bytes(range(256)) * 8, "not a readable audio file"),
    ("text.mp3", b"hello\n" * 100, "not a readable audio file"),
])
def test_bad_files_raise_one_line(tmp_path, name, content, reason):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(AudioError) as e:
        load_audio(tmp_path / name)
    assert str(e.value).startswith(f"{tmp_path / name}: {reason}") and "\n" not in str(e.value)


def test_missing_and_header_only(tmp_path):
    with pytest.raises(AudioError, match="file not found"):
        load_audio(tmp_path / "nope.wav")
    sf.write(tmp_path / "h.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(tmp_path / "h.wav")


@pytest.mark.parametrize("audio,reason", [
    (torch.zeros(0), "empty"), (torch.full((4000,), 0.1), None), (torch.zeros(4000), "silent"),
    (torch.tensor([0.1] * 100), "too short"), (torch.tensor([0.1, float("nan")] * 2000), "NaN"),
])
def test_check_audio(audio, reason):
    if reason is None:
        check_audio(audio, "x.wav")
        return
    with pytest.raises(AudioError, match=reason):
        check_audio(audio, "x.wav")


def test_save_audio_roundtrip_atomic(tmp_path):
    x = torch.from_numpy(tone(22050, 0.5)).unsqueeze(0)
    save_audio(tmp_path / "sub" / "o.wav", x, 22050)
    y, sr = sf.read(tmp_path / "sub" / "o.wav", dtype="float32")
    assert sr == 22050 and np.abs(y - x[0].numpy()).max() < 1e-4
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["o.wav"]  # no temporary left behind


def test_files_and_tensors_are_resampled_alike(tmp_path):
    """One resampler: load_audio(path, rate) == resample(load_audio(path, None), native, rate)."""
    rng = np.random.default_rng(0)
    for sr in (48000, 16000, 44100):
        sf.write(tmp_path / f"a{sr}.wav", (0.2 * rng.standard_normal(sr)).astype(np.float32), sr, subtype="FLOAT")
        native = load_audio(tmp_path / f"a{sr}.wav", None)
        assert torch.equal(load_audio(tmp_path / f"a{sr}.wav"), resample(native, sr, 22050))
        part = load_audio(tmp_path / f"a{sr}.wav", offset=0.25, duration=0.5)
        assert torch.equal(part, resample(load_audio(tmp_path / f"a{sr}.wav", None, offset=0.25, duration=0.5), sr, 22050))


@pytest.mark.parametrize("orig, new", [(48000, 22050), (16000, 22050), (44100, 22050), (8000, 22050), (22050, 16000)])
def test_resample_in_blocks_equals_one_pass(monkeypatch, orig, new):
    from scipy.signal import resample_poly

    import dcae.audio

    x = torch.from_numpy(np.random.default_rng(1).standard_normal((2, 3 * orig + 17)).astype(np.float32))
    one_pass = resample(x, orig, new)
    ratio = Fraction(new, orig)
    reference = resample_poly(x.double().numpy(), ratio.numerator, ratio.denominator, axis=-1)
    assert one_pass.shape == (2, math.ceil(x.shape[-1] * new / orig)) and one_pass.dtype == torch.float32
    np.testing.assert_allclose(one_pass.double().numpy(), reference[:, :one_pass.shape[-1]], rtol=0, atol=1e-6)
    monkeypatch.setattr(dcae.audio, "RESAMPLE_BLOCK", 5000)  # many blocks, each with its context
    torch.testing.assert_close(resample(x, orig, new), one_pass, rtol=0, atol=1e-6)


@pytest.mark.parametrize("suffix, codec, rate", [  # Opus always decodes at 48 kHz
    (".mp3", "mp3", 22050), (".flac", "flac", 22050), (".ogg", "vorbis", 22050), (".m4a", "aac", 22050),
    (".opus", "opus", 48000), (".wav", "pcm_s16le", 22050)])
def test_save_audio_writes_the_format_its_extension_names(tmp_path, suffix, codec, rate):
    from torchcodec.decoders import AudioDecoder

    check_output_suffix(tmp_path / f"o{suffix}")
    save_audio(tmp_path / f"o{suffix}", torch.from_numpy(tone(22050, 1.0)), 22050)
    meta = AudioDecoder(str(tmp_path / f"o{suffix}")).metadata
    assert (meta.codec, meta.sample_rate) == (codec, rate) and abs(meta.duration_seconds - 1.0) < 0.1
    assert [p.name for p in tmp_path.iterdir()] == [f"o{suffix}"]


@pytest.mark.parametrize("name", ["o.xyz", "o", "o.wma"])
def test_unwritable_audio_extension_is_one_line(tmp_path, name):
    with pytest.raises(AudioError) as e:
        check_output_suffix(tmp_path / name)
    assert str(e.value).startswith(f"{tmp_path / name}: cannot write audio as") and "\n" not in str(e.value)
    with pytest.raises(AudioError):
        save_audio(tmp_path / name, torch.from_numpy(tone(22050, 0.2)), 22050)
    assert list(tmp_path.iterdir()) == []
