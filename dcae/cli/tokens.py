"""``dcae tokens``: speech tokens for every utterance of an exported corpus.

    dcae tokens --manifest latents/train/manifest.jsonl --tokenizer s3 [--s3-model speech_tokenizer_v2_25hz.onnx]
    dcae tokens --manifest latents/train/manifest.jsonl --tokenizer runs/fsq      # an FSQ tokenizer run folder
    dcae tokens --manifest latents/train-shards --tokenizer s3                  # a shard folder: tokens into its shards
    torchrun --nproc_per_node 8 --no-python dcae tokens --manifest ... --tokenizer ...

One token file per utterance next to its latent, and the manifest rewritten with ``token_path``,
``num_tokens`` and ``token_rate``; for a shard folder, the ``tokens`` and ``token_rate`` columns of
its shards (layout, resuming and sharding: :mod:`tts.tokenizers.token_export`).
Rerunning the same command resumes. Bad inputs are named on one line each and recorded in
``tokens/failed.jsonl``; the exit code is 1 when any failed, 2 when the command cannot start.
"""
from __future__ import annotations

from pathlib import Path

import click

from dcae.cli.options import device_option, fail, report_job
from tts.tokenizers import S3_SPEC


def check_spec(spec: str) -> None:
    from tts.tokenizers.token_export import TokenExportError

    if spec != S3_SPEC and not Path(spec).exists():
        raise TokenExportError(f"--tokenizer {spec}: unknown tokenizer (want '{S3_SPEC}' or an FSQ tokenizer "
                               f"run folder, and there is no folder {spec})")


@click.command("tokens", help=__doc__.split("\n\n")[0])
@click.option("--manifest", required=True, type=click.Path(path_type=Path),
              help="manifest.jsonl of a dcae export folder, or a shard folder (the tokens go into its shards); "
                   "rows need audio_path.")
@click.option("--tokenizer", "spec", required=True,
              help=f"'{S3_SPEC}' (S3Tokenizer v2, 25 Hz: the [s3] extra, README \"Extras\") or an FSQ tokenizer run folder "
                   f"(python -m tts.train --model fsq-tokenizer).")
@click.option("--s3-model", default=None, type=click.Path(dir_okay=False),
              help="Local speech_tokenizer_v2_25hz.onnx (default: the s3tokenizer package's download cache).")
@device_option(help="cpu, cuda, cuda:1 ... (default: cuda if available; torchrun: each rank its GPU).")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Utterances per batch (at most).")
@click.option("--max-batch-seconds", type=float, default=320.0, show_default=True,
              help="Audio seconds per batch (at most).")
@click.option("--num-workers", type=int, default=None,
              help="Audio decoding worker processes (default: 0 on CPU, up to 4 per GPU process).")
def tokens_command(manifest: Path, spec: str, s3_model: str | None, device: str | None, batch_size: int,
                   max_batch_seconds: float, num_workers: int | None) -> None:
    from dcae.corpus.job import JobError
    from dcae.corpus.manifest import ManifestError
    from dcae.corpus.shards import is_shard_folder
    from dcae.distributed import init_distributed
    from tts.tokenizers import FSQTokenizerRunError, load_tokenizer
    from tts.tokenizers.s3_weights import S3TokenizerUnavailable
    from tts.tokenizers.token_export import TokenExportError, export_shard_tokens, export_tokens

    try:
        if batch_size < 1 or not max_batch_seconds > 0:
            raise TokenExportError("--batch-size must be >= 1 and --max-batch-seconds > 0")
        shards = is_shard_folder(manifest)
        if not manifest.exists():
            raise TokenExportError(f"--manifest {manifest}: file not found")
        if not shards and not manifest.is_file():
            raise TokenExportError(f"--manifest {manifest}: neither a manifest.jsonl nor a shard folder")
        check_spec(spec)
        dist = init_distributed(device)
        tokenizer = load_tokenizer(spec, device=dist.device, s3_model=s3_model, s3_flag="--s3-model")
        export = export_shard_tokens if shards else export_tokens
        summary = export(manifest, tokenizer, batch_size, max_batch_seconds, num_workers)
    except (JobError, ManifestError, FSQTokenizerRunError, S3TokenizerUnavailable) as e:
        fail(str(e))
    seconds = summary["seconds"]
    speed = (f"; this run: {summary['utterances_this_run']} utterances, "
             f"{summary['utterances_this_run'] / max(seconds, 1e-9):.1f} utt/s, "
             f"{summary['audio_seconds_this_run'] / max(seconds, 1e-9):.0f}x real time"
             if summary["utterances_this_run"] else "")
    failed_file = (manifest if shards else manifest.parent) / "tokens" / "failed.jsonl"
    report_job(summary, lambda s: f"{manifest}: {s['with_tokens']} of {s['utterances']} utterances with tokens "
                                  f"({s['tokens']} tokens), {s['failed']} failed (see {failed_file}){speed}")
