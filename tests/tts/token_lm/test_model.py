"""Text-to-token LM pieces: the plain and bistream layouts, KV-cached == uncached decoding (tokens and
logits), sampling filters (top-k, top-p, RAS) on crafted logits, guidance algebra, the length rule,
bistream pushing (tokens only once a text chunk is complete), text streaming commits."""
from __future__ import annotations

import math

import pytest
import torch

from tts.token_lm.generate import BistreamGenerator, GenerationOptions, generate_bistream, generate_plain
from tts.token_lm.layout import IGNORE, Vocab, bistream_layout, fits_bistream, plain_layout
from tts.token_lm.model import TokenLM, TokenLMConfig
from tts.token_lm.sampling import SamplingSettings, draw, filter_logits, guided_logits, repeats, sample_next

pytestmark = pytest.mark.usefixtures("one_torch_thread")

V = Vocab(text=10, codebook=20)


def small_model(**kw) -> TokenLM:
    torch.manual_seed(0)
    cfg = TokenLMConfig(text_vocab=10, codebook_size=20, width=32, layers=2, heads=2, ff_mult=2.0,
                        bistream=True, text_chunk=3, speech_chunk=4, **kw)
    model = TokenLM(cfg).eval()
    with torch.no_grad():  # spread the logits so that sampling is not near-uniform
        model.head.weight.mul_(4)
    return model


# ----- layouts ---------------------------------------------------------------------------------
def test_plain_layout_predicts_speech_then_eos():
    lay = plain_layout(V, [3, 4], [7, 8, 9])
    assert lay.inputs == [V.plain, 3, 4, V.sos, 17, 18, 19]
    assert lay.targets == [IGNORE, IGNORE, IGNORE, 7, 8, 9, V.eos]
    assert lay.is_text == [False, True, True, False, False, False, False]


def test_bistream_layout_interleaves_and_fills():
    text, speech = [1, 2, 3, 4, 5, 6, 7], list(range(11))  # N=3, M=4: two full chunks, then 1 text id + turn
    assert fits_bistream(7, 11, 3, 4) and not fits_bistream(7, 8, 3, 4)
    lay = bistream_layout(V, text, speech, 3, 4)
    sp = V.speech
    assert lay.inputs == [V.bistream, 1, 2, 3, *sp([0, 1, 2, 3]), 4, 5, 6, *sp([4, 5, 6, 7]), 7, V.turn,
                          *sp([8, 9, 10])]
    assert lay.targets == [IGNORE, IGNORE, IGNORE, 0, 1, 2, 3, V.fill, IGNORE, IGNORE, 4, 5, 6, 7, V.fill,
                           IGNORE, 8, 9, 10, V.eos]
    assert sum(lay.is_text) == 7
    with pytest.raises(ValueError):
        bistream_layout(V, text, speech[:8], 3, 4)


def test_bistream_layout_with_text_a_multiple_of_the_chunk():
    lay = bistream_layout(V, [1, 2, 3], [0, 1, 2, 3, 4], 3, 4)  # no text left: <turn> right after the chunk
    assert lay.inputs == [V.bistream, 1, 2, 3, *V.speech([0, 1, 2, 3]), V.turn, *V.speech([4])]
    assert lay.targets == [IGNORE, IGNORE, IGNORE, 0, 1, 2, 3, V.fill, 4, V.eos]


# ----- KV cache --------------------------------------------------------------------------------
def _sequence_logits(model: TokenLM, ids: list[int], text: list[bool], rows: int, use_cache: bool,
                     speaker=None, step: int = 3) -> list[torch.Tensor]:
    dec = model.decoder(rows, speaker, use_cache)
    return [dec.feed(ids[i:i + step], text[i:i + step]) for i in range(0, len(ids), step)]


@pytest.mark.parametrize("rows,speaker", [(1, False), (2, False), (2, True)])
def test_cached_logits_equal_recomputed(rows, speaker):
    model = small_model(speaker_dim=5 if speaker else 0)
    spk = torch.randn(5) if speaker else None
    lay = bistream_layout(V, [1, 2, 3, 4, 5, 6, 7], list(range(11)), 3, 4)
    cached = _sequence_logits(model, lay.inputs, lay.is_text, rows, True, spk)
    full = _sequence_logits(model, lay.inputs, lay.is_text, rows, False, spk)
    for a, b in zip(cached, full):
        assert a.shape == (rows, V.output_size)
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)
    # the decoder's last logits equal the training forward pass at that position
    inputs = torch.tensor([lay.inputs])
    with torch.no_grad():
        keys = model._key_valid(torch.ones_like(inputs, dtype=torch.bool), torch.tensor([lay.is_text]),
                                torch.tensor([False]))
        x = model._inputs(inputs, None if spk is None else spk[None])
        logits = model._run(x, 0, model.attention_mask(keys, keys.shape[1]))[0, -1]
    torch.testing.assert_close(cached[-1][0], logits.float(), atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("cfg_scale", [1.0, 2.0])
def test_cached_sampling_equals_uncached_token_for_token(cfg_scale):
    model = small_model(cond_drop=0.1)
    prompt = GenerationOptions(prompt_text=[2, 3], prompt_speech=[5, 6, 7])
    for mode in ("plain", "bistream"):
        outs = []
        for use_cache in (True, False):
            opts = GenerationOptions(cfg_scale=cfg_scale, min_ratio=2.0, max_ratio=6.0, use_cache=use_cache,
                                     prompt_text=prompt.prompt_text, prompt_speech=prompt.prompt_speech,
                                     sampling=SamplingSettings(temperature=1.0, top_k=10, top_p=0.9))
            g = torch.Generator().manual_seed(7)
            text = [1, 4, 2, 5, 3, 6, 1, 2]
            if mode == "plain":
                outs.append(list(generate_plain(model, text, opts, g)))
            else:
                outs.append(list(generate_bistream(model, [text[:2], text[2:5], text[5:]], opts, g)))
        assert outs[0] == outs[1], mode
        assert 16 <= len(outs[0]) <= 48 and len(set(outs[0])) > 3  # within the length rule, not one repeated id


# ----- sampling ----------------------------------------------------------------------------------
def test_top_k_and_top_p_keep_the_right_tokens():
    logits = torch.log(torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05]))
    assert torch.isfinite(filter_logits(logits, top_k=2)).tolist() == [True, True, False, False, False]
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).tolist() == [True, False, False, False, False]
    assert torch.isfinite(filter_logits(logits, top_p=0.51)).tolist() == [True, True, False, False, False]
    assert torch.isfinite(filter_logits(logits, top_p=0.86)).tolist() == [True, True, True, True, False]
    assert torch.isfinite(filter_logits(logits, top_k=3, top_p=0.99)).tolist() == [True, True, True, False, False]
    shuffled = logits[[3, 0, 4, 2, 1]]  # order does not matter
    assert torch.isfinite(filter_logits(shuffled, top_p=0.7)).tolist() == [False, True, False, False, True]
    # temperature sharpens before the nucleus is taken
    assert torch.isfinite(filter_logits(logits, temperature=0.2, top_p=0.9)).sum() < 4


def test_draw_follows_the_distribution_and_is_seeded():
    probs = torch.tensor([0.6, 0.3, 0.1, 0.0])
    g = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.tensor([draw(probs.log(), g) for _ in range(4000)]), minlength=4).float() / 4000
    assert torch.allclose(counts, probs, atol=0.03) and counts[3] == 0
    a = [draw(probs.log(), torch.Generator().manual_seed(s)) for s in range(20)]
    b = [draw(probs.log() + 1e-6, torch.Generator().manual_seed(s)) for s in range(20)]
    assert a == b


def test_ras_redraws_repeated_tokens_from_the_full_distribution():
    logits = torch.log(torch.tensor([0.9, 0.05, 0.05]))
    s = SamplingSettings(temperature=1.0, top_k=1, top_p=1.0, ras_window=10, ras_ratio=0.1)
    fresh = [sample_next(logits, [1, 2], s, torch.Generator().manual_seed(i)) for i in range(300)]
    assert set(fresh) == {0}  # top-k 1 and no repetition: always the top token
    looping = [sample_next(logits, [0] * 10, s, torch.Generator().manual_seed(i)) for i in range(2000)]
    other = sum(t != 0 for t in looping) / len(looping)
    assert 0.06 < other < 0.14  # redrawn from the full distribution: 10 % other tokens
    off = SamplingSettings(temperature=1.0, top_k=1, top_p=1.0, ras_window=0)
    assert {sample_next(logits, [0] * 10, off, torch.Generator().manual_seed(i)) for i in range(300)} == {0}
    assert repeats([1, 0, 0, 2, 0], 0, 3) == 2 and repeats([0, 0], 0, 0) == 0
    assert sample_next(torch.tensor([0.0, 5.0, 1.0]), [1] * 10, SamplingSettings(temperature=0.0)) == 1  # greedy


def test_sampling_settings_refuse_bad_values():
    for bad in (dict(temperature=-1), dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5), dict(ras_ratio=0.0)):
        with pytest.raises(ValueError):
            SamplingSettings(**bad).check()


def test_guidance_mixes_log_probabilities():
    cond, uncond = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 1.0, 0.0])
    out = guided_logits(torch.stack([cond, uncond]), 3.0)
    lc, lu = cond.log_softmax(-1), uncond.log_softmax(-1)
    torch.testing.assert_close(out, lu + 3.0 * (lc - lu))
    torch.testing.assert_close(guided_logits(torch.stack([cond, uncond]), 1.0), cond)
    torch.testing.assert_close(guided_logits(cond[None], 3.0), cond)


# ----- lengths and streaming ------------------------------------------------------------------------
def test_length_rule_bounds_generation():
    model = small_model()
    with torch.no_grad():
        model.head.bias.zero_()
        model.head.bias[V.eos] = 50.0  # the model wants to stop at once
    opts = GenerationOptions(min_ratio=1.5, max_ratio=3.0)
    assert len(list(generate_plain(model, [1, 2, 3, 4], opts, torch.Generator().manual_seed(0)))) == 6
    with torch.no_grad():
        model.head.bias[V.eos] = -50.0  # ... never
    assert len(list(generate_plain(model, [1, 2, 3, 4], opts, torch.Generator().manual_seed(0)))) == 12
    assert GenerationOptions(min_ratio=1.5, max_ratio=3.0).length_bounds(3) == (5, 9)
    assert GenerationOptions(min_ratio=10, max_ratio=3.0).length_bounds(1) == (3, 3)


def test_bistream_emits_m_tokens_per_complete_text_chunk():
    model = small_model()
    stream = BistreamGenerator(model, GenerationOptions(min_ratio=1.0, max_ratio=4.0),
                               torch.Generator().manual_seed(0))
    assert list(stream.push([1, 2])) == []  # less than a chunk: nothing yet
    assert len(list(stream.push([3]))) == 4  # N=3 ids complete: M=4 tokens
    assert len(list(stream.push([4, 5, 6, 7, 8, 9]))) == 8  # two chunks
    list(stream.finish())
    assert 9 <= len(stream.generated) <= 36  # 1.0 .. 4.0 tokens per text id
    assert all(0 <= t < V.codebook for t in stream.generated)
    with pytest.raises(RuntimeError):
        stream.push([1])


def test_bistream_prompt_tokens_take_the_first_places():
    model = small_model()
    opts = GenerationOptions(prompt_text=[1, 2, 3], prompt_speech=[4, 5, 6, 7, 8, 9], max_ratio=3.0)
    stream = BistreamGenerator(model, opts, torch.Generator().manual_seed(0))
    # prompt: 3 ids fill a chunk whose 4 places are prompt tokens; the next chunk has 2 prompt tokens left
    assert list(stream.push([])) == []
    assert len(list(stream.push([1, 2, 3]))) == 2
    assert len(list(stream.finish())) <= 9
    with pytest.raises(ValueError, match="needs at least 4"):  # 3 text ids fill a chunk of 4 speech places
        BistreamGenerator(model, GenerationOptions(prompt_text=[1, 2, 3], prompt_speech=[4, 5, 6]))


def test_plain_refuses_no_text_and_bistream_needs_a_bistream_model():
    model = small_model()
    with pytest.raises(ValueError):
        list(generate_plain(model, []))
    model.cfg.bistream = False
    with pytest.raises(ValueError, match="bistream"):
        BistreamGenerator(model)


def test_text_streamer_commits_text_as_it_comes(tmp_path):
    from dcae.corpus import LatentStats  # noqa: F401 (the run dataclass is plain)
    from tts.run import TTSRun
    from tts.text import TextFrontend
    from tts.token_lm.synthesis import TextStreamer

    frontend = TextFrontend.fit(["abc def"], "chars")
    model = small_model()
    assert frontend.vocab_size <= model.cfg.text_vocab
    run = TTSRun(tmp_path, "token-lm", model, frontend, None, {"token_rate": 25.0, "min_len_ratio": 1.0,
                                                               "max_len_ratio": 3.0}, 0)
    streamer = TextStreamer(run, seed=0)
    assert list(streamer.push("ab")) == [] and streamer.fed == 1  # 'a' committed, 'b' may still combine
    assert len(list(streamer.push("c d"))) == 4 and streamer.fed == 3  # "abc " committed: a chunk of 3 ids
    rest = list(streamer.finish())
    assert streamer.fed == len(frontend.encode("abc d")) == 5
    assert math.ceil(1.0 * 5) <= 4 + len(rest) <= 15
