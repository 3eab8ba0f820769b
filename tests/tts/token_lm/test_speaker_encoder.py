"""MiniMax-Speech's learnable speaker encoder on the token LM (an extra first position), on a synthetic
task (tts.synthetic.SyntheticTextTokenCorpus with ``speakers``): every speaker says each character's
tokens shifted by its own offset, and adds its own pattern to the latents. Trained with the reference =
a crop of another utterance of the same speaker, the LM is given texts never seen in training and a
reference utterance of a speaker: its greedy tokens must be nearest (edit distance) to that speaker's
reading (against 1 / speakers by chance); without a reference they must not be. Teacher-forced
accuracy tells the same. Also: the KV-cached decoder equals the uncached one with a reference, and
the run refuses a reference it cannot read in one line."""
from __future__ import annotations

import random

import pytest
import torch

from dcae.corpus import load_latent, read_manifest
from tests.tts.token_lm.test_e2e import two_stage  # noqa: F401 - the recorded-speech corpus and runs
from tests.tts.token_lm.test_learning import GREEDY, edit_distance
from tts.run import load_run
from tts.synthesis import SynthesisError
from tts.synthetic import SyntheticTextTokenCorpus
from tts.token_lm.layout import IGNORE, plain_layout
from tts.token_lm.synthesis import speech_tokens
from tts.train import main as train_main

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SPEAKERS = 4
STEPS = 400


@pytest.fixture(scope="module")
def speaker_lm(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm-speakers")
    corpus = SyntheticTextTokenCorpus(alphabet="abcdefgh", vocab=32, seed=0, speakers=SPEAKERS, speaker_scale=2.0)
    texts = corpus.random_texts(320, seed=1)
    unseen = corpus.random_texts(24, seed=2, exclude=set(texts))
    manifest = corpus.write(root / "data", texts, speakers=[i % SPEAKERS for i in range(len(texts))])
    out = root / "run"
    assert train_main(["--model", "token-lm", "--manifest", str(manifest), "--output-dir", str(out),
                       "--preset", "tiny", "--max-steps", str(STEPS), "--save-interval", str(STEPS),
                       "--precision", "fp32", "--speaker-encoder", "learnable", "--reference-frames", "8",
                       "--cond-drop", "0.1"]) == 0
    by_speaker: dict[int, list[str]] = {}
    for row in read_manifest(manifest):
        by_speaker.setdefault(int(row["speaker"][3:]), []).append(row["latent_path"])
    return load_run(out), corpus, unseen, by_speaker


def references(by_speaker, count: int, seed: int) -> list[torch.Tensor]:
    rng = random.Random(seed)
    return [load_latent(rng.choice(by_speaker[i % SPEAKERS]))[0] for i in range(count)]


@torch.no_grad()
def teacher_forced(run, corpus, texts, refs) -> float:
    model, vocab = run.model, run.model.cfg.vocab
    hits = total = 0
    for i, text in enumerate(texts):
        lay = plain_layout(vocab, run.frontend.encode(text), corpus.tokens(text, i % SPEAKERS))
        inputs, targets = torch.tensor([lay.inputs]), torch.tensor([lay.targets])
        speaker = None if refs is None else model.encode_speaker(run.stats.normalize(refs[i].T))[None]
        x = model._with_speaker(model.embed(inputs), speaker)
        keys = torch.ones(x.shape[:2], dtype=torch.bool)
        logits = model.step(x, keys, 0, None)[:, 1:]
        scored = targets != IGNORE
        hits += int((logits.argmax(-1) == targets)[scored].sum())
        total += int(scored.sum())
    return hits / total


def nearest_speaker(run, corpus, texts, refs) -> float:
    hits = 0
    for i, text in enumerate(texts):
        tokens = speech_tokens(run, text, seed=i, sampling=GREEDY,
                               speaker_reference=None if refs is None else refs[i]).tolist()
        distances = [edit_distance(tokens, corpus.tokens(text, k)) for k in range(SPEAKERS)]
        hits += int(min(range(SPEAKERS), key=distances.__getitem__) == i % SPEAKERS)
    return hits / len(texts)


def test_token_lm_speaker_encoder_carries_the_reference_speaker(speaker_lm):
    run, corpus, unseen, by_speaker = speaker_lm
    refs = references(by_speaker, len(unseen), seed=5)
    tf_with, tf_without = teacher_forced(run, corpus, unseen, refs), teacher_forced(run, corpus, unseen, None)
    near_with, near_without = nearest_speaker(run, corpus, unseen, refs), nearest_speaker(run, corpus, unseen, None)
    print(f"token LM + learnable speaker encoder, {STEPS} steps, {SPEAKERS} speakers, unseen texts: nearest "
          f"speaker reading = the reference's for {near_with:.2f} with a reference of another utterance, "
          f"{near_without:.2f} without (chance {1 / SPEAKERS:.2f}); teacher-forced accuracy {tf_with:.3f} vs "
          f"{tf_without:.3f}")
    assert near_with >= 0.9
    assert near_without <= 0.5
    assert tf_with > tf_without + 0.2


def test_cached_decoding_equals_uncached_with_a_reference(speaker_lm):
    run, _, unseen, by_speaker = speaker_lm
    ref = references(by_speaker, 1, seed=9)[0]
    for text in unseen[:3]:
        cached = speech_tokens(run, text, seed=1, speaker_reference=ref)
        uncached = speech_tokens(run, text, seed=1, speaker_reference=ref, use_cache=False)
        assert torch.equal(cached, uncached)


def test_bad_references_are_refused_in_one_line(speaker_lm):
    run, _, unseen, _ = speaker_lm
    for bad, expected in ((torch.zeros(7, 5), "expected a latent (16, frames)"),
                          (torch.full((16, 4), float("nan")), "NaN")):
        with pytest.raises(SynthesisError, match=expected.replace("(", r"\(").replace(")", r"\)")) as info:
            speech_tokens(run, unseen[0], speaker_reference=bad)
        assert len(str(info.value).splitlines()) == 1


def test_dcae_tts_speaker_audio_on_a_token_lm(two_stage, tiny_generator, small_vocoder, tmp_path):  # noqa: F811
    """Recorded speech: a token LM with the learnable encoder (a few steps) reads --speaker-audio (no
    transcript) into its first position: to tokens alone, and through a token flow without an encoder
    to audio. A token LM without the encoder and no flow refuses it in one line."""
    from click.testing import CliRunner

    from dcae.cli import main as dcae_main
    from tests.conftest import TINY_CONFIG

    lm = tmp_path / "lm-spk"
    assert train_main(["--model", "token-lm", "--manifest", str(two_stage["manifest"]), "--output-dir", str(lm),
                       "--preset", "tiny", "--max-steps", "10", "--save-interval", "10", "--batch-size", "8",
                       "--precision", "fp32", "--speaker-encoder", "learnable"]) == 0
    assert (lm / "stats.json").is_file() and load_run(lm).model.speaker_encoder is not None
    model = ["--ae-model", str(tiny_generator), "--ae-config", str(TINY_CONFIG), "--vocoder", str(small_vocoder)]
    tokens, wav = tmp_path / "t.safetensors", tmp_path / "out.wav"
    text = ["--text", "hello there"]
    result = CliRunner().invoke(dcae_main, ["tts", "--checkpoint", str(lm), *text, "--speaker-audio",
                                            str(two_stage["prompt"]), "--out-tokens", str(tokens), *model])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(dcae_main, ["tts", "--checkpoint", str(lm), *text, "--flow", str(two_stage["flow"]),
                                            "--speaker-audio", str(two_stage["prompt"]), "-o", str(wav), *model])
    assert result.exit_code == 0, result.output
    assert wav.stat().st_size > 1000
    result = CliRunner().invoke(dcae_main, ["tts", "--checkpoint", str(two_stage["lm"]), *text, "--speaker-audio",
                                            str(two_stage["prompt"]), "--out-tokens", str(tokens), *model])
    message = result.output.strip()
    assert result.exit_code == 2 and "--speaker-encoder learnable" in message and len(message.splitlines()) == 1, message
