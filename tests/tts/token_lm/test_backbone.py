"""The token LM on a Hugging Face backbone (tts.token_lm.backbone) and CosyVoice 2's folder loader
(tts.token_lm.cosyvoice), on tiny Qwen2 models built from a config with random weights (no download).

The loader is checked on a state dict written in CosyVoice 2's key layout here (its own parity with
CosyVoice's code is tests/tts/token_lm/test_cosyvoice_reference.py, which needs a clone)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.tts.token_lm.test_learning import unigram_accuracy
from tests.tts.token_lm.tiny_backbone import tiny_qwen
from tts.run import RunError, load_run
from tts.synthetic import SyntheticTextTokenCorpus
from tts.token_lm.backbone import BackboneError, BackboneLMConfig, BackboneTokenizer, BackboneTokenLM
from tts.token_lm.cosyvoice import read_cosyvoice2
from tts.token_lm.generate import BistreamGenerator, GenerationOptions, generate_plain
from tts.token_lm.layout import IGNORE, bistream_layout, plain_layout
from tts.token_lm.sampling import SamplingSettings
from tts.train import main as train_main

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = ["hello world, this is a test of the speech model", "the quick brown fox jumps over the lazy dog"] * 5
CODEBOOK = 40


@pytest.fixture(scope="module")
def qwen(tmp_path_factory) -> Path:
    return tiny_qwen(tmp_path_factory.mktemp("qwen") / "qwen", TEXTS)


def cosyvoice_folder(folder: Path, qwen: Path, codebook: int = CODEBOOK) -> dict[str, torch.Tensor]:
    """A CosyVoice 2 model folder with random weights in its LLM's key layout; returns the state dict."""
    causal = transformers.Qwen2ForCausalLM.from_pretrained(qwen)
    width = causal.config.hidden_size
    torch.manual_seed(3)
    state = {f"llm.model.{k}": v for k, v in causal.state_dict().items()}
    state.update({"llm_embedding.weight": torch.randn(2, width), "speech_embedding.weight": torch.randn(codebook + 3, width),
                  "llm_decoder.weight": torch.randn(codebook + 3, width), "llm_decoder.bias": torch.randn(codebook + 3)})
    folder.mkdir(parents=True)
    torch.save(state, folder / "llm.pt")
    causal.save_pretrained(folder / "CosyVoice-BlankEN")
    transformers.AutoTokenizer.from_pretrained(qwen).save_pretrained(folder / "CosyVoice-BlankEN")
    (folder / "cosyvoice2.yaml").write_text(
        f"llm: !new:cosyvoice.llm.llm.Qwen2LM\n    speech_token_size: {codebook}\n    mix_ratio: [5, 15]\n"
        "    sampling: !name:cosyvoice.utils.common.ras_sampling\n        top_p: 0.8\n        top_k: 25\n")
    return state


def test_cosyvoice2_folder_loads_into_its_layout(tmp_path, qwen):
    state = cosyvoice_folder(tmp_path / "cv2", qwen)
    run = load_run(tmp_path / "cv2")
    model, vocab = run.model, run.model.cfg.vocab
    assert (vocab.eos, vocab.fill, vocab.output_size) == (CODEBOOK, CODEBOOK + 2, CODEBOOK + 3)
    assert run.token_rate == 25.0 and run.latent_info["sampling"]["style"] == "cosyvoice"
    assert "<|endofprompt|>" in run.frontend.tokenizer.get_vocab()  # CosyVoice 2's added special tokens
    # the logits of a plain layout equal the sequence CosyVoice 2 builds, run through the Qwen2 by hand
    text, speech = run.frontend.encode("the lazy dog"), [3, 1, 4, 1, 5]
    lay = plain_layout(vocab, text, speech)
    with torch.no_grad():
        ours = model.logits(torch.tensor([lay.inputs]), torch.ones(1, len(lay.inputs), dtype=torch.bool),
                            torch.tensor([lay.is_text]))[0]
        causal = transformers.Qwen2ForCausalLM.from_pretrained(tmp_path / "cv2" / "CosyVoice-BlankEN")
        causal.load_state_dict({k[len("llm.model."):]: v for k, v in state.items() if k.startswith("llm.model.")})
        embeds = torch.cat([state["llm_embedding.weight"][:1], causal.model.embed_tokens(torch.tensor(text)),
                            state["llm_embedding.weight"][1:], state["speech_embedding.weight"][speech]])
        hidden = causal.model(inputs_embeds=embeds[None]).last_hidden_state[0]
        expected = hidden @ state["llm_decoder.weight"].T + state["llm_decoder.bias"]
    assert torch.allclose(ours, expected, atol=1e-5, rtol=1e-5)
    tokens = list(generate_plain(model, text, GenerationOptions(sampling=SamplingSettings(style="cosyvoice"),
                                                                max_ratio=3), torch.Generator().manual_seed(0)))
    assert 0 < len(tokens) <= 3 * len(text) and all(0 <= t < CODEBOOK for t in tokens)


def test_bad_cosyvoice_folders_get_one_line(tmp_path, qwen):
    state = cosyvoice_folder(tmp_path / "cv2", qwen)
    (tmp_path / "cv2" / "llm.pt").rename(tmp_path / "llm.pt")
    (tmp_path / "cv2" / "model.json").unlink(missing_ok=True)
    with pytest.raises(RunError, match="model.json"):  # not a CosyVoice 2 folder any more: read as a run folder
        load_run(tmp_path / "cv2")
    with pytest.raises(BackboneError, match=r"missing llm.pt; it needs llm.pt, cosyvoice2.yaml"):
        read_cosyvoice2(tmp_path / "cv2")
    state["llm.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "cv2" / "llm.pt")
    with pytest.raises(RunError, match="unexpected key 'llm.extra.weight'"):
        load_run(tmp_path / "cv2")
    del state["llm.extra.weight"], state["llm_decoder.bias"]
    torch.save(state, tmp_path / "cv2" / "llm.pt")
    with pytest.raises(RunError, match="missing weights llm_decoder.bias"):
        load_run(tmp_path / "cv2")
    (tmp_path / "cv2" / "llm.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RunError, match="llm.pt: cannot load"):
        load_run(tmp_path / "cv2")


def _model(qwen: Path, **options) -> BackboneTokenLM:
    config = transformers.AutoConfig.from_pretrained(qwen)
    cfg = BackboneLMConfig(backbone=str(qwen), text_vocab=config.vocab_size, codebook_size=CODEBOOK, bistream=True,
                           text_chunk=3, speech_chunk=6, **options)
    torch.manual_seed(0)
    model = BackboneTokenLM(cfg, weights=qwen).eval()
    with torch.no_grad():
        model.llm_decoder.weight.mul_(10.0)  # peaky distributions: draws that depend on the inputs
    return model


@pytest.mark.parametrize("options", [{}, {"text_condition": "hidden"}, {"speaker_dim": 4}], ids=["cv2", "minmo", "spk"])
def test_kv_cached_tokens_equal_uncached(qwen, options):
    model = _model(qwen, **options)
    text = BackboneTokenizer.load(qwen, model.cfg.text_vocab).encode("the quick brown fox jumps")
    speaker = torch.randn(4) if options.get("speaker_dim") else None
    for style in ("toolkit", "cosyvoice"):
        outs = []
        for cache in (True, False):
            opts = GenerationOptions(sampling=SamplingSettings(style=style), min_ratio=1, max_ratio=4, use_cache=cache,
                                     prompt_text=text[:2], prompt_speech=[1, 2, 3, 4, 5, 6, 7], speaker=speaker)
            plain = list(generate_plain(model, text[2:], opts, torch.Generator().manual_seed(1)))
            stream = BistreamGenerator(model, opts, torch.Generator().manual_seed(2))
            streamed = [t for i in range(0, len(text) - 2, 2) for t in stream.push(text[2 + i: 4 + i])]
            outs.append((plain, streamed + list(stream.finish())))
        assert outs[0] == outs[1], style
        assert len(outs[0][0]) >= len(text) - 2 and len(outs[0][1]) >= 6


def test_minmo_text_states_come_from_the_frozen_llm(qwen):
    model = _model(qwen, text_condition="hidden").train()
    text = BackboneTokenizer.load(qwen, model.cfg.text_vocab).encode("hello world")
    lay = bistream_layout(model.cfg.vocab, text, list(range(20)), 3, 6)
    inputs, targets = torch.tensor([lay.inputs]), torch.tensor([lay.targets])
    is_text, valid = torch.tensor([lay.is_text]), torch.ones(1, len(lay.inputs), dtype=torch.bool)
    model(inputs, targets, valid, is_text)["loss"].backward()
    assert model.text_proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.text_llm.parameters())
    assert model.llm.get_input_embeddings().weight.grad is None  # the backbone's text embeddings are not read
    with torch.no_grad():  # the text positions carry the frozen LLM's states, which read the text in context
        states = model.text_states([torch.tensor(text)])[0]
        direct = model.text_proj(model.text_llm(input_ids=torch.tensor([text])).last_hidden_state[0])
    assert torch.allclose(states, direct, atol=1e-6)


def test_lora_trains_adapters_and_heads_only(qwen):
    pytest.importorskip("peft")
    model = _model(qwen, lora_rank=4)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.split(".")[0] in ("llm_embedding", "speech_embedding", "llm_decoder")
                             for n in trainable)
    assert any("lora_" in n for n in trainable)


def test_backbone_run_learns_unseen_strings_and_restarts(tmp_path):
    """The synthetic text -> token task on a tiny random Qwen2 with a BPE tokenizer trained on the texts:
    teacher-forced accuracy on unseen strings far above the unigram baseline; a restart resumes."""
    corpus = SyntheticTextTokenCorpus(alphabet="abcdefgh", vocab=32, seed=0)
    texts = corpus.random_texts(300, seed=1)
    unseen = corpus.random_texts(30, seed=2, exclude=set(texts))
    manifest = corpus.write(tmp_path / "data", texts)
    qwen = tiny_qwen(tmp_path / "qwen", texts, tokenizer_vocab=300, hidden=64, layers=2)
    args = ["--model", "token-lm", "--manifest", str(manifest), "--output-dir", str(tmp_path / "run"),
            "--preset", "tiny", "--backbone", str(qwen), "--bistream", "true", "--text-chunk", "2",
            "--speech-chunk", "8", "--save-interval", "150", "--precision", "fp32", "--learning-rate", "0.003"]
    assert train_main([*args, "--max-steps", "150"]) == 0
    assert train_main([*args, "--max-steps", "300"]) == 0  # resumes at 150 from RUN/backbone + the checkpoint
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("model_*")) == ["model_150.pt",
                                                                                          "model_300.pt"]
    run = load_run(tmp_path / "run")
    assert isinstance(run.model, BackboneTokenLM) and run.frontend.kind == "backbone"
    hits = total = 0
    with torch.no_grad():
        for text in unseen:
            ids, speech = run.frontend.encode(text), corpus.tokens(text)
            lay = plain_layout(run.model.cfg.vocab, ids, speech)
            logits = run.model.logits(torch.tensor([lay.inputs]), torch.ones(1, len(lay.inputs), dtype=torch.bool),
                                      torch.tensor([lay.is_text]))[0]
            targets = torch.tensor(lay.targets)
            scored = (targets != IGNORE) & (targets < CODEBOOK)
            hits += int((logits.argmax(-1) == targets)[scored].sum())
            total += int(scored.sum())
    accuracy, base = hits / total, unigram_accuracy(corpus, texts, unseen)
    print(f"backbone token LM, 300 steps: teacher-forced accuracy on unseen strings {accuracy:.3f} "
          f"(unigram baseline {base:.3f})")
    assert accuracy > 4 * base and accuracy > 0.5
