"""``dcae export``: latents for a whole corpus, for downstream (TTS) training (:mod:`dcae.latent_export`).

    dcae export --filelist train.txt --out latents/ [--ae-model G.pt --ae-config C.json --vocoder DIR|config.json|HUB_ID]
    dcae export --filelist train.txt --out latents/ --format shards          # Parquet shards instead of files
    torchrun --nproc_per_node 8 --no-python dcae export --filelist train.txt --out latents/
"""
from __future__ import annotations

from pathlib import Path

import click

from dcae.cli.options import ae_options, fail, given_flags, report_job, runtime_options
from dcae.corpus.defaults import DEFAULT_SHARD_MB, LATENT_DTYPE_NAMES


@click.command("export", help="Latents + manifest + stats for a whole corpus (resumable, sharded over torchrun ranks).")
@click.option("--filelist", required=True, type=click.Path(exists=True, path_type=Path),
              help="Lines 'path' or 'path|text'; or an audio corpus in shards: a folder of WebDataset .tar or "
                   "Parquet audio shards (Emilia's layout), or one such file.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Export folder (latents/, manifest.jsonl, stats.json, failed.jsonl; with --format shards: shards/, "
                   "shards.json, stats.json, failed.jsonl).")
@click.option("--format", "layout", type=click.Choice(["files", "shards"]), default="files", show_default=True,
              help="files: one latent file per utterance + manifest.jsonl; shards: Parquet shards (corpora of "
                   "thousands of hours; read by every trainer, pyarrow, Hugging Face datasets, DuckDB).")
@click.option("--shard-mb", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_SHARD_MB, show_default=True,
              help="With --format shards: MB of latents per shard.")
@ae_options
@click.option("--vocoder", default=None,
              help="BigVGAN folder, its config.json, or a hub id (only config.json is fetched): its mel settings "
                   "only (default: packaged bigvgan_v2_22khz_80band_256x config).")
@runtime_options
@click.option("--latent-dtype", type=click.Choice(LATENT_DTYPE_NAMES), default="float32", show_default=True)
@click.option("--batch-size", type=int, default=16, show_default=True, help="Utterances per batch (at most).")
@click.option("--max-batch-seconds", type=float, default=320.0, show_default=True, help="Audio seconds per batch (at most).")
@click.option("--num-workers", type=int, default=None,
              help="Audio decoding worker processes (default: 0 on CPU, up to 4 per GPU process).")
@click.pass_context
def export_command(ctx: click.Context, filelist: Path, out: Path, layout: str, shard_mb: float, ae_model: str | None,
                   ae_config: str | None, vocoder: str | None,
                   device: str | None, precision: str, latent_dtype: str, batch_size: int, max_batch_seconds: float,
                   num_workers: int | None) -> None:
    from dcae.errors import ConfigError
    from dcae.hub import ModelNotFound, resolve_models
    from dcae.latent_export import run_export
    from dcae.model.checkpoint import CheckpointError

    if layout != "shards" and given_flags(ctx, ("shard_mb",)):
        fail("--shard-mb applies to --format shards only")
    try:
        model_path, config_path, mel_config_dir = resolve_models(ae_model, ae_config, vocoder, vocoder_weights=False)
        summary = run_export(filelist, out, model_path, config_path, mel_config_dir, device, precision, latent_dtype,
                             batch_size, max_batch_seconds, num_workers, shards=layout == "shards",
                             shard_mb=shard_mb)
    except (ModelNotFound, CheckpointError, ConfigError, ValueError) as e:  # one line, exit 2, as every command
        fail(str(e))
    report_job(summary, lambda s: f"{out}: {s['utterances']} utterances"
                                  + (f" in {s['shards']} shards" if "shards" in s else "")
                                  + f", {s['frames']} latent frames, {s['failed']} failed (see failed.jsonl)")
