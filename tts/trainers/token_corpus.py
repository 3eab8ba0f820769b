"""The speech-token files of a manifest's rows, read once when a run starts (token-flow, token-lm).

Every file must load and the corpus must have one token rate (each row's ``token_rate``, else its
file's metadata): one tokenizer per run. The scan also gives what the run files record: the
codebook size and tokenizer the files' metadata name, the largest id, and each row's token count.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dcae.corpus import ManifestError, TokenFileError, TokenMeta, load_tokens


@dataclass(frozen=True)
class TokenCorpus:
    token_rate: float  # tokens per second, the same for every row
    counts: list[int]  # tokens per row, in row order
    largest_id: int  # -1 when every file is empty
    codebook_size: int | None  # the largest codebook_size in the files' metadata (None: no file says)
    tokenizer: str  # the tokenizers the files' metadata name, sorted, comma-joined ("" when none)


def row_tokens(manifest: str | Path, row: dict[str, Any]) -> tuple[torch.Tensor, TokenMeta]:
    """Row ``row``'s token file: (LongTensor (N,), metadata). Raises :class:`ManifestError`."""
    try:
        return load_tokens(row["token_path"])
    except TokenFileError as e:
        raise ManifestError(f"{manifest}: row {row['id']}: {e}") from None


def scan_token_files(manifest: str | Path, rows: list[dict[str, Any]]) -> TokenCorpus:
    """Read every row's token file (``token_path``, absolute as :func:`~dcae.corpus.read_manifest`
    gives it) and check the token rate. Raises :class:`ManifestError` naming the row."""
    rate, counts, codebooks, tokenizers, largest = None, [], set(), set(), -1
    for row in rows:
        tokens, meta = row_tokens(manifest, row)
        row_rate = float(row["token_rate"]) if row.get("token_rate") else meta.token_rate
        if row_rate is None:
            raise ManifestError(f"{manifest}: row {row['id']}: no token_rate (neither in the row nor in "
                                f"{row['token_path']})")
        if rate is None:
            rate = row_rate
        elif abs(row_rate - rate) > 1e-6 * rate:
            raise ManifestError(f"{manifest}: row {row['id']}: token rate {row_rate:g} differs from the first "
                                f"row's {rate:g} (one tokenizer per run)")
        counts.append(tokens.numel())
        if tokens.numel():
            largest = max(largest, int(tokens.max()))
        if "codebook_size" in meta.extra:
            codebooks.add(int(meta.extra["codebook_size"]))
        tokenizers.add(meta.extra.get("tokenizer", ""))
    return TokenCorpus(token_rate=rate, counts=counts, largest_id=largest,
                       codebook_size=max(codebooks) if codebooks else None,
                       tokenizer=",".join(sorted(t for t in tokenizers if t)))
