"""The ASR path of ``--asr`` on a tiny Whisper with random weights built from a config (plumbing only:
its transcripts are meaningless): our transcripts equal the model's own ``generate`` + decode, and an
unreachable model is refused in one line."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.asr import ASRUnavailable, load_asr
from tests.evaluation.tiny_models import tiny_whisper, tiny_xvector


@pytest.fixture(scope="module")
def whisper_folder(tmp_path_factory):
    return tiny_whisper(tmp_path_factory.mktemp("asr") / "tiny-whisper")


def test_transcripts_equal_the_models_own_generate(whisper_folder):
    import transformers as tf

    asr = load_asr(str(whisper_folder), language="en", batch_size=2)
    assert asr.kind == "whisper" and asr.spelling == {"colour": "color"}
    rng = np.random.default_rng(0)
    audios = [rng.standard_normal(n).astype(np.float32) * 0.1 for n in (16000, 24000, 8000)]
    texts = asr.transcribe(audios)

    processor = tf.WhisperProcessor.from_pretrained(str(whisper_folder))
    model = tf.WhisperForConditionalGeneration.from_pretrained(str(whisper_folder)).eval()
    direct = []
    for audio in audios:
        features = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
        with torch.inference_mode():
            ids = model.generate(features, language="en", task="transcribe", num_beams=1, do_sample=False)
        direct.append(" ".join(processor.tokenizer.batch_decode(ids, skip_special_tokens=True)[0].split()))
    assert texts == direct
    assert all(isinstance(t, str) for t in texts) and any(texts)


def test_long_audio_is_cut_into_30_second_windows(whisper_folder):
    asr = load_asr(str(whisper_folder))
    rng = np.random.default_rng(1)
    first, second = (rng.standard_normal(30 * 16000).astype(np.float32) * 0.1 for _ in range(2))
    joined = asr.transcribe([np.concatenate([first, second])])[0]
    parts = asr.transcribe([first, second])
    assert joined == " ".join(" ".join(parts).split())


def test_unusable_models_are_refused_in_one_line(tmp_path):
    with pytest.raises(ASRUnavailable, match="hf download someone/missing-model --local-dir DIR"):
        load_asr("someone/missing-model")
    with pytest.raises(ASRUnavailable, match="no such folder"):
        load_asr(str(tmp_path / "nowhere"))
    speaker_model = tiny_xvector(tmp_path / "xvector")
    with pytest.raises(ASRUnavailable, match="neither Whisper nor a CTC ASR model") as e:
        load_asr(str(speaker_model))
    assert "\n" not in str(e.value)
