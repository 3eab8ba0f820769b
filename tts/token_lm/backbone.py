"""Text -> speech tokens on a pretrained text LLM (a Hugging Face causal LM, Qwen2/Qwen2.5 first):
CosyVoice 2's stage 1, and MinMo's voice decoder conditioning as an option.

The backbone's own transformer (``transformers.AutoModel``: the causal LM without its text head)
reads one sequence of embeddings; around it, as in CosyVoice 2's ``Qwen2LM``:

- text ids (the backbone's tokenizer) -> the backbone's ``embed_tokens`` rows;
- speech tokens -> ``speech_embedding`` (C + 3 rows);
- the two markers -> ``llm_embedding`` (2 rows): row 0 starts every sequence, row 1 ("task id")
  says the text has ended and speech follows;
- the last hidden state -> ``llm_decoder`` (a linear head over C + 3 outputs: speech tokens,
  ``<eos>`` = C, an unused id C + 1, ``<fill>`` = C + 2).

The layouts are the toolkit's (:mod:`tts.token_lm.layout`) with :class:`CosyVoiceVocab`'s ids, which
makes them CosyVoice 2's: ``<plain>``/``<bistream>`` are its start marker and ``<sos>``/``<turn>``
its task id::

    plain      [start] text [task] speech            -> targets: speech <eos>
    bistream   [start] t1..t5 s1..s15 t6..t10 s16..s30 ... rest-of-text [task] rest-of-speech

MinMo's conditioning (``text_condition="hidden"``): the text positions get a frozen text LLM's last
hidden states over the whole text read so far, projected to the backbone's width, instead of the
backbone's text embeddings (the frozen LLM is a copy of the backbone as loaded, or ``text_llm``).

    model = BackboneTokenLM(BackboneLMConfig(backbone="RUN/backbone", text_vocab=151936, codebook_size=6561),
                            root=".", weights="Qwen/Qwen2.5-0.5B")     # weights: from_pretrained source
    losses = model(inputs, targets, valid, is_text)                   # (B, S) each, as TokenLM
    decoder = model.decoder(rows=1)                                   # KV cache: the backbone's own cache
    logits = decoder.feed([ids...], is_text)                          # (rows, C + 3)

Shapes: B batch, S sequence, D the backbone's hidden size, T text ids, C codebook size.
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tts.token_lm.layout import Vocab
from tts.token_lm.model import SpeakerPosition, TokenLMDecoder, next_token_loss

TEXT_CONDITIONS = ("embeddings", "hidden")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class BackboneError(ValueError):
    """A backbone that cannot be built or loaded; the message names the source and the reason."""


@dataclass(frozen=True)
class CosyVoiceVocab(Vocab):
    """CosyVoice 2's output ids: speech tokens [0, C), ``<eos>`` C, (C + 1 unused), ``<fill>`` C + 2."""

    @property
    def fill(self) -> int:
        return self.codebook + 2

    @property
    def output_size(self) -> int:
        return self.codebook + 3


@dataclass
class BackboneLMConfig:
    backbone: str  # folder with the backbone's config.json (relative to the run folder when relative)
    text_vocab: int  # the backbone's embedding rows (text ids are below it)
    codebook_size: int  # speech-token ids
    speaker_dim: int = 0  # speaker embedding size (0: none): one extra first position
    cond_drop: float = 0.0  # text hidden with this probability in training (classifier-free guidance)
    bistream: bool = False  # trained on the interleaved layout too
    text_chunk: int = 5  # bistream: text ids per chunk (N)
    speech_chunk: int = 15  # bistream: speech tokens per chunk (M)
    text_condition: str = "embeddings"  # embeddings (CosyVoice 2) | hidden (MinMo: a frozen text LLM's states)
    text_llm: str = ""  # hidden: folder of the frozen text LLM's config (empty: the backbone's)
    lora_rank: int = 0  # > 0: LoRA adapters of this rank on the backbone's projections (peft); 0: full fine-tuning
    lora_alpha: int = 16
    gradient_checkpointing: bool = False
    speaker_encoder: str = "none"  # none | learnable (MiniMax-Speech's speaker encoder, :class:`TokenLMConfig`)
    speaker_layers: int = 2
    latent_dim: int = 80
    reference_frames: int = 64

    @property
    def vocab(self) -> CosyVoiceVocab:
        return CosyVoiceVocab(self.text_vocab, self.codebook_size)


def _transformers():
    try:
        import transformers
    except ImportError:
        raise BackboneError("a backbone token LM needs transformers: pip install 'dc-speech-vae[llm]'") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


def _cache_keyword(model: nn.Module) -> str:
    """The backbone's name for its KV cache argument: ``cache`` (transformers >= 5.x), else ``past_key_values``."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def backbone_config(source: str | Path):
    """The ``transformers`` config of a folder or hub id (one-line :class:`BackboneError` otherwise)."""
    tf = _transformers()
    try:
        return tf.AutoConfig.from_pretrained(str(source))
    except (OSError, ValueError) as e:
        raise BackboneError(f"{source}: not a Hugging Face model folder or reachable hub id "
                            f"({str(e).splitlines()[0]}); offline, fetch it where there is internet "
                            f"(hf download ID --local-dir DIR) and give DIR") from None


def build_backbone(source: str | Path, weights: str | Path | None = None) -> nn.Module:
    """The base transformer (no text head) from ``weights`` (a folder or hub id: ``from_pretrained``),
    else randomly initialised from ``source``'s config (a checkpoint then fills it)."""
    tf = _transformers()
    if weights is None:
        return tf.AutoModel.from_config(backbone_config(source), attn_implementation="sdpa")
    try:
        return tf.AutoModel.from_pretrained(str(weights), attn_implementation="sdpa")
    except (OSError, ValueError) as e:
        raise BackboneError(f"{weights}: cannot load the backbone's weights ({str(e).splitlines()[0]})") from None


class BackboneTokenLM(SpeakerPosition, nn.Module):
    """The token LM on a Hugging Face backbone (module docstring); the same interface as
    :class:`tts.token_lm.model.TokenLM` (``forward``, ``logits``, ``decoder``, ``cfg.vocab``)."""

    def __init__(self, cfg: BackboneLMConfig, root: str | Path = ".", weights: str | Path | None = None,
                 text_llm_weights: str | Path | None = None):
        super().__init__()
        if cfg.text_condition not in TEXT_CONDITIONS:
            raise BackboneError(f"text condition {cfg.text_condition!r}: one of {', '.join(TEXT_CONDITIONS)}")
        self.cfg = cfg
        source = Path(root) / cfg.backbone
        self.llm = build_backbone(source, weights)
        width = self.llm.config.hidden_size
        rows = self.llm.get_input_embeddings().weight.shape[0]
        if rows != cfg.text_vocab:
            raise BackboneError(f"{source}: the backbone embeds {rows} text ids, the model expects {cfg.text_vocab}")
        vocab = cfg.vocab
        self.llm_embedding = nn.Embedding(2, width)  # row 0: start, row 1: task id (text ended)
        self.speech_embedding = nn.Embedding(vocab.output_size, width)
        self.llm_decoder = nn.Linear(width, vocab.output_size)
        self._speaker_modules(cfg, width, self.llm.config.num_attention_heads)
        self.text_llm, self.text_proj = None, None
        if cfg.text_condition == "hidden":
            if cfg.text_llm:
                self.text_llm = build_backbone(Path(root) / cfg.text_llm, text_llm_weights)
            else:
                self.text_llm = copy.deepcopy(self.llm)
            self.text_llm.requires_grad_(False).eval()
            self.text_proj = nn.Linear(self.text_llm.config.hidden_size, width)
        if cfg.gradient_checkpointing:
            self.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.lora_rank:
            self._add_lora(cfg)
        self._cache_keyword = _cache_keyword(self.llm)

    def _add_lora(self, cfg: BackboneLMConfig) -> None:
        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise BackboneError("--lora-rank needs peft: pip install 'dc-speech-vae[llm]'") from None
        names = {name.rsplit(".", 1)[-1] for name, _ in self.llm.named_modules()}
        targets = [t for t in LORA_TARGETS if t in names]
        if not targets:
            raise BackboneError(f"--lora-rank: the backbone has none of the projections {', '.join(LORA_TARGETS)}")
        self.llm = get_peft_model(self.llm, LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha,
                                                       target_modules=targets, lora_dropout=0.0))

    def train(self, mode: bool = True):
        super().train(mode)
        if self.text_llm is not None:
            self.text_llm.eval()  # frozen: no dropout
        return self

    @property
    def device(self) -> torch.device:
        return self.llm_decoder.weight.device

    @property
    def text_embedding(self) -> nn.Embedding:
        return self.llm.get_input_embeddings()

    # ----- inputs -----------------------------------------------------------------------------
    def text_states(self, text: list[torch.Tensor]) -> list[torch.Tensor]:
        """MinMo: each row's text ids (L_b,) -> the frozen text LLM's last hidden states, projected (L_b, D)."""
        lengths = [len(t) for t in text]
        ids = torch.zeros(len(text), max(lengths, default=0), dtype=torch.long, device=self.device)
        mask = torch.zeros_like(ids)
        for b, t in enumerate(text):
            ids[b, : len(t)], mask[b, : len(t)] = t, 1
        if ids.shape[1] == 0:
            return [ids.new_zeros(0, self.llm_decoder.in_features, dtype=torch.float)] * len(text)
        with torch.no_grad():
            states = self.text_llm(input_ids=ids, attention_mask=mask).last_hidden_state
        projected = self.text_proj(states.to(self.text_proj.weight.dtype))
        return [projected[b, :n] for b, n in enumerate(lengths)]

    def embed(self, ids: torch.Tensor, text_states: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S) input ids -> (B, S, D): text, speech and marker ids to their embeddings.
        ``text_states`` (B, S, D), MinMo mode: used at the text positions instead of the text embeddings."""
        vocab = self.cfg.vocab
        text = ids < vocab.text
        speech = (ids >= vocab.text) & (ids < vocab.sos)
        start = (ids == vocab.plain) | (ids == vocab.bistream)
        task = (ids == vocab.sos) | (ids == vocab.turn)
        if not bool((text | speech | start | task).all()):
            raise ValueError(f"input id {int(ids[~(text | speech | start | task)][0])} is outside the vocabulary")
        if text_states is None:
            x = self.text_embedding(ids.clamp(max=vocab.text - 1))
        else:
            x = text_states
        x = torch.where(speech[..., None], self.speech_embedding((ids - vocab.text).clamp(0, vocab.codebook - 1)), x)
        x = torch.where(start[..., None], self.llm_embedding.weight[0], x)
        return torch.where(task[..., None], self.llm_embedding.weight[1], x)

    def _hidden_text(self, ids: torch.Tensor, is_text: torch.Tensor) -> torch.Tensor | None:
        """MinMo mode: (B, S, D) with each row's projected text states at its text positions (else zeros)."""
        if self.text_llm is None:
            return None
        rows = [ids[b][is_text[b]] for b in range(ids.shape[0])]
        out = torch.zeros(*ids.shape, self.llm_decoder.in_features, device=ids.device,
                          dtype=self.text_proj.weight.dtype)
        for b, states in enumerate(self.text_states(rows)):
            out[b, is_text[b]] = states.to(out.dtype)
        return out

    def sequence(self, ids: torch.Tensor, is_text: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        """The whole input sequence (B, S) -> (B, S [+ 1], D) (the decoder without a cache)."""
        return self._with_speaker(self.embed(ids, self._hidden_text(ids, is_text)), speaker)

    def step(self, x: torch.Tensor, keys: torch.Tensor, start: int, cache) -> torch.Tensor:
        """The last x.shape[1] positions (B, n, D) of a sequence with attendable ``keys`` (B, K) from
        position ``start``, earlier ones in ``cache`` (a ``DynamicCache``, extended in place) -> logits."""
        positions = torch.arange(start, start + x.shape[1], device=x.device)[None].expand(x.shape[0], -1)
        out = self.llm(inputs_embeds=x, attention_mask=keys.long(), position_ids=positions,
                       use_cache=cache is not None, **{self._cache_keyword: cache})
        return self.llm_decoder(out.last_hidden_state)

    # ----- training --------------------------------------------------------------------------
    def logits(self, inputs: torch.Tensor, valid: torch.Tensor, is_text: torch.Tensor,
               speaker: torch.Tensor | None = None, hide_text: torch.Tensor | None = None) -> torch.Tensor:
        """Right-padded layouts (B, S) -> logits (B, S, C + 3) at every input position."""
        hide = torch.zeros(inputs.shape[0], dtype=torch.bool, device=inputs.device) if hide_text is None else hide_text
        logits = self.step(self.sequence(inputs, is_text, speaker), self._key_valid(valid, is_text, hide), 0, None)
        return logits[:, 1:] if self.speaker is not None else logits

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, is_text: torch.Tensor,
                speaker: torch.Tensor | None = None, reference: torch.Tensor | None = None,
                reference_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Cross-entropy on the speech positions (targets IGNORE elsewhere), as CosyVoice 2 (mean over scored
        positions); the speaker inputs as :meth:`tts.token_lm.model.TokenLM.forward`."""
        drop = self.cfg.cond_drop if self.training else 0.0
        hide = torch.rand(inputs.shape[0], device=inputs.device) < drop
        speaker = self._speaker_vector(speaker, reference, reference_mask, hide)
        return next_token_loss(self.logits(inputs, valid, is_text, speaker, hide), targets, valid)

    # ----- incremental decoding ----------------------------------------------------------------
    def decoder(self, rows: int = 1, speaker: torch.Tensor | None = None, use_cache: bool = True
                ) -> "BackboneDecoder":
        """An incremental decoder; row 1 (when ``rows`` is 2) is the unconditional one (text hidden)."""
        return BackboneDecoder(self, rows, speaker, use_cache)


class BackboneDecoder(TokenLMDecoder):
    """Feeds ids to a :class:`BackboneTokenLM` a few at a time; the logits (rows, C + 3) at the last
    position. With ``use_cache`` the backbone's own KV cache (``transformers.DynamicCache``) keeps the
    earlier positions; without, every call recomputes the whole sequence."""

    def new_cache(self):
        """An empty ``transformers.DynamicCache`` (the backbone's own KV cache)."""
        from transformers import DynamicCache
        return DynamicCache()

    def _new_text_states(self, count: int, new_text: list[bool]) -> torch.Tensor | None:
        """MinMo mode: (rows, count, D) text states for the new positions (the text LLM rereads all text so far)."""
        if self.model.text_llm is None:
            return None
        text = self.ids[0][self.is_text[0]]
        states = self.model.text_states([text])[0]
        out = torch.zeros(self.rows, count, states.shape[-1], device=states.device, dtype=states.dtype)
        flags = torch.tensor(new_text, dtype=torch.bool, device=states.device)
        out[:, flags] = states[len(text) - int(flags.sum()):]
        return out

    def embed_new(self, new: torch.Tensor, is_text: list[bool]) -> torch.Tensor:
        return self.model.embed(new, self._new_text_states(new.shape[1], is_text))


class BackboneTokenizer:
    """The backbone's own tokenizer as the run's text front end (``encode``, ``encode_batch``,
    ``vocab_size``, ``kind``). ``special_tokens`` are added as CosyVoice 2's front end adds them
    (``<|endofprompt|>``, ``[breath]``, ...), which changes only the ids of those strings."""

    kind = "backbone"

    def __init__(self, tokenizer, text_vocab: int, special_tokens: list[str] | None = None):
        self.tokenizer = tokenizer
        self.special_tokens = list(special_tokens or [])
        if self.special_tokens:
            tokenizer.add_special_tokens({"additional_special_tokens": self.special_tokens})
        if len(tokenizer) > text_vocab:
            raise BackboneError(f"the tokenizer has {len(tokenizer)} ids, the backbone embeds only {text_vocab}")
        self.text_vocab = text_vocab

    @classmethod
    def load(cls, source: str | Path, text_vocab: int, special_tokens: list[str] | None = None) -> "BackboneTokenizer":
        tf = _transformers()
        try:
            tokenizer = tf.AutoTokenizer.from_pretrained(str(source))
        except (OSError, ValueError, TypeError) as e:
            raise BackboneError(f"{source}: no tokenizer there ({str(e).splitlines()[0]})") from None
        return cls(tokenizer, text_vocab, special_tokens)

    @property
    def vocab_size(self) -> int:
        return self.text_vocab

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    def save(self, directory: str | Path) -> None:
        """The tokenizer's files into ``directory`` (the run's ``backbone/`` folder)."""
        self.tokenizer.save_pretrained(str(directory))
