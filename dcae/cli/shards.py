"""``dcae shards pack`` / ``dcae shards unpack``: an export from one layout to the other
(:mod:`dcae.corpus.convert`), resumable and sharded over torchrun ranks.

    dcae shards pack --manifest latents/train/manifest.jsonl --out latents/train-shards [--shard-mb 256]
    dcae shards unpack --shards latents/train-shards --out latents/train-files
"""
from __future__ import annotations

from pathlib import Path

import click

from dcae.cli.options import fail, report_job
from dcae.corpus.defaults import DEFAULT_SHARD_MB

WORKERS_HELP = "File-reading worker processes (default: none on CPU)."


@click.group("shards", context_settings={"help_option_names": ["-h", "--help"]})
def shards_command() -> None:
    """Parquet shards <-> one file per utterance (pack / unpack)."""


@shards_command.command("pack")
@click.option("--manifest", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="manifest.jsonl of a per-file export (dcae export, dcae tokens).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Shard folder to write (shards/, shards.json, stats.json).")
@click.option("--shard-mb", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_SHARD_MB, show_default=True,
              help="MB of latents per shard.")
@click.option("--num-workers", type=click.IntRange(min=0), default=None, help=WORKERS_HELP)
def pack_command(manifest: Path, out: Path, shard_mb: float, num_workers: int | None) -> None:
    """Latent (and token, speaker) files of a manifest -> Parquet shards."""
    from dcae.corpus.convert import pack
    from dcae.corpus.latent_file import LatentFileError
    from dcae.corpus.manifest import ManifestError
    from dcae.corpus.shards import ShardError

    try:
        summary = pack(manifest, out, shard_mb, num_workers=num_workers)
    except (ManifestError, LatentFileError, ShardError, ValueError) as e:
        fail(str(e))
    report_job(summary, lambda s: f"{out}: {s['utterances']} utterances in {s['shards']} shards, {s['frames']} latent "
                                  f"frames, {s['failed']} failed (see {out / 'failed.jsonl'})")


@shards_command.command("unpack")
@click.option("--shards", "shards", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Shard folder (shards.json or shards/*.parquet).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Export folder to write (latents/, tokens/, speakers/, manifest.jsonl, stats.json).")
@click.option("--num-workers", type=click.IntRange(min=0), default=None, help=WORKERS_HELP)
def unpack_command(shards: Path, out: Path, num_workers: int | None) -> None:
    """Parquet shards -> one latent (token, speaker) file per utterance + manifest.jsonl + stats.json."""
    from dcae.corpus.convert import unpack
    from dcae.corpus.shards import ShardError

    try:
        summary = unpack(shards, out, num_workers=num_workers)
    except (ShardError, ValueError) as e:
        fail(str(e))
    report_job(summary, lambda s: f"{out}: {s['utterances']} utterances, {s['frames']} latent frames, "
                                  f"{s['failed']} failed (see {out / 'failed.jsonl'})")
