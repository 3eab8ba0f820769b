"""Speaker similarity (SIM): the CLI column equals a direct Resemblyzer call; it tells speakers apart."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from evaluation import speaker
from evaluation.metrics import resample_to

pytestmark = pytest.mark.skipif(speaker.encoder_available() is not None,
                                reason=f"{speaker.encoder_available()}")


def _direct_sim(ref_path, deg_path) -> float:
    """Resemblyzer as its README uses it: preprocess_wav(file) -> embed_utterance -> cosine."""
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder("cpu", verbose=False)
    a, b = (encoder.embed_utterance(preprocess_wav(path)) for path in (ref_path, deg_path))
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _utterances(speech_dir, folder: str, count: int, min_seconds: float) -> list[np.ndarray]:
    """``count`` utterances of one speaker at 16 kHz (the encoder's rate)."""
    waves = []
    for path in sorted((speech_dir / folder).glob("*.wav")):
        info = sf.info(str(path))
        if info.duration >= min_seconds:
            audio, rate = sf.read(str(path))
            waves.append(resample_to(audio, rate, speaker.ENCODER_RATE))
        if len(waves) == count:
            return waves
    pytest.skip(f"fewer than {count} utterances of >= {min_seconds} s in {speech_dir / folder}")


def test_cli_sim_equals_direct_encoder_call(speech_dir, tmp_path):
    """16 kHz files (no resampling on either side): the column is Resemblyzer's own number."""
    from dcae.cli.evaluate import evaluate_command

    sources = [p for p in sorted((speech_dir / "en").glob("*.wav")) if 2.0 < sf.info(str(p)).duration < 5.0][:2]
    rng = np.random.default_rng(3)
    for source in sources:
        clean, rate = sf.read(str(source))
        noisy = clean + rng.standard_normal(clean.size) * np.sqrt(np.mean(clean**2) / 10)  # 10 dB SNR
        for folder, audio in (("ref", clean), ("deg", noisy)):
            (tmp_path / folder).mkdir(exist_ok=True)
            sf.write(str(tmp_path / folder / source.name), audio, rate, subtype="FLOAT")
    result = CliRunner().invoke(evaluate_command, ["--ref", str(tmp_path / "ref"), "--deg", str(tmp_path / "deg"),
                                                   "--out", str(tmp_path / "out"), "--workers", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    with open(tmp_path / "out" / "metrics.csv", newline="") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    for source in sources:
        direct = _direct_sim(tmp_path / "ref" / source.name, tmp_path / "deg" / source.name)
        column = float(rows[source.name]["sim"])
        print(f"SIM {source.name}: column {column:.6f}, direct resemblyzer {direct:.6f}, |diff| {abs(column - direct):.1e}")
        assert abs(column - direct) < 1e-4
        assert 0.3 < column < 0.99  # noise lowers it, it is not a constant


def test_sim_of_a_file_with_itself_is_one(speech_dir):
    wave = _utterances(speech_dir, "en", 1, 2.0)[0]
    assert speaker.speaker_similarity(wave, wave, speaker.ENCODER_RATE) == pytest.approx(1.0, abs=1e-5)


def test_sim_is_higher_within_a_speaker_than_across(speech_dir):
    """alsa/: one male speaker (1.3-1.5 s clips); en/: one female speaker (3+ s prompts)."""
    male, female = _utterances(speech_dir, "alsa", 4, 1.0), _utterances(speech_dir, "en", 4, 3.0)
    embeddings = np.array([speaker.speaker_embedding(w, speaker.ENCODER_RATE) for w in male + female])
    sims = embeddings @ embeddings.T
    n = len(male)
    upper = np.triu_indices(n, 1)
    same_male, same_female, cross = sims[:n, :n][upper], sims[n:, n:][upper], sims[:n, n:].ravel()
    print(f"SIM same male   : mean {same_male.mean():.3f} [{same_male.min():.3f}, {same_male.max():.3f}]")
    print(f"SIM same female : mean {same_female.mean():.3f} [{same_female.min():.3f}, {same_female.max():.3f}]")
    print(f"SIM male-female : mean {cross.mean():.3f} [{cross.min():.3f}, {cross.max():.3f}]")
    # two utterances of one speaker vs one utterance of each: for every utterance, its own speaker's
    # other utterances are closer on average than the other speaker's
    for i in range(2 * n):
        own = [sims[i, j] for j in range(2 * n) if j != i and (j < n) == (i < n)]
        other = [sims[i, j] for j in range(2 * n) if (j < n) != (i < n)]
        assert np.mean(own) > np.mean(other) + 0.1, (i, np.mean(own), np.mean(other))
    assert min(same_male.mean(), same_female.mean()) > cross.mean() + 0.1
    assert same_female.min() > cross.max()  # the longer (3+ s) utterances separate pair by pair
