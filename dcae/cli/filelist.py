"""``dcae filelist`` / ``python preprocess/generate_filelist.py``: scan folders for valid audio and write a
filelist (:mod:`preprocess.scan`), with the reference tool's flags::

    python preprocess/generate_filelist.py --paths /data/LibriTTS /data/VCTK --out filelists/train.txt \\
        [--exts wav,flac] [--workers 8] [--min-duration 10] [--flush-every 1000] \\
        [--val-fraction 0.01 --seed 0] [--decode] [--speaker-from-folder] \\
        [--transcript-ext .normalized.txt] [--test-list lists/test_list.txt]

Leaving files out is the tool's job, so ``generate_filelist.py ... && python train.py ...`` goes on
after corrupt files: exit code 0 with the summary; 1 only when no valid file was found, the
filelist could not be written, or --test-list got no line.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from preprocess.filelist import DEFAULT_EXTS


@click.command("filelist", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("extra_paths", nargs=-1, type=click.Path(path_type=Path), metavar="[PATH]...")
@click.option("--paths", multiple=True, type=click.Path(path_type=Path),
              help="Input files or folders (also as arguments: --paths A B C works as in the reference).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output filelist.")
@click.option("--exts", default=DEFAULT_EXTS, show_default=True, help="Audio extensions (comma-separated).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Probe processes (default: CPU cores).")
@click.option("--flush-every", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Save progress to OUT.partial every N valid files.")
@click.option("--min-duration", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Minimum duration in seconds (the reference's default; use 0 to keep all).")
@click.option("--val-fraction", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Hold out this fraction of the valid files as a validation list.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the train/validation split.")
@click.option("--val-out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Validation filelist (default: OUT with _val before the extension).")
@click.option("--decode/--no-decode", default=False, show_default=True,
              help="Decode every file fully: also rejects truncated, NaN and silent audio (slower).")
@click.option("--speaker-from-folder", is_flag=True, default=False,
              help="Write path||SPEAKER lines, the speaker id being the first folder below the input folder "
                   "(ROOT/SPEAKER/...: LibriTTS, VCTK); dcae export carries it into the manifest.")
@click.option("--transcript-ext", default=None, metavar="EXT",
              help="Write path|text lines, the transcript of X.wav being the text file X.EXT beside it (LibriTTS: "
                   ".normalized.txt; also .txt, .lab); audio without one is left out and counted.")
@click.option("--test-list", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --val-fraction and --transcript-ext: also write the validation part as a TTS test list in "
                   "Seed-TTS-eval's format (id|prompt_text|prompt_wav|target_text|target_wav; the prompt is another "
                   "utterance of the same speaker), for dcae tts --list and dcae evaluate --tts-list.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
def filelist_command(extra_paths: tuple[Path, ...], paths: tuple[Path, ...], out: Path, exts: str,
                     workers: int | None, flush_every: int, min_duration: float, val_fraction: float,
                     seed: int, val_out: Path | None, decode: bool, speaker_from_folder: bool,
                     transcript_ext: str | None, test_list: Path | None, progress: bool) -> None:
    """Scan folders for valid audio files and write a filelist (one absolute path per line; with
    --transcript-ext path|text, with --speaker-from-folder a speaker id too)."""
    from preprocess.scan import generate_filelist

    inputs = [*paths, *extra_paths]
    if not inputs:
        raise click.UsageError("give at least one input folder or file (--paths DIR...)")
    if transcript_ext is not None and not transcript_ext.strip(". "):
        raise click.BadParameter("give an extension such as .txt or .normalized.txt", param_hint="--transcript-ext")
    if test_list is not None and (val_fraction <= 0 or not transcript_ext):
        raise click.UsageError("--test-list needs --val-fraction (the held-out part it lists) and --transcript-ext "
                               "(what each utterance says)")
    try:
        result = generate_filelist(inputs, out, exts, workers, min_duration, flush_every, val_fraction, seed,
                                   val_out, decode, progress, speaker_from_folder=speaker_from_folder,
                                   transcript_ext=transcript_ext, test_list=test_list)
    except OSError as e:
        where = f": {e.filename}" if e.filename and Path(e.filename) != Path(out) else ""
        click.echo(f"error: {out}: cannot write ({e.strerror or e}{where})", err=True)
        sys.exit(1)
    if not result.valid:
        click.echo("error: no valid audio files found (nothing to train on; see the lines above)", err=True)
        sys.exit(1)
    if test_list is not None and not result.test_lines:
        sys.exit(1)  # the reason is on the line above
