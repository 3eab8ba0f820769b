"""dcae reconstruct / encode / decode on real speech and generated audio, including bad inputs."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from dcae.cli.audio import decode_command, encode_command, reconstruct_command
from dcae.corpus import LatentMeta, load_latent, save_latent, weights_hash

TINY = "dcae/configs/tiny.json"


def flags(generator, vocoder=None):
    f = ["--ae-model", str(generator), "--ae-config", TINY, "--device", "cpu"]
    return f + (["--vocoder", str(vocoder)] if vocoder is not None else [])


def test_reconstruct_folder_with_bad_inputs(tiny_generator, small_vocoder, tmp_path, speech_files):
    opts = flags(tiny_generator, small_vocoder)
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    sf.write(src / "sub" / "tone.wav", (0.3 * np.sin(np.arange(16000) / 7)).astype(np.float32), 16000)
    sf.write(src / "speech.flac", sf.read(speech_files[0])[0], sf.info(speech_files[0]).samplerate)
    (src / "corrupt.wav").write_bytes(b"RIFF" + bytes(300))
    (src / "empty.wav").write_bytes(b"")
    sf.write(src / "silent.wav", np.zeros(8000, np.float32), 16000)
    sf.write(src / "nan.wav", np.full(8000, np.nan, np.float32), 16000, subtype="FLOAT")
    result = CliRunner().invoke(reconstruct_command, [str(src), "-o", str(tmp_path / "out")] + opts)
    assert result.exit_code == 1, result.output
    for name, reason in [("corrupt", "not a readable audio file"), ("empty", "empty file"),
                         ("silent", "silent audio"), ("nan", "audio contains NaN")]:
        assert f"{src / name}.wav: {reason}" in result.output
    out_tone = tmp_path / "out" / "sub" / "tone.wav"
    assert sf.info(out_tone).samplerate == 22050 and sf.info(out_tone).frames == -(-16000 * 22050 // 16000)
    assert (tmp_path / "out" / "speech.wav").is_file()
    # existing outputs are skipped without -f, rewritten with -f
    again = CliRunner().invoke(reconstruct_command, [str(src / "sub"), "-o", str(tmp_path / "out" / "sub")] + opts)
    assert again.exit_code == 0 and "1 skipped" in again.output
    forced = CliRunner().invoke(reconstruct_command, [str(src / "sub"), "-o", str(tmp_path / "out" / "sub"), "-f"] + opts)
    assert forced.exit_code == 0 and "1 written" in forced.output


def test_encode_without_vocoder_then_decode(tiny_generator, small_vocoder, tmp_path, speech_files):
    opts = flags(tiny_generator, small_vocoder)
    result = CliRunner().invoke(encode_command, [str(speech_files[0]), "-o", str(tmp_path / "z.safetensors")]
                                + flags(tiny_generator))
    assert result.exit_code == 0, result.output
    latent, meta = load_latent(tmp_path / "z.safetensors")
    assert latent.shape[0] == 80 and meta.sample_rate == 22050 and meta.hop_length == 256
    assert latent.shape[1] == -(-meta.num_samples // 4096) and len(meta.model) == 16
    result = CliRunner().invoke(decode_command, [str(tmp_path / "z.safetensors"), "-o", str(tmp_path / "y.wav")]
                                + opts)
    assert result.exit_code == 0, result.output
    assert sf.info(tmp_path / "y.wav").frames == meta.num_samples
    (tmp_path / "bad.safetensors").write_bytes(b"junk")
    bad = CliRunner().invoke(decode_command, [str(tmp_path / "bad.safetensors"), "-o", str(tmp_path / "d")] + opts)
    assert bad.exit_code == 1 and f"error: {tmp_path / 'bad.safetensors'}: " in bad.output and "Traceback" not in bad.output


def test_missing_model_exits_2(tmp_path):
    sf.write(tmp_path / "x.wav", tone(16000), 16000)
    result = CliRunner().invoke(encode_command, [str(tmp_path / "x.wav"), "-o", str(tmp_path),
                                                 "--ae-model", str(tmp_path / "none.pt")])
    assert result.exit_code == 2 and "AE checkpoint not found" in result.output
    assert len(result.output.strip().splitlines()) == 1


def tone(sr: int, seconds: float = 1.0) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


def outputs(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# ---------------------------------------------------------------- two inputs, one output name
def test_colliding_outputs_are_refused_before_anything_is_written(tiny_generator, small_vocoder, tmp_path):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    sf.write(src / "sub" / "x.wav", tone(16000), 16000)
    sf.write(src / "sub" / "x.flac", tone(22050), 22050)
    sf.write(src / "y.wav", tone(16000), 16000)
    opts = flags(tiny_generator, small_vocoder)
    for command, suffix in ((reconstruct_command, ".wav"), (encode_command, ".safetensors")):
        for force in ([], ["-f"]):
            out = tmp_path / f"out{suffix}{len(force)}"
            result = CliRunner().invoke(command, [str(src), "-o", str(out), *force] + opts)
            assert result.exit_code == 2, result.output
            line = f"{src / 'sub' / 'x.flac'} and {src / 'sub' / 'x.wav'} would both write {out / 'sub' / 'x'}{suffix}"
            assert line in result.output and len(result.output.strip().splitlines()) == 1
            assert outputs(out) == []
    # the same name from two input folders
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        save_latent(tmp_path / d / "z.safetensors", torch.zeros(80, 2), LatentMeta(22050, 256, 22050 / 4096, 8192, ""))
    out = tmp_path / "decoded"
    result = CliRunner().invoke(decode_command, [str(tmp_path / "a"), str(tmp_path / "b"), "-o", str(out)] + opts)
    assert result.exit_code == 2 and "would both write" in result.output and outputs(out) == []


# ---------------------------------------------------------------- output format from the extension
@pytest.mark.parametrize("suffix, codec", [(".mp3", "mp3"), (".flac", "flac"), (".ogg", "vorbis"), (".wav", "pcm_s16le")])
def test_reconstruct_writes_the_format_its_extension_names(tiny_generator, small_vocoder, tmp_path, suffix, codec):
    from torchcodec.decoders import AudioDecoder

    sf.write(tmp_path / "in.wav", tone(22050), 22050)
    out = tmp_path / f"out{suffix}"
    result = CliRunner().invoke(reconstruct_command, [str(tmp_path / "in.wav"), "-o", str(out)]
                                + flags(tiny_generator, small_vocoder))
    assert result.exit_code == 0, result.output
    meta = AudioDecoder(str(out)).metadata
    assert meta.codec == codec and meta.sample_rate == 22050 and abs(meta.duration_seconds - 1.0) < 0.1


def test_unwritable_audio_extension_is_refused_before_the_models_load(tmp_path):
    sf.write(tmp_path / "in.wav", tone(22050), 22050)
    result = CliRunner().invoke(reconstruct_command, [str(tmp_path / "in.wav"), "-o", str(tmp_path / "out.xyz"),
                                                      "--ae-model", str(tmp_path / "none.pt")])
    assert result.exit_code == 2 and f"{tmp_path / 'out.xyz'}: cannot write audio as '.xyz'" in result.output
    assert len(result.output.strip().splitlines()) == 1 and outputs(tmp_path) == ["in.wav"]
    result = CliRunner().invoke(encode_command, [str(tmp_path / "in.wav"), "-o", str(tmp_path / "z.pt"),
                                                 "--ae-model", str(tmp_path / "none.pt")])
    assert result.exit_code == 2 and "latent files are .safetensors" in result.output


# ---------------------------------------------------------------- latents of another autoencoder
def test_decode_warns_when_the_latents_come_from_another_autoencoder(tiny_generator, small_vocoder, tmp_path):
    from tests.conftest import write_tiny_generator

    sf.write(tmp_path / "in.wav", tone(22050), 22050)
    assert CliRunner().invoke(encode_command, [str(tmp_path / "in.wav"), "-o", str(tmp_path / "z.safetensors")]
                              + flags(tiny_generator)).exit_code == 0
    latent, meta = load_latent(tmp_path / "z.safetensors")
    torch.manual_seed(7)
    other = write_tiny_generator(tmp_path / "other.pt")
    same = CliRunner().invoke(decode_command, [str(tmp_path / "z.safetensors"), "-o", str(tmp_path / "a.wav")]
                              + flags(tiny_generator, small_vocoder))
    assert same.exit_code == 0 and "warning" not in same.output
    foreign = CliRunner().invoke(decode_command, [str(tmp_path / "z.safetensors"), "-o", str(tmp_path / "b.wav")]
                                 + flags(other, small_vocoder))
    assert foreign.exit_code == 0 and (tmp_path / "b.wav").is_file()
    warnings = [line for line in foreign.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and meta.model in warnings[0] and weights_hash(other) in warnings[0]
    # latents from elsewhere (no model recorded) decode silently
    save_latent(tmp_path / "plain.safetensors", latent, LatentMeta(22050, 256, 22050 / 4096, meta.num_samples, ""))
    plain = CliRunner().invoke(decode_command, [str(tmp_path / "plain.safetensors"), "-o", str(tmp_path / "c.wav")]
                               + flags(other, small_vocoder))
    assert plain.exit_code == 0 and "warning" not in plain.output


# ---------------------------------------------------------------- offline: everything at once, inputs first
@pytest.fixture
def offline_empty_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from dcae import hub

    monkeypatch.setattr(hub, "_hub_reachable", lambda: False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))


def test_offline_names_every_file_to_fetch_and_every_flag_at_once(offline_empty_cache, tiny_generator, tmp_path):
    sf.write(tmp_path / "in.wav", tone(22050), 22050)
    result = CliRunner().invoke(reconstruct_command, [str(tmp_path / "in.wav"), "-o", str(tmp_path / "out.wav")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    for needed in ("generator_700000.pt", "KdaiP/DC-Speech-VAE", "config.json", "bigvgan_generator.pt",
                   "nvidia/bigvgan_v2_22khz_80band_256x", "--ae-model", "--vocoder"):
        assert needed in result.output, needed
    # what is given locally is not asked for; encode needs no vocoder weights
    vocoder_only = CliRunner().invoke(reconstruct_command, [str(tmp_path / "in.wav"), "-o", str(tmp_path / "o.wav"),
                                                            "--ae-model", str(tiny_generator), "--ae-config", TINY])
    assert vocoder_only.exit_code == 2 and "bigvgan_generator.pt" in vocoder_only.output
    assert "generator_700000.pt" not in vocoder_only.output and "--ae-model" not in vocoder_only.output
    encode = CliRunner().invoke(encode_command, [str(tmp_path / "in.wav"), "-o", str(tmp_path / "z.safetensors")])
    assert encode.exit_code == 2 and "generator_700000.pt" in encode.output and "bigvgan" not in encode.output


def test_missing_input_is_reported_before_any_model_lookup(offline_empty_cache, tmp_path):
    result = CliRunner().invoke(reconstruct_command, [str(tmp_path / "nosuch.wav"), "-o", str(tmp_path / "out.wav")])
    assert result.exit_code == 1 and f"error: {tmp_path / 'nosuch.wav'}: file not found" in result.output
    assert "generator_700000.pt" not in result.output


# ---------------------------------------------------------------- --vocoder DIR/config.json, one resampler
def test_encode_uses_the_vocoder_config_it_is_given(tiny_generator, small_vocoder, tmp_path):
    sf.write(tmp_path / "in.wav", tone(22050), 22050)
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    config = json.loads((small_vocoder / "config.json").read_text())
    (narrow / "config.json").write_text(json.dumps(dict(config, fmax=4000)))

    def encode(*extra: str) -> torch.Tensor:
        out = tmp_path / f"z{len(list(tmp_path.glob('z*')))}.safetensors"
        result = CliRunner().invoke(encode_command, [str(tmp_path / "in.wav"), "-o", str(out), *extra]
                                    + flags(tiny_generator))
        assert result.exit_code == 0, result.output
        return load_latent(out)[0]

    default, folder, file = encode(), encode("--vocoder", str(narrow)), encode("--vocoder", str(narrow / "config.json"))
    assert not torch.allclose(default, folder) and torch.equal(folder, file)
    # a full vocoder given by its config.json path works like its folder
    result = CliRunner().invoke(reconstruct_command, [str(tmp_path / "in.wav"), "-o", str(tmp_path / "r.wav")]
                                + flags(tiny_generator, small_vocoder / "config.json"))
    assert result.exit_code == 0, result.output


def test_wrapper_without_vocoder_reads_the_mel_config_it_is_given(tiny_generator, small_vocoder, tmp_path,
                                                                  offline_empty_cache):
    from huggingface_hub import constants

    from dcae.pipeline import DCAEInferenceWrapper

    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((small_vocoder / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(dict(config, fmax=4000, n_fft=2048, win_size=2048)))
    # a hub id: its config.json comes from the Hugging Face cache (offline here), as for the full vocoder
    cached = Path(constants.HF_HUB_CACHE) / "models--someone--bigvgan" / "snapshots" / ("0" * 40)
    cached.mkdir(parents=True)
    (cached / "config.json").write_text((other / "config.json").read_text())
    (cached.parents[1] / "refs").mkdir()
    (cached.parents[1] / "refs" / "main").write_text("0" * 40)

    def transform(vocoder):
        return DCAEInferenceWrapper(tiny_generator, TINY, vocoder, device="cpu", with_vocoder=False).transform

    packaged = transform(None)
    for given in (other, other / "config.json", "someone/bigvgan"):
        t = transform(given)
        assert t.n_fft == 2048 and t.win_length == 2048 != packaged.n_fft, given
    with pytest.raises(Exception, match="not found"):
        transform(tmp_path / "nope" / "config.json")


def test_file_path_and_tensor_path_give_the_same_latent(tiny_generator, tmp_path):
    from dcae.audio import load_audio
    from dcae.pipeline import DCAEInferenceWrapper

    rng = np.random.default_rng(0)
    sf.write(tmp_path / "in.wav", (0.2 * rng.standard_normal(48000)).astype(np.float32), 48000, subtype="FLOAT")
    result = CliRunner().invoke(encode_command, [str(tmp_path / "in.wav"), "-o", str(tmp_path / "z.safetensors")]
                                + flags(tiny_generator))
    assert result.exit_code == 0, result.output
    wrapper = DCAEInferenceWrapper(tiny_generator, TINY, device="cpu", with_vocoder=False)
    from_tensor = wrapper.encode(load_audio(tmp_path / "in.wav", sample_rate=None), 48000)[0]
    torch.testing.assert_close(load_latent(tmp_path / "z.safetensors")[0], from_tensor, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- inputs checked before any model is looked up
BAD_FILES = {  # name -> (writer, reason printed)
    "silent.wav": (lambda p: sf.write(p, np.zeros(8000, np.float32), 16000), "silent audio"),
    "nan.wav": (lambda p: sf.write(p, np.full(8000, np.nan, np.float32), 16000, subtype="FLOAT"), "audio contains NaN"),
    "corrupt.wav": (lambda p: p.write_bytes(b"RIFF" + bytes(300)), "not a readable audio file"),
    "empty.wav": (lambda p: p.write_bytes(b""), "empty file"),
    "short.wav": (lambda p: sf.write(p, tone(22050, 0.005), 22050), "too short"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
@pytest.mark.parametrize("command", [reconstruct_command, encode_command])
def test_a_bad_input_file_is_refused_before_any_model_is_looked_up(offline_empty_cache, tmp_path, name, command):
    """Offline with an empty cache, looking the models up would fail naming what to fetch: the input's
    problem comes first and alone."""
    write, reason = BAD_FILES[name]
    write(tmp_path / name)
    out = tmp_path / ("out.wav" if command is reconstruct_command else "out.safetensors")
    result = CliRunner().invoke(command, [str(tmp_path / name), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert f"error: {tmp_path / name}: {reason}" in result.output
    assert "generator_700000.pt" not in result.output and not out.exists()


def test_folder_inputs_are_checked_up_front_broken_links_named(offline_empty_cache, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    sf.write(src / "good.wav", tone(22050), 22050)
    BAD_FILES["corrupt.wav"][0](src / "corrupt.wav")
    BAD_FILES["empty.wav"][0](src / "empty.wav")
    (src / "gone.flac").symlink_to(tmp_path / "deleted.flac")
    result = CliRunner().invoke(reconstruct_command, [str(src), "-o", str(tmp_path / "out")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2  # then the model lookup fails (offline), after the inputs were named
    expected = [f"error: {src / 'corrupt.wav'}: not a readable audio file", f"error: {src / 'empty.wav'}: empty file",
                f"error: {src / 'gone.flac'}: broken symbolic link (to {tmp_path / 'deleted.flac'})"]
    assert all(line.startswith(start) for line, start in zip(lines[:3], expected, strict=True)), lines
    assert len(lines) == 4 and "generator_700000.pt" in lines[3]


def test_a_bad_latent_is_refused_before_the_models(offline_empty_cache, tmp_path):
    latent = torch.zeros(80, 4)
    latent[0, 0] = float("nan")
    save_latent(tmp_path / "nan.safetensors", latent, LatentMeta(22050, 256, 22050 / 4096, 16384, "x"))
    result = CliRunner().invoke(decode_command, [str(tmp_path / "nan.safetensors"), "-o", str(tmp_path / "o.wav")])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {tmp_path / 'nan.safetensors'}: latent contains NaN or Inf values"


def test_a_log_file_reads_line_by_line(tiny_generator, small_vocoder, tmp_path):
    """stderr not a terminal (a job's log): no bar fragments; the error line and the summary, each a line."""
    src = tmp_path / "in"
    src.mkdir()
    for i in range(3):
        sf.write(src / f"{i}.wav", tone(22050) if i != 1 else np.zeros(22050, np.float32), 22050)
    result = CliRunner().invoke(reconstruct_command, [str(src), "-o", str(tmp_path / "out")]
                                + flags(tiny_generator, small_vocoder))
    assert result.exit_code == 1
    assert result.output.splitlines() == [f"error: {src / '1.wav'}: silent audio (peak 0.00e+00)",
                                          "reconstruct: 2 written, 0 skipped (exist; -f to overwrite), 1 failed"]


def test_packaged_config_by_name(tiny_generator, tmp_path):
    sf.write(tmp_path / "in.wav", tone(22050), 22050)
    result = CliRunner().invoke(encode_command, [str(tmp_path / "in.wav"), "-o", str(tmp_path / "z.safetensors"),
                                                 "--ae-model", str(tiny_generator), "--ae-config", "tiny"])
    assert result.exit_code == 0, result.output
    mismatch = CliRunner().invoke(encode_command, [str(tmp_path / "in.wav"), "-o", str(tmp_path / "y.safetensors"),
                                                   "--ae-model", str(tiny_generator), "--ae-config", "default"])
    assert mismatch.exit_code == 2 and "(--ae-config tiny)" in mismatch.output
