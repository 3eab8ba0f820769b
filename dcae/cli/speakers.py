"""``dcae speakers``: a speaker embedding for every utterance of an exported corpus, from a pretrained
speaker-verification model, and one per speaker (the mean of its utterances).

    dcae speakers --manifest latents/train/manifest.jsonl                        # Resemblyzer, 256-d
    dcae speakers --manifest latents/train/manifest.jsonl --encoder campplus.onnx # CosyVoice's CAM++, 192-d
    dcae speakers --manifest latents/train-shards                                 # a shard folder: into its shards
    torchrun --nproc_per_node 8 --no-python dcae speakers --manifest ...

One embedding file per utterance (``speakers/``) and the manifest rewritten with ``speaker_path``, which
the token LM and the token flow read as their fixed speaker condition (``--speaker-dim``); for a shard
folder, the shards' ``speaker_embedding`` column. Rows with a ``speaker`` id also give
``speakers/by_speaker/<id>.safetensors`` (layout and resuming: :mod:`tts.speakers.embedding_export`).
Rerunning the same command resumes. Bad inputs are named on one line each and recorded in
``speakers/failed.jsonl``; the exit code is 1 when any failed, 2 when the command cannot start.
"""
from __future__ import annotations

from pathlib import Path

import click

from dcae.cli.options import fail, report_job


@click.command("speakers", help=__doc__.split("\n\n")[0])
@click.option("--manifest", required=True, type=click.Path(path_type=Path),
              help="manifest.jsonl of a dcae export folder, or a shard folder (the embeddings go into its shards); "
                   "rows need audio_path.")
@click.option("--encoder", "spec", default="resemblyzer", show_default=True,
              help="'resemblyzer' (GE2E, 256-d, weights in its wheel: the [sim] extra) or a local ONNX speaker "
                   "model on 80-bin Kaldi fbank at 16 kHz (CosyVoice's campplus.onnx, 3D-Speaker / WeSpeaker "
                   "exports: the [speakers] extra).")
@click.option("--num-workers", type=int, default=None,
              help="Audio decoding worker processes (default: 0, the model uses every core).")
def speakers_command(manifest: Path, spec: str, num_workers: int | None) -> None:
    from dcae.corpus.job import JobError
    from dcae.corpus.manifest import ManifestError
    from dcae.corpus.shards import is_shard_folder
    from tts.speakers.embedding_export import export_shard_speakers, export_speakers
    from tts.speakers.verification import VerifierError, load_verifier

    try:
        shards = is_shard_folder(manifest)
        if not manifest.exists():
            raise JobError(f"--manifest {manifest}: file not found")
        if not shards and not manifest.is_file():
            raise JobError(f"--manifest {manifest}: neither a manifest.jsonl nor a shard folder")
        if num_workers is not None and num_workers < 0:
            raise JobError("--num-workers must be >= 0")
        verifier = load_verifier(spec)
        export = export_shard_speakers if shards else export_speakers
        summary = export(manifest, verifier, num_workers)
    except (JobError, ManifestError, VerifierError) as e:
        fail(str(e))
    seconds = summary["seconds"]
    speed = (f"; this run: {summary['utterances_this_run']} utterances, "
             f"{summary['utterances_this_run'] / max(seconds, 1e-9):.1f} utt/s"
             if summary["utterances_this_run"] else "")
    failed_file = (manifest if shards else manifest.parent) / "speakers" / "failed.jsonl"
    report_job(summary, lambda s: f"{manifest}: {s['with_embedding']} of {s['utterances']} utterances with a "
                                  f"{s['dim']}-d speaker embedding, {s['speakers']} speaker means, {s['failed']} "
                                  f"failed (see {failed_file}){speed}")
