"""Text -> speech tokens: a decoder-only transformer (stage 1 of the two-stage TTS; CosyVoice 2's LM shape).

The sequence is ``[speaker?] <plain> text <sos> speech`` or the interleaved bistream layout
(:mod:`tts.token_lm_layout`); cross-entropy on the speech tokens, ``<eos>`` and ``<fill>``. An
optional speaker vector is projected into one extra first position: a fixed embedding (S,) per row
(``speaker_dim``), or with ``speaker_encoder="learnable"`` the vector MiniMax-Speech's learnable
speaker encoder (:mod:`tts.speakers.learnable`) makes of a reference's latents, trained jointly and
dropped with the text (a zero vector: no reference). Classifier-free
guidance: in training the text positions are hidden from attention with probability ``cond_drop``;
at sampling a second row hides them and the logits are mixed (:func:`tts.token_sampling.guided_logits`).

    model = TokenLM(TokenLMConfig(text_vocab=40, codebook_size=1000))
    losses = model(inputs, targets, valid, is_text)          # (B, S) each, from the layouts
    decoder = model.decoder(rows=2, speaker=None)            # incremental, KV-cached
    logits = decoder.feed([ids...], [is_text...])            # (rows, output vocab) at the last position

Generation loops (plain and bistream, with prompts, lengths, sampling) are :mod:`tts.token_lm_generate`.
Shapes: B batch, S sequence, C width.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tts.layers import Block, LayerCache, rope_angles
from tts.speakers.learnable import SpeakerConditioning
from tts.token_lm.layout import IGNORE, Vocab


@dataclass
class TokenLMConfig:
    text_vocab: int  # text ids (the run's front end)
    codebook_size: int  # speech-token ids
    width: int = 256
    layers: int = 6
    heads: int = 4
    ff_mult: float = 4.0
    dropout: float = 0.0
    speaker_dim: int = 0  # speaker embedding size (0: none)
    cond_drop: float = 0.0  # text hidden with this probability in training (classifier-free guidance)
    bistream: bool = False  # trained on the interleaved layout too
    text_chunk: int = 5  # bistream: text ids per chunk (N)
    speech_chunk: int = 15  # bistream: speech tokens per chunk (M)
    speaker_encoder: str = "none"  # none | learnable (MiniMax-Speech: a reference's latents -> a vector, trained jointly)
    speaker_layers: int = 2  # learnable speaker encoder: transformer blocks
    latent_dim: int = 80  # learnable speaker encoder: the reference latents' dimension
    reference_frames: int = 64  # learnable speaker encoder: training references are crops of at most this many frames

    @property
    def vocab(self) -> Vocab:
        return Vocab(self.text_vocab, self.codebook_size)


class SpeakerPosition(SpeakerConditioning):
    """What the token LMs (:class:`TokenLM`, :class:`tts.token_lm.backbone.BackboneTokenLM`) share around
    their optional speaker vector, one extra first position (the modules: :class:`SpeakerConditioning`)."""

    def _speaker_vector(self, speaker: torch.Tensor | None, reference: torch.Tensor | None,
                        reference_mask: torch.Tensor | None, hide: torch.Tensor) -> torch.Tensor | None:
        """Training: the fixed embedding (B, S_dim), or the learnable encoder's vectors of the references
        (B, R, D) (zero for the rows whose conditions are hidden, ``hide`` (B,))."""
        if self.speaker_encoder is None or reference is None:
            return speaker
        if reference_mask is None:
            reference_mask = torch.ones(reference.shape[:2], dtype=torch.bool, device=reference.device)
        return self.speaker_encoder(reference, reference_mask) * (~hide)[:, None]

    def _with_speaker(self, x: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        """(B, n, C) [+ speaker (B, S_dim) projected as a first position] -> (B, n [+ 1], C). With the
        learnable encoder no vector means no reference: the zero vector (as when dropped in training)."""
        if self.speaker is None:
            return x
        if speaker is None and self.speaker_encoder is not None:
            speaker = x.new_zeros(x.shape[0], self.speaker_size)
        if speaker is None:
            raise ValueError(f"this model takes a speaker embedding of {self.cfg.speaker_dim} values")
        return torch.cat([self.speaker(speaker.to(x.dtype))[:, None], x], dim=1)

    def _key_valid(self, valid: torch.Tensor, is_text: torch.Tensor, hide_text: torch.Tensor) -> torch.Tensor:
        """Keys that may be attended to: (B, S [+ 1]) from validity and text flags (B, S), the rows (B,)
        whose text is hidden (classifier-free guidance), and the speaker position in front."""
        keys = valid & ~(is_text & hide_text[:, None])
        if self.speaker is not None:
            keys = torch.cat([torch.ones_like(keys[:, :1]), keys], dim=1)
        return keys


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """Cross-entropy (mean over the scored positions) and accuracy of logits (B, S, V) on targets (B, S)
    (IGNORE where nothing is predicted; padding, ``valid`` False, ignored too)."""
    targets = targets.masked_fill(~valid, IGNORE)
    loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
    scored = targets != IGNORE
    accuracy = (logits.argmax(-1) == targets)[scored].float().mean()
    return {"loss": loss, "accuracy": accuracy.detach()}


class TokenLM(SpeakerPosition, nn.Module):
    def __init__(self, cfg: TokenLMConfig):
        super().__init__()
        if cfg.width % cfg.heads or (cfg.width // cfg.heads) % 2:
            raise ValueError(f"width {cfg.width} must split into {cfg.heads} heads of even size")
        self.cfg = cfg
        vocab = cfg.vocab
        self.embed = nn.Embedding(vocab.input_size, cfg.width)
        self._speaker_modules(cfg, cfg.width, cfg.heads)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.ff_mult, cfg.dropout) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.width)
        self.head = nn.Linear(cfg.width, vocab.output_size)
        nn.init.normal_(self.embed.weight, std=0.02)

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def _inputs(self, ids: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        """(B, S) ids [+ speaker (B, S_dim) as a first position] -> (B, S [+ 1], C)."""
        return self._with_speaker(self.embed(ids), speaker)

    def sequence(self, ids: torch.Tensor, is_text: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        """The whole input sequence (B, S) -> (B, S [+ 1], C) (:class:`TokenLMDecoder` without a cache)."""
        return self._inputs(ids, speaker)

    def step(self, x: torch.Tensor, keys: torch.Tensor, start: int, caches: list[LayerCache] | None) -> torch.Tensor:
        """The last x.shape[1] positions (B, n, C) of a sequence whose attendable keys are ``keys`` (B, K),
        starting at position ``start`` (earlier ones in ``caches``) -> logits (B, n, V)."""
        return self._run(x, start, self.attention_mask(keys, x.shape[1]), caches)

    def _run(self, x: torch.Tensor, start: int, mask: torch.Tensor, caches: list[LayerCache] | None = None
             ) -> torch.Tensor:
        """Blocks over x (B, n, C) at positions start.. start + n - 1; mask (B, 1, n, keys) -> logits (B, n, V)."""
        positions = torch.arange(start, start + x.shape[1], device=x.device)[None].expand(x.shape[0], -1)
        rope = rope_angles(positions, self.cfg.width // self.cfg.heads)
        for i, block in enumerate(self.blocks):
            x = block(x, rope, mask, cache=None if caches is None else caches[i])
        return self.head(self.norm(x))

    @staticmethod
    def attention_mask(key_valid: torch.Tensor, queries: int) -> torch.Tensor:
        """Causal mask for the last ``queries`` of the keys (B, K) -> (B, 1, queries, K); a query always sees itself."""
        keys = key_valid.shape[1]
        q = torch.arange(keys - queries, keys, device=key_valid.device)[:, None]
        k = torch.arange(keys, device=key_valid.device)[None]
        return (((k <= q)[None] & key_valid[:, None, :]) | (k == q)[None])[:, None]


    # ----- training --------------------------------------------------------------------------
    def forward(self, inputs: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor, is_text: torch.Tensor,
                speaker: torch.Tensor | None = None, reference: torch.Tensor | None = None,
                reference_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Cross-entropy for right-padded layouts: inputs, targets (IGNORE where none), valid, is_text (B, S);
        a fixed speaker (B, S_dim), or for the learnable encoder reference latents (B, R, D) + mask (B, R)."""
        drop = self.cfg.cond_drop if self.training else 0.0
        hide = torch.rand(inputs.shape[0], device=inputs.device) < drop
        speaker = self._speaker_vector(speaker, reference, reference_mask, hide)
        keys = self._key_valid(valid, is_text, hide)
        logits = self._run(self._inputs(inputs, speaker), 0, self.attention_mask(keys, keys.shape[1]))
        if self.speaker is not None:
            logits = logits[:, 1:]
        return next_token_loss(logits, targets, valid)

    # ----- incremental decoding ----------------------------------------------------------------
    def decoder(self, rows: int = 1, speaker: torch.Tensor | None = None, use_cache: bool = True) -> "TokenLMDecoder":
        """An incremental decoder; row 1 (when ``rows`` is 2) is the unconditional one (text hidden)."""
        return TokenLMDecoder(self, rows, speaker, use_cache)


class TokenLMDecoder:
    """Feeds ids to a :class:`TokenLM` a few at a time and returns the logits at the last position.

    With ``use_cache`` the keys/values of earlier positions are kept (one :class:`LayerCache` per
    block); without, every call recomputes the whole sequence (the reference the cache is tested against).
    """

    def __init__(self, model: TokenLM, rows: int, speaker: torch.Tensor | None, use_cache: bool):
        if rows not in (1, 2):
            raise ValueError(f"rows must be 1 (no guidance) or 2 (conditional, unconditional), got {rows}")
        self.model, self.rows, self.use_cache = model, rows, use_cache
        device = model.device
        self.hide = torch.arange(rows, device=device) == 1
        if model.speaker_encoder is not None:  # no reference: the zero vector; the unconditional row: zero too
            vector = torch.zeros(model.speaker_size) if speaker is None else speaker.reshape(-1)
            self.speaker = vector.float().to(device)[None] * (~self.hide)[:, None]
        else:
            self.speaker = None if speaker is None else speaker.reshape(1, -1).float().to(device).expand(rows, -1)
        if model.speaker is not None and self.speaker is None:
            raise ValueError(f"this model takes a speaker embedding of {model.cfg.speaker_dim} values")
        self.ids = torch.zeros(rows, 0, dtype=torch.long, device=device)
        self.is_text = torch.zeros(rows, 0, dtype=torch.bool, device=device)
        self.caches = self.new_cache() if use_cache else None
        self.started = False

    def new_cache(self):
        """An empty KV cache for the model: one :class:`LayerCache` per block."""
        return [LayerCache() for _ in self.model.blocks]

    @property
    def length(self) -> int:
        return self.ids.shape[1]

    @torch.no_grad()
    def feed(self, ids: list[int], is_text: list[bool] | bool = False) -> torch.Tensor:
        """Append ids (n,) (``is_text``: per id or for all); logits (rows, output vocab) after the last."""
        if not ids:
            raise ValueError("feed needs at least one id")
        device = self.model.device
        flags = [is_text] * len(ids) if isinstance(is_text, bool) else list(is_text)
        new = torch.tensor(ids, dtype=torch.long, device=device)[None].expand(self.rows, -1)
        new_text = torch.tensor(flags, dtype=torch.bool, device=device)[None].expand(self.rows, -1)
        self.ids = torch.cat([self.ids, new], dim=1)
        self.is_text = torch.cat([self.is_text, new_text], dim=1)
        model = self.model
        keys = model._key_valid(torch.ones_like(self.is_text), self.is_text, self.hide)
        if not self.use_cache:
            return model.step(model.sequence(self.ids, self.is_text, self.speaker), keys, 0, None)[:, -1].float()
        x = self.embed_new(new, flags)
        start = keys.shape[1] - len(ids)
        if not self.started and model.speaker is not None:
            x = model._with_speaker(x, self.speaker)
            start -= 1
        self.started = True
        return model.step(x, keys, start, self.caches)[:, -1].float()

    def embed_new(self, new: torch.Tensor, is_text: list[bool]) -> torch.Tensor:
        """The embeddings (rows, n, C) of the ids just appended (rows, n)."""
        return self.model.embed(new)
