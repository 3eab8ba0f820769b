"""Every command of the toolkit, together: the ``dcae`` group and its subcommands, one module each.

Commands are thin: they parse options, call the library, print. The group imports a subcommand's
module only when it is used, so ``dcae --help`` is fast and a broken optional dependency of one
command does not break the others. Library modules never
import from here. The entry points the design card names (``train.py``, ``inference.py``,
``python -m tts.train``, ``python -m evaluation``, ``preprocess/generate_filelist.py``) call these
modules.
"""
from __future__ import annotations

import importlib

import click

# name -> (module, attribute, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "reconstruct": ("dcae.cli.audio", "reconstruct_command", "Audio -> latent -> audio, for files or folders."),
    "encode": ("dcae.cli.audio", "encode_command", "Audio files -> latent files (.safetensors)."),
    "decode": ("dcae.cli.audio", "decode_command", "Latent files -> audio files."),
    "export": ("dcae.cli.export", "export_command", "Latents + manifest for a whole corpus (resumable, torchrun-sharded)."),
    "evaluate": ("dcae.cli.evaluate", "evaluate_command", "PESQ / STOI / ESTOI / mel distance / SI-SDR / speaker similarity; --html listening page."),
    "filelist": ("dcae.cli.filelist", "filelist_command", "Scan folders for valid audio and write a filelist."),
    "tts": ("dcae.cli.tts", "tts_command", "Synthesize latents or audio with a trained TTS run."),
    "shards": ("dcae.cli.shards", "shards_command", "Parquet shards <-> one file per utterance (pack / unpack)."),
    "train": ("dcae.cli.train", "train_command", "Train the DC-AE (same flags as python train.py)."),
    "speakers": ("dcae.cli.speakers", "speakers_command", "Speaker embeddings for an exported corpus (resumable, torchrun-sharded)."),
    "tokens": ("dcae.cli.tokens", "tokens_command", "Speech tokens for an exported corpus (resumable, torchrun-sharded)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(SUBCOMMANDS) | set(super().list_commands(ctx)))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SUBCOMMANDS:
            return super().get_command(ctx, name)
        module, attr, _ = SUBCOMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][2]) for name in sorted(SUBCOMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dc-speech-vae")
def main() -> None:
    """DC-Speech-VAE: 5.4 Hz speech latents, BigVGAN-v2 vocoding and TTS on the latents."""


if __name__ == "__main__":
    main()
