"""Speech-token encoder with a fixed lookahead: token ids (B, N) -> features (B, N, C).

    embedding + mode embedding (full / chunked) -> lookahead convolution (token i reads tokens i .. i + lookahead)
              -> transformer blocks (rotary positions = token index) -> LayerNorm

The lookahead convolution is the only place that reads ahead (CosyVoice 2's pre-lookahead layer).
In chunked mode the transformer is causal, so feature i depends on tokens 0 .. i + lookahead and
nothing later: a stream can compute it as soon as token i + lookahead has arrived
(:meth:`TokenEncoder.extend`), with the same numbers as the whole sequence. In full mode
(``causal`` false) the transformer is bidirectional. A learned mode embedding tells the two apart
(unified training shares every other weight between them).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tts.layers import Block, LayerCache, rope_angles
from tts.token_flow.chunk_attention import token_mask


class TokenEncoder(nn.Module):
    def __init__(self, vocab_size: int, width: int, layers: int, heads: int, ff_mult: float = 4.0,
                 dropout: float = 0.0, lookahead: int = 3):
        super().__init__()
        self.lookahead = lookahead
        self.heads = heads
        self.embed = nn.Embedding(vocab_size, width)
        self.mode = nn.Embedding(2, width)  # 0: full context (bidirectional), 1: chunked (causal)
        self.conv = nn.Conv1d(width, width, lookahead + 1)
        self.blocks = nn.ModuleList(Block(width, heads, ff_mult, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(width)

    def _lookahead(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, N + lookahead, C) embeddings -> (B, N, C): emb[i] + conv(emb[i .. i + lookahead])."""
        out = self.conv(emb.transpose(1, 2)).transpose(1, 2)
        return emb[:, : out.shape[1]] + F.gelu(out)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor, causal: torch.Tensor) -> torch.Tensor:
        """tokens (B, N) right-padded, valid (B, N) bool, causal (B,) bool -> (B, N, C) (zeros at padding)."""
        emb = (self.embed(tokens) + self.mode(causal.long())[:, None]) * valid[..., None]
        h = self._lookahead(F.pad(emb, (0, 0, 0, self.lookahead)))
        positions = torch.arange(tokens.shape[1], device=tokens.device)[None].expand(tokens.shape[0], -1)
        rope = rope_angles(positions, h.shape[-1] // self.heads)
        mask = token_mask(causal, valid)
        for block in self.blocks:
            h = block(h, rope, mask)
        return self.norm(h) * valid[..., None]

    def new_cache(self) -> list[LayerCache]:
        """Per-layer keys/values for :meth:`extend`."""
        return [LayerCache() for _ in self.blocks]

    def extend(self, tokens: torch.Tensor, done: int, ready: int, cache: list[LayerCache]) -> torch.Tensor:
        """Causal features of tokens [done, ready) given every token received so far, ``tokens`` (B, n)
        (n >= ready + lookahead, or the stream ended: missing lookahead tokens read as padding), with
        features [0, done) already in ``cache`` -> (B, ready - done, C); ``cache`` is extended."""
        window = tokens[:, done: ready + self.lookahead]
        emb = self.embed(window) + self.mode.weight[1]
        emb = F.pad(emb, (0, 0, 0, ready + self.lookahead - done - window.shape[1]))
        h = self._lookahead(emb)
        count = ready - done
        positions = torch.arange(done, ready, device=tokens.device)[None].expand(tokens.shape[0], -1)
        rope = rope_angles(positions, h.shape[-1] // self.heads)
        keys = torch.arange(ready, device=tokens.device)
        mask = (keys[None, :] <= positions[0][:, None])[None, None]  # (1, 1, count, ready)
        for block, layer_cache in zip(self.blocks, cache):
            h = block(h, rope, mask, cache=layer_cache)
        return self.norm(h)[:, :count]
