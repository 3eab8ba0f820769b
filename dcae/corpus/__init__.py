"""The corpus: latent and token files, manifests, statistics, shards, the export store and the datasets.

| module | concept |
| --- | --- |
| :mod:`.latent_file` | latent file (safetensors ``latent`` (D, frames) + metadata) |
| :mod:`.token_file` | speech-token file (safetensors ``tokens`` (num_tokens,) + ``token_rate``) |
| :mod:`.speaker_file` | speaker-embedding file (safetensors ``embedding`` (S,)) |
| :mod:`.tensor_file` | what both file formats share: atomic write, truncation check |
| :mod:`.manifest` | ``manifest.jsonl`` reader and writer |
| :mod:`.stats` | per-dimension statistics (``stats.json``): running sums, mean/std, normalisation |
| :mod:`.store` | the resumable export store (``dcae export``) |
| :mod:`.dataset` | a map-style dataset over a manifest, padding and collation |
| :mod:`.shards` | Parquet shards: format, reading, writing, the index |
| :mod:`.stream` | the corpus behind one interface (shards or manifest) and the streaming batches every TTS trainer reads |
| :mod:`.job` | the sharded resumable job every corpus-wide command plugs into (:mod:`.shard_work`, :mod:`.convert`) |
| :mod:`.defaults` | names and defaults of the formats, light to import (the commands' ``--help``) |

The names below are importable from ``dcae.corpus`` itself; each is loaded on first use.
"""
from __future__ import annotations

from dcae.lazy import lazy_exports

_EXPORTS = {
    "LatentManifestDataset": "dcae.corpus.dataset",
    "collate_latents": "dcae.corpus.dataset",
    "pad_sequences": "dcae.corpus.dataset",
    "DEFAULT_FRAME_RATE": "dcae.corpus.latent_file",
    "DEFAULT_HOP_LENGTH": "dcae.corpus.latent_file",
    "DEFAULT_SAMPLE_RATE": "dcae.corpus.latent_file",
    "LATENT_EXTENSION": "dcae.corpus.latent_file",
    "LatentFileError": "dcae.corpus.latent_file",
    "LatentMeta": "dcae.corpus.latent_file",
    "check_complete": "dcae.corpus.latent_file",
    "load_latent": "dcae.corpus.latent_file",
    "other_autoencoder_warning": "dcae.corpus.latent_file",
    "save_latent": "dcae.corpus.latent_file",
    "weights_hash": "dcae.corpus.latent_file",
    "MANIFEST_KEYS": "dcae.corpus.manifest",
    "ManifestError": "dcae.corpus.manifest",
    "read_manifest": "dcae.corpus.manifest",
    "write_manifest": "dcae.corpus.manifest",
    "LatentStats": "dcae.corpus.stats",
    "RunningStats": "dcae.corpus.stats",
    "StoreError": "dcae.corpus.store",
    "StorePart": "dcae.corpus.store",
    "done_rows": "dcae.corpus.store",
    "latent_relpath": "dcae.corpus.store",
    "merge_parts": "dcae.corpus.store",
    "prune_parts": "dcae.corpus.store",
    "read_complete_latent": "dcae.corpus.store",
    "utterance_id": "dcae.corpus.store",
    "TensorFileError": "dcae.corpus.tensor_file",
    "TokenFileError": "dcae.corpus.token_file",
    "TokenMeta": "dcae.corpus.token_file",
    "load_tokens": "dcae.corpus.token_file",
    "save_tokens": "dcae.corpus.token_file",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
