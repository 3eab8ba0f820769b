"""MiniMax-Speech's learnable speaker encoder on the token flow (tts.speakers.learnable), on a synthetic
task: the tokens carry the content, and each of the corpus's speakers adds its own fixed pattern to
every latent frame (tts.synthetic.SyntheticTokenCorpus with ``speakers``). Trained with the reference =
a crop of another utterance of the same speaker, the model is given, for token sequences never seen in
training, a reference utterance of a speaker: the mean offset of its frames from the content's truth
must be nearest to that speaker's pattern (against 1 / speakers by chance), and without a reference
it must not be."""
from __future__ import annotations

import random

import pytest
import torch
from click.testing import CliRunner

from dcae.cli import main as dcae_main
from dcae.corpus import load_latent, read_manifest
from tests.conftest import TINY_CONFIG
from tests.tts.token_lm.test_e2e import two_stage  # noqa: F401 - the recorded-speech corpus and runs
from tts.run import load_run
from tts.speakers.learnable import ReferencePool, SpeakerEncoder
from tts.synthetic import SyntheticTokenCorpus
from tts.token_flow.synthesis import synthesize_tokens
from tts.train import main as train_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SPEAKERS = 6


def nearest_pattern_accuracy(run, corpus, manifest, unseen, with_reference: bool) -> float:
    rows = read_manifest(manifest)
    by_speaker = {}
    for row in rows:
        by_speaker.setdefault(row["speaker"], []).append(row["latent_path"])
    rng = random.Random(5)
    hits = 0
    for i, tokens in enumerate(unseen):
        speaker = i % SPEAKERS
        reference = load_latent(rng.choice(by_speaker[f"spk{speaker}"]))[0] if with_reference else None
        latent = synthesize_tokens(run, tokens, seed=i, speaker_reference=reference)  # (D, T)
        offset = (latent.T - corpus.truth(tokens)).mean(0)
        hits += int(torch.cdist(offset[None], corpus.patterns)[0].argmin()) == speaker
    return hits / len(unseen)


def test_reference_pool_gives_another_utterance_of_the_speaker():
    pool, rng = ReferencePool(frames=4), random.Random(0)
    a1, a2, b1 = torch.full((6, 2), 1.0), torch.full((3, 2), 2.0), torch.full((5, 2), 3.0)
    first = pool.reference("a1", "a", a1, rng)  # a speaker's first utterance: a crop of itself
    assert first.shape == (4, 2) and torch.equal(first, pool.crops["a"][0][1])
    assert pool.reference("a2", "a", a2, rng).eq(1.0).all()  # the other utterance of a, cropped to 4 frames
    assert pool.reference("b1", "b", b1, rng).eq(3.0).all()  # b's first: itself
    assert pool.reference("a1", "a", a1, rng).eq(2.0).all()  # a1 again: never itself while another is there
    assert pool.reference("x", None, b1, rng).shape == (4, 2)  # no speaker id: a crop of itself


def test_encoder_pools_any_length_and_ignores_padding():
    torch.manual_seed(0)
    encoder = SpeakerEncoder(latent_dim=8, width=32, layers=1, heads=2).eval()
    ref = torch.randn(1, 5, 8)
    padded = torch.cat([ref, torch.randn(1, 3, 8)], dim=1)
    mask = torch.tensor([[True] * 5 + [False] * 3])
    with torch.no_grad():
        alone = encoder(ref, torch.ones(1, 5, dtype=torch.bool))
        assert torch.allclose(alone, encoder(padded, mask), atol=1e-5)
        assert encoder(torch.randn(2, 50, 8), torch.ones(2, 50, dtype=torch.bool)).shape == (2, 32)


@pytest.mark.parametrize("steps", [600])
def test_learnable_encoder_carries_the_reference_speaker(tmp_path, steps):
    corpus = SyntheticTokenCorpus(vocab=8, dim=16, seed=0, speakers=SPEAKERS, speaker_scale=1.5)
    train = corpus.random_sequences(300, seed=1, min_len=20, max_len=40)
    unseen = corpus.random_sequences(36, seed=2, min_len=20, max_len=40, exclude=train)
    manifest = corpus.write(tmp_path / "data", train, speakers=[i % SPEAKERS for i in range(len(train))])
    assert train_main(["--model", "token-flow", "--manifest", str(manifest), "--output-dir", str(tmp_path / "run"),
                       "--preset", "tiny", "--max-steps", str(steps), "--save-interval", str(steps),
                       "--precision", "fp32", "--speaker-encoder", "learnable", "--reference-frames", "8",
                       "--stats", "none"]) == 0
    run = load_run(tmp_path / "run")
    with_ref = nearest_pattern_accuracy(run, corpus, manifest, unseen, True)
    without = nearest_pattern_accuracy(run, corpus, manifest, unseen, False)
    print(f"learnable speaker encoder, {steps} steps, {SPEAKERS} speakers: nearest speaker pattern = the "
          f"reference's for {with_ref:.2f} of unseen token sequences with a reference of another utterance, "
          f"{without:.2f} without a reference (chance {1 / SPEAKERS:.2f})")
    assert with_ref >= 0.9
    assert without <= 0.5


def test_dcae_tts_speaker_audio_end_to_end(two_stage, tiny_generator, small_vocoder, tmp_path):  # noqa: F811
    """Recorded speech: a token flow with the learnable encoder (a few steps) speaks a token file in the
    voice of --speaker-audio (no transcript), to audio; bad references get one line."""
    flow = tmp_path / "flow-spk"
    assert train_main(["--model", "token-flow", "--manifest", str(two_stage["manifest"]), "--output-dir", str(flow),
                       "--preset", "tiny", "--max-steps", "10", "--save-interval", "10", "--batch-size", "8",
                       "--precision", "fp32", "--speaker-encoder", "learnable"]) == 0
    row = read_manifest(two_stage["manifest"])[1]
    model = ["--ae-model", str(tiny_generator), "--ae-config", str(TINY_CONFIG), "--vocoder", str(small_vocoder)]
    wav = tmp_path / "out.wav"
    result = CliRunner().invoke(dcae_main, ["tts", "--checkpoint", str(flow), "--tokens", row["token_path"],
                                            "--speaker-audio", str(two_stage["prompt"]), "-o", str(wav), *model])
    assert result.exit_code == 0, result.output
    assert wav.stat().st_size > 1000
    latent = tmp_path / "spk.safetensors"
    result = CliRunner().invoke(dcae_main, ["tts", "--checkpoint", str(flow), "--tokens", row["token_path"],
                                            "--speaker-latent", row["latent_path"], "--out-latent", str(latent),
                                            "--stream"])
    assert result.exit_code == 0, result.output
    assert load_latent(latent)[0].shape[0] == 80
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    for args, expected in ((["--speaker-audio", str(bad), "-o", str(wav), *model], "bad.wav"),
                           (["--speaker-audio", str(tmp_path / "none.wav"), "-o", str(wav), *model], "file not found"),
                           (["--speaker-latent", str(bad), "--out-latent", str(latent)], "--speaker-latent")):
        result = CliRunner().invoke(dcae_main, ["tts", "--checkpoint", str(flow), "--tokens", row["token_path"], *args])
        message = result.output.strip()
        assert result.exit_code == 2 and expected in message and len(message.splitlines()) == 1, message
    result = CliRunner().invoke(dcae_main, ["tts", "--checkpoint", str(two_stage["flow"]), "--tokens", row["token_path"],
                                            "--speaker-latent", row["latent_path"], "--out-latent", str(latent)])
    assert result.exit_code == 2 and "--speaker-encoder learnable" in result.output, result.output
