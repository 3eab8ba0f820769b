"""dcae reconstruct / encode / decode on real speech and generated audio, including bad inputs."""
from __future__ import annotations

import numpy as np
import soundfile as sf
from click.testing import CliRunner

from dcae.latents import load_latent
from inference import decode_command, encode_command, reconstruct_command

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
    result = CliRunner().invoke(encode_command, ["x.wav", "-o", str(tmp_path), "--ae-model", str(tmp_path / "none.pt")])
    assert result.exit_code == 2 and "AE checkpoint not found" in result.output
    assert len(result.output.strip().splitlines()) == 1
