"""Parity with CosyVoice's own code: a random LM in CosyVoice 2's layout (tiny Qwen2 built from a config)
saved as a CosyVoice 2 model folder, loaded by :func:`tts.run.load_run`, gives the
logits of ``cosyvoice.llm.llm.Qwen2LM`` on the same sequences and, with the same seed, its tokens.
Runs when ``DCAE_COSYVOICE_REPO`` names a clone of FunAudioLLM/CosyVoice."""
from __future__ import annotations

import random
from functools import partial
from unittest import mock

import pytest
import torch

from tests.cosyvoice_reference import SKIP_REASON, cosyvoice_available, import_cosyvoice_llm
from tests.tts.token_lm.tiny_backbone import tiny_qwen
from tts.run import load_run
from tts.token_lm.generate import BistreamGenerator, GenerationOptions, generate_plain
from tts.token_lm.layout import IGNORE, bistream_layout, plain_layout
from tts.token_lm.sampling import SamplingSettings

pytest.importorskip("transformers")
pytestmark = pytest.mark.skipif(not cosyvoice_available(), reason=SKIP_REASON)
# CosyVoice's decoding loop gives the Qwen2 model a one-position attention mask at each cached step;
# transformers < 5 (CosyVoice pins 4.51.3) reads it as "attend to everything", 5.x attends to that
# one position only, so CosyVoice's own sampling is only itself on transformers < 5.
needs_cosyvoice_transformers = pytest.mark.skipif(
    int(__import__("transformers").__version__.split(".")[0]) >= 5,
    reason="CosyVoice's decoding loop needs transformers < 5 (it pins 4.51.3): pip install 'transformers<5'")

CODEBOOK = 6561  # CosyVoice 2's S3 codebook
TEXTS = ["hello world, this is a test of the speech model", "the quick brown fox jumps over the lazy dog"] * 5
YAML = """llm: !new:cosyvoice.llm.llm.Qwen2LM
    llm_input_size: !ref <llm_input_size>
    llm_output_size: !ref <llm_input_size>
    speech_token_size: {codebook}
    mix_ratio: [5, 15]
    llm: !new:cosyvoice.llm.llm.Qwen2Encoder
        pretrain_path: !ref <qwen_pretrain_path>
    sampling: !name:cosyvoice.utils.common.ras_sampling
        top_p: 0.8
        top_k: 25
        win_size: 10
        tau_r: 0.1
llm_input_size: 64
qwen_pretrain_path: ''
token_frame_rate: 25
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(CosyVoice's Qwen2LM, our run loaded from the folder it was saved to, its module)."""
    root = tmp_path_factory.mktemp("cosyvoice")
    cv = import_cosyvoice_llm(root / "code")
    folder = root / "CosyVoice2-tiny"
    qwen = tiny_qwen(folder / "CosyVoice-BlankEN", TEXTS)
    torch.manual_seed(1)
    common = __import__("cosyvoice.utils.common", fromlist=["ras_sampling"])
    reference = cv.Qwen2LM(64, 64, CODEBOOK, cv.Qwen2Encoder(str(qwen)),
                           partial(common.ras_sampling, top_p=0.8, top_k=25, win_size=10, tau_r=0.1), mix_ratio=[5, 15])
    with torch.no_grad():  # scale the heads so that the random LM's distributions are not flat
        reference.llm_decoder.weight.mul_(20.0)
    reference.eval()
    torch.save(reference.state_dict(), folder / "llm.pt")
    (folder / "cosyvoice2.yaml").write_text(YAML.format(codebook=CODEBOOK))
    return reference, load_run(folder), cv


def _text(run, text: str) -> list[int]:
    return run.frontend.encode(text)


def test_logits_equal_plain_and_bistream(pair):
    reference, run, cv = pair
    model, vocab = run.model, run.model.cfg.vocab
    g = torch.Generator().manual_seed(0)
    text = [_text(run, TEXTS[0]), _text(run, TEXTS[1])]
    speech = [torch.randint(0, CODEBOOK, (len(t) * 4,), generator=g).tolist() for t in text]
    for bistream, draw in ((False, 0.9), (True, 0.1)):  # CosyVoice picks the layout with random.random() < 0.5
        text_pad = torch.nn.utils.rnn.pad_sequence([torch.tensor(t) for t in text], batch_first=True)
        speech_pad = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in speech], batch_first=True)
        text_len, speech_len = torch.tensor([len(t) for t in text]), torch.tensor([len(s) for s in speech])
        with torch.no_grad(), mock.patch.object(random, "random", return_value=draw):
            target, lm_input, lm_len = reference.prepare_lm_input_target(
                reference.llm_embedding.weight[0].reshape(1, 1, -1), text_pad,
                reference.llm.model.model.embed_tokens(text_pad), text_len,
                reference.llm_embedding.weight[1].reshape(1, 1, -1), speech_pad,
                reference.speech_embedding(speech_pad), speech_len,
                # no instruction; given empty, as its default is shaped for a 896-wide Qwen2
                torch.zeros(2, 0, dtype=torch.long), torch.zeros(2, 0, 64), torch.zeros(2, dtype=torch.long))
            hidden, _ = reference.llm(lm_input, lm_len)
            expected = reference.llm_decoder(hidden)
        layouts = [bistream_layout(vocab, t, s, 5, 15) if bistream else plain_layout(vocab, t, s)
                   for t, s in zip(text, speech)]
        length = max(len(lay.inputs) for lay in layouts)
        assert length == lm_input.shape[1]
        inputs = torch.full((2, length), vocab.plain)
        targets = torch.full((2, length), IGNORE)
        valid = torch.zeros(2, length, dtype=torch.bool)
        is_text = torch.zeros(2, length, dtype=torch.bool)
        for b, lay in enumerate(layouts):
            n = len(lay.inputs)
            inputs[b, :n], targets[b, :n] = torch.tensor(lay.inputs), torch.tensor(lay.targets)
            valid[b, :n], is_text[b, :n] = True, torch.tensor(lay.is_text)
        cv_targets = torch.where(target == -1, IGNORE, target)  # CosyVoice's IGNORE_ID is -1
        assert torch.equal(targets.masked_fill(~valid, IGNORE), cv_targets), f"bistream={bistream}: other targets"
        with torch.no_grad():
            ours = model.logits(inputs, valid, is_text)
        error = (ours - expected)[valid].abs().max() / expected[valid].abs().max()
        assert error < 1e-5, f"bistream={bistream}: relative error {error:.2e}"


@needs_cosyvoice_transformers
@pytest.mark.parametrize("prompt", [False, True])
def test_plain_sampling_draws_cosyvoice_tokens(pair, prompt):
    reference, run, _ = pair
    text = _text(run, "the lazy dog jumps")
    prompt_text = _text(run, "hello world, ") if prompt else []
    prompt_speech = list(range(100, 131)) if prompt else []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        expected = list(reference.inference(
            torch.tensor([text]), torch.tensor([len(text)]), torch.tensor([prompt_text], dtype=torch.long).reshape(1, -1),
            torch.tensor([len(prompt_text)]), torch.tensor([prompt_speech], dtype=torch.long).reshape(1, -1),
            torch.tensor([len(prompt_speech)]), torch.zeros(1, 0)))
        options = GenerationOptions(sampling=SamplingSettings(style="cosyvoice"), min_ratio=2, max_ratio=20,
                                    prompt_text=prompt_text, prompt_speech=prompt_speech)
        ours = list(generate_plain(run.model, text, options, torch.Generator().manual_seed(seed)))
        assert len(expected) >= 2 * len(text)
        assert ours == expected, f"seed {seed}"


@needs_cosyvoice_transformers
@pytest.mark.parametrize("prompt", [False, True])
def test_bistream_sampling_draws_cosyvoice_tokens_while_text_streams(pair, prompt):
    """Every token drawn while text is still arriving equals CosyVoice's; after the text ends CosyVoice
    feeds the last speech token a second time (its final phase's input is that token, the remaining
    text and the task id), which its training layout does not have: the tail is not compared."""
    reference, run, _ = pair
    pieces = [_text(run, w) for w in ("the quick brown fox", " jumps over", " the lazy dog", " and the cat")]
    prompt_text = _text(run, "hello world, this is") if prompt else []
    prompt_speech = list(range(200, 220)) if prompt else []  # 20 tokens: not a multiple of 15
    inputs_seen = []
    original = reference.llm.forward_one_step

    def record(xs, masks, cache=None):
        inputs_seen.append(xs.shape[1])
        return original(xs, masks, cache)

    for seed in (0, 3):
        options = GenerationOptions(sampling=SamplingSettings(style="cosyvoice"), min_ratio=0, max_ratio=50,
                                    prompt_text=prompt_text, prompt_speech=prompt_speech)
        stream = BistreamGenerator(run.model, options, torch.Generator().manual_seed(seed))
        streamed = [t for piece in pieces for t in stream.push(piece)]
        torch.manual_seed(seed)
        inputs_seen.clear()
        expected = []
        with mock.patch.object(reference.llm, "forward_one_step", record):
            tokens = reference.inference_bistream(  # one id at a time, as CosyVoice's front end yields text
                (torch.tensor([[i]]) for piece in pieces for i in piece),
                torch.tensor([prompt_text], dtype=torch.long).reshape(1, -1), torch.tensor([len(prompt_text)]),
                torch.tensor([prompt_speech], dtype=torch.long).reshape(1, -1), torch.tensor([len(prompt_speech)]),
                torch.zeros(1, 0))
            try:  # up to a few tokens after the text ended (CosyVoice's final phase has no length limit)
                for token in tokens:
                    expected.append(token)
                    if len(expected) > len(streamed) + 3:
                        break
            except ValueError as e:  # a random LM may draw an id CosyVoice refuses ("should not get token")
                assert "should not get token" in str(e)
        assert len(streamed) >= 15 and streamed == expected[: len(streamed)], f"seed {seed}"
        rest = len(prompt_text + sum(pieces, [])) % 5
        assert 1 + rest + 1 in inputs_seen, "CosyVoice's final phase no longer re-feeds the last speech token"
        tail = list(stream.finish())
        assert tail and all(0 <= t < CODEBOOK for t in tail)
