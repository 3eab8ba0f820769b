"""DCAEInferenceWrapper's windows come from the computed receptive fields: chunked encode / decode /
vocode and streaming equal whole-signal processing (real speech, random weights); a model with
attention along time is processed whole; a smaller streaming lookahead is an approximation."""
from __future__ import annotations

import json
import math

import pytest
import torch

from dcae import DCAEWrapper, save_generator
from dcae.pipeline import DCAEInferenceWrapper
from tests.conftest import DEFAULT_CONFIG, VOCODER_CONFIG, write_small_vocoder
from tests.dcae.test_receptive_field import ATTENTION, CONV_OPTIONS, TINY
from vocoder.bigvgan_loader import build_generator, save_vocoder_folder
from vocoder.mel import load_bigvgan_config

WHOLE = 10**6  # chunk size that makes one window


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """Generators for the tiny, every-conv-option and attention configs; a BigVGAN with the v2 22 kHz
    structure (kernels 3/7/11, dilations 1/3/5, receptive field +-38 mel frames) but 64 channels, and a
    cheaper one (one kernel, +-14 mel frames) for the streaming tests."""
    root = tmp_path_factory.mktemp("windows")
    for i, (name, config) in enumerate([("tiny", TINY), ("conv_options", CONV_OPTIONS), ("attention", ATTENTION)]):
        torch.manual_seed(i)
        (root / f"{name}.json").write_text(json.dumps(config))
        save_generator(DCAEWrapper(config), root / f"{name}.pt")
    torch.manual_seed(5)
    config = dict(load_bigvgan_config(VOCODER_CONFIG), upsample_initial_channel=64)
    save_vocoder_folder(root / "vocoder", build_generator(config), config)
    write_small_vocoder(root / "small_vocoder", dilations=[[1, 3]])
    return root


def wrapper(root, name: str, vocoder: str = "small_vocoder", device="cpu", **kwargs) -> DCAEInferenceWrapper:
    return DCAEInferenceWrapper(root / f"{name}.pt", root / f"{name}.json", root / vocoder, device=device, **kwargs)


@pytest.fixture(scope="module")
def speech(speech_files):
    """About 9 s of real speech at 22050 Hz (several recordings end to end)."""
    from dcae.audio import load_audio

    return torch.cat([load_audio(p, 22050) for p in speech_files[:6]])


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("name", ["tiny", "conv_options"])
def test_chunked_equals_whole(root, speech, name, on_device):
    w = wrapper(root, name, vocoder="vocoder", device=on_device)
    enc, dec, voc = w.encoder_field, w.decoder_field, w.vocoder_field
    assert voc.left == voc.right == 38
    whole = w.encode(speech, 22050, chunk_frames=WHOLE)
    frames = whole.shape[-1]
    assert frames > 3 + enc.left + enc.right + 3 and frames > 3 + dec.left + dec.right + 3  # several windows
    assert rel(w.encode(speech, 22050, chunk_frames=3), whole) < 1e-5
    assert torch.equal(w.encode(speech, 22050), whole)  # the default (memory-sized) window holds it all
    mel = w.decode_mel(whole, chunk_frames=WHOLE)
    assert rel(w.decode_mel(whole, chunk_frames=3), mel) < 1e-5
    w.vocoder_window = WHOLE
    audio = w.vocode(mel)
    w.vocoder_window = 40
    assert rel(w.vocode(mel), audio) < 1e-5
    assert rel(w.decode(whole), audio) < 1e-5


@pytest.mark.usefixtures("one_torch_thread")
def test_streaming_exact_lookahead_equals_whole(root, speech, on_device):
    w = wrapper(root, "tiny", vocoder_window=WHOLE, device=on_device)
    latent = w.encode(speech, 22050)
    whole = w.decode(latent)
    assert w.max_lookahead == w.decoder_field.right == 6
    for chunk_frames, sizes in [(4, [1]), (1, [3, 1, 5]), (3, [latent.shape[-1]])]:
        pieces, start = [], 0
        while start < latent.shape[-1]:  # latent chunks of varying sizes, as a generator would send them
            size = sizes[len(pieces) % len(sizes)]
            pieces.append(latent[..., start: start + size])
            start += size
        out = list(w.stream_decode(pieces, chunk_frames=chunk_frames))
        assert len(out) > 2 and all(a.shape[-1] % w.hop_length == 0 for a in out)
        assert rel(torch.cat(out, dim=-1), whole) < 1e-5


def first_audio_after(w: DCAEInferenceWrapper, latent: torch.Tensor, **kwargs) -> tuple[int, torch.Tensor]:
    """(latent frames sent before the first audio came out, the whole streamed audio); one frame at a time."""
    sent = []

    def frames():
        for t in range(latent.shape[-1]):
            sent.append(t)
            yield latent[..., t: t + 1]

    chunks = []
    first = None
    for audio in w.stream_decode(frames(), **kwargs):
        first = len(sent) if first is None else first
        chunks.append(audio)
    return first, torch.cat(chunks, dim=-1)


@pytest.mark.usefixtures("one_torch_thread")
def test_lookahead_trades_latency_for_error(root, speech):
    w = wrapper(root, "tiny")
    latent = w.encode(speech, 22050)
    whole = w.decode(latent)
    errors, latencies = [], []
    for lookahead in range(w.max_lookahead + 1):
        first, audio = first_audio_after(w, latent, chunk_frames=2, lookahead=lookahead)
        assert audio.shape == whole.shape
        errors.append(((audio - whole).norm() / whole.norm()).item())
        latencies.append(first)
    print("lookahead -> relative L2 error, first audio after N frames:",
          [f"{k}: {e:.1e} / {n}" for k, (e, n) in enumerate(zip(errors, latencies))])
    assert errors[-1] < 1e-6 and errors[0] > 1e-3  # exact at the receptive field, approximate below it
    # audio starts once chunk + lookahead frames are in, plus what BigVGAN's own field needs
    extra = math.ceil((w.vocoder_field.right + 1) / w.compression)
    assert all(n <= 2 + k + extra for k, n in enumerate(latencies)) and latencies == sorted(latencies)
    assert latencies[-1] < latent.shape[-1]  # it streams: audio before the last frame was sent
    with pytest.raises(ValueError, match="lookahead must be 0..6"):
        next(w.stream_decode([latent], lookahead=7))


@pytest.mark.usefixtures("one_torch_thread")
def test_attention_config_is_processed_whole(root, speech):
    w = wrapper(root, "attention")
    assert w.encoder_field.is_global and w.decoder_field.is_global and w.max_lookahead is None
    audio = speech[: 22050 * 4]
    whole = w.encode(audio, 22050, chunk_frames=WHOLE)
    assert torch.equal(w.encode(audio, 22050, chunk_frames=2), whole)  # one window, whatever was asked
    # what chunking would have given: not the same numbers (so it must not be done)
    half = whole.shape[-1] // 2
    assert rel(w.encode(audio[: half * w.padding_factor], 22050), whole[..., :half]) > 1e-3
    decoded = w.decode(whole)
    assert torch.equal(w.decode(whole, chunk_frames=2), decoded)
    streamed = list(w.stream_decode([whole[..., i: i + 1] for i in range(whole.shape[-1])]))
    assert rel(torch.cat(streamed, dim=-1), decoded) < 1e-5
    with pytest.raises(ValueError, match=r"global \(EfficientViTBlock.*lookahead=None"):
        next(w.stream_decode([whole], lookahead=2))


@pytest.mark.usefixtures("one_torch_thread")
def test_progress_reports_seconds_of_audio(root, speech):
    w = wrapper(root, "tiny", vocoder_window=100)
    calls = []
    out = w(speech, 22050, progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert out.shape == (1, speech.shape[0])
    for stage in ("encode", "decode", "vocode"):
        done = [c[1] for c in calls if c[0] == stage]
        total = {c[2] for c in calls if c[0] == stage}
        assert done == sorted(done) and len(total) == 1 and done[-1] == pytest.approx(total.pop())
        assert done[-1] >= speech.shape[0] / 22050
    assert len([c for c in calls if c[0] == "vocode"]) > 1


@pytest.mark.slow  # ~15 s on 2 quiet cores (190M parameters); its receptive field is checked in the default run
def test_default_config_chunked_equals_whole(root, speech_files, tmp_path):
    """The published 190M configuration (random weights) on ~11 s of real speech: two windows each."""
    from dcae.audio import load_audio

    torch.manual_seed(4)
    save_generator(DCAEWrapper(DEFAULT_CONFIG), tmp_path / "generator.pt")
    w = DCAEInferenceWrapper(tmp_path / "generator.pt", DEFAULT_CONFIG, root / "vocoder", device="cpu")
    assert (str(w.encoder_field), str(w.decoder_field)) == ("-13/+12", "-14/+14")
    audio = torch.cat([load_audio(p, 22050) for p in speech_files[8:12]])[: 58 * w.padding_factor]
    whole = w.encode(audio, 22050, chunk_frames=WHOLE)
    assert whole.shape[-1] == 58  # > 29 + 13 + 12 and > 29 + 14 + 14: two windows each
    assert rel(w.encode(audio, 22050, chunk_frames=29), whole) < 1e-5
    assert rel(w.decode_mel(whole, chunk_frames=29), w.decode_mel(whole, chunk_frames=WHOLE)) < 1e-5
