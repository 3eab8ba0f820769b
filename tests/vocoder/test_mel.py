"""vocoder.mel equals bigvgan.meldataset.mel_spectrogram (the vocoder's own features)."""
from __future__ import annotations

import torch
from bigvgan.meldataset import mel_spectrogram

from dcae.audio import load_audio
from vocoder.mel import MelSpectrogram, load_bigvgan_config


def reference_mel(audio: torch.Tensor, h) -> torch.Tensor:
    return mel_spectrogram(audio, h.n_fft, h.num_mels, h.sampling_rate, h.hop_size, h.win_size, h.fmin, h.fmax)


def test_mel_parity_on_real_speech(speech_files):
    h = load_bigvgan_config()
    mel = MelSpectrogram()
    assert (mel.sample_rate, mel.hop_length, mel.n_mels) == (22050, 256, 80)
    for path in speech_files[:6] + speech_files[-3:]:
        audio = load_audio(path, mel.sample_rate)
        ours, ref = mel(audio), reference_mel(audio.unsqueeze(0), h)
        assert ours.shape == ref.shape == (1, 80, audio.shape[0] // 256)
        assert ((ours - ref).abs().max() / ref.abs().max()).item() < 1e-5, path


def test_batch_and_chunks_equal_whole(speech_files):
    mel = MelSpectrogram()
    audio = load_audio(speech_files[0], mel.sample_rate)[: 256 * 64]
    batch = torch.stack([audio, audio * 0.5])
    whole = mel(batch)
    torch.testing.assert_close(whole[0], mel(audio)[0], rtol=0, atol=1e-6)
    padded = mel.pad(batch)
    part = mel.from_padded(padded[:, 16 * 256: 40 * 256 + mel.n_fft - mel.hop_length])
    torch.testing.assert_close(part, whole[..., 16:40], rtol=0, atol=1e-6)


def test_config_from_folder(tmp_path):
    import json
    import shutil

    from vocoder.mel import PACKAGED_CONFIG
    shutil.copy(PACKAGED_CONFIG, tmp_path / "config.json")
    assert load_bigvgan_config(tmp_path) == json.loads(PACKAGED_CONFIG.read_text())


def test_padded_window_equals_a_slice_of_the_whole_padding():
    """Encode pads window by window (memory flat with length): every slice equals the whole signal's
    zero padding + reflect padding, sliced, including windows over both reflected edges."""
    mel = MelSpectrogram()
    generator = torch.Generator().manual_seed(0)
    for samples, length in ((5000, 8192), (8192, 8192), (700, 4096), (300, 512)):
        audio = torch.randn(2, samples, generator=generator)
        whole = mel.pad(torch.nn.functional.pad(audio, (0, length - samples)))
        for start, stop in ((0, 1500), (0, whole.shape[-1]), (200, 3000), (length - 900, length + 2 * mel.padding),
                            (length // 2, length // 2 + 1)):
            start, stop = max(start, 0), min(stop, whole.shape[-1])
            assert torch.equal(mel.padded_window(audio, start, stop, length), whole[:, start:stop]), (samples, start)
