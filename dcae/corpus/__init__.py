"""Latents: the file formats, the export store, the manifest, the statistics and the dataset.

| module | concept |
| --- | --- |
| :mod:`.file` | latent file (safetensors ``latent`` (D, frames) + metadata) |
| :mod:`.tokens` | speech-token file (safetensors ``tokens`` (num_tokens,) + ``token_rate``) |
| :mod:`.tensor_file` | what both file formats share: atomic write, truncation check |
| :mod:`.manifest` | ``manifest.jsonl`` reader and writer |
| :mod:`.stats` | per-dimension statistics (``stats.json``): running sums, mean/std, normalisation |
| :mod:`.store` | the resumable export store (``dcae export``) |
| :mod:`.dataset` | the dataset trainers read, padding and collation |
"""
from dcae.corpus.dataset import LatentManifestDataset, collate_latents, pad_sequences
from dcae.corpus.latent_file import (
                                     DEFAULT_FRAME_RATE,
                                     DEFAULT_HOP_LENGTH,
                                     DEFAULT_SAMPLE_RATE,
                                     LATENT_EXTENSION,
                                     LatentFileError,
                                     LatentMeta,
                                     check_complete,
                                     load_latent,
                                     other_autoencoder_warning,
                                     save_latent,
                                     weights_hash,
)
from dcae.corpus.manifest import MANIFEST_KEYS, ManifestError, read_manifest, write_manifest
from dcae.corpus.stats import LatentStats, RunningStats
from dcae.corpus.store import (
                                     StoreError,
                                     StorePart,
                                     done_rows,
                                     latent_relpath,
                                     merge_parts,
                                     prune_parts,
                                     read_complete_latent,
                                     utterance_id,
)
from dcae.corpus.tensor_file import TensorFileError
from dcae.corpus.token_file import TokenFileError, TokenMeta, load_tokens, save_tokens

__all__ = [
    "LatentMeta", "LatentFileError", "save_latent", "load_latent", "check_complete", "weights_hash",
    "LATENT_EXTENSION", "other_autoencoder_warning",
    "DEFAULT_SAMPLE_RATE", "DEFAULT_HOP_LENGTH", "DEFAULT_FRAME_RATE",
    "TokenMeta", "TokenFileError", "save_tokens", "load_tokens", "TensorFileError",
    "ManifestError", "read_manifest", "write_manifest", "MANIFEST_KEYS",
    "RunningStats", "LatentStats",
    "StorePart", "StoreError", "done_rows", "merge_parts", "prune_parts", "utterance_id", "latent_relpath",
    "read_complete_latent",
    "LatentManifestDataset", "pad_sequences", "collate_latents",
]
