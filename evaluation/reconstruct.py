"""Make the audio that ``dcae evaluate --filelist`` scores: DCAE reconstructions and BigVGAN copy-synthesis.

For each listed file (decoded to 22.05 kHz mono):

- ``reconstructed/<name>.wav``: audio -> mel -> DCAE encode/decode -> BigVGAN;
- ``copy_synthesis/<name>.wav``: audio -> mel -> BigVGAN, the best the DCAE could do with this
  vocoder (its ceiling).

``<name>`` is the file's path relative to the deepest folder shared by all listed files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from dcae.audio import AudioError, check_audio, load_audio, save_audio
from dcae.paths import colliding_outputs
from dcae.pipeline import ModelLoadError, load_wrapper
from dcae.progress import progress_bar
from evaluation.scoring import Row, empty_row
from preprocess.filelist import FilelistError, read_filelist

RECONSTRUCTED = "reconstructed"
COPY_SYNTHESIS = "copy_synthesis"


@dataclass(frozen=True)
class ReconstructionJob:
    """``source`` is the original file, scored against ``<folder>/<output_name>``."""

    name: str
    source: Path
    output_name: str


class ReconstructError(ValueError):
    """The evaluation cannot start (one line): an unusable filelist, two files that would write one
    output, or models that cannot be loaded."""


def relative_names(paths: list[Path]) -> list[str]:
    """Paths relative to their deepest common folder (POSIX form), e.g. ``spk1/a.wav``."""
    absolute = [p.resolve() for p in paths]
    root = Path(os.path.commonpath([p.parent for p in absolute])) if absolute else Path("/")
    return [p.relative_to(root).as_posix() for p in absolute]


def reconstruct_filelist(filelist: Path, audio_dir: Path, ae_model: str | None = None, ae_config: str | None = None,
                         vocoder: str | None = None, device: str | None = None, precision: str = "fp32",
                         progress: bool = True) -> tuple[list[ReconstructionJob], list[Row]]:
    """Write both renderings of every listed file under ``audio_dir``.

    Returns the jobs that produced audio, and an error row for each file that could not be
    read or reconstructed (the run goes on). Raises :class:`ReconstructError` before any file is
    written when the filelist is unusable, two listed files would write one output (checked before
    any model is loaded) or the models cannot be loaded.
    """

    try:
        entries = read_filelist(filelist)
    except FilelistError as e:
        raise ReconstructError(str(e)) from None
    if not entries:
        raise ReconstructError(f"{filelist}: the filelist is empty")
    names = relative_names([e.path for e in entries])
    output_names = [str(Path(name).with_suffix(".wav")) for name in names]
    clashes = colliding_outputs([(entry.path, Path(name)) for entry, name in zip(entries, output_names)])
    if clashes:  # x.wav and x.mp3 would overwrite each other
        first, second, output_name = clashes[0]
        raise ReconstructError(f"{first} and {second} would both be reconstructed as {output_name}; rename one or "
                               f"list them in separate evaluations")
    try:
        wrapper = load_wrapper(ae_model, ae_config, vocoder, device, precision)
    except ModelLoadError as e:
        raise ReconstructError(str(e)) from None
    rate = wrapper.sample_rate
    jobs, failures = [], []
    for entry, name, output_name in progress_bar(list(zip(entries, names, output_names)), desc="Reconstructing", unit="file",
                                         disable=not progress):
        try:
            audio = load_audio(entry.path, rate)
            check_audio(audio, entry.path, min_samples=wrapper.transform.n_fft)
            with torch.inference_mode():
                batch = audio[None].to(wrapper.device)
                reconstructed = wrapper(batch, rate)[0]
                copy = wrapper.vocode(wrapper.transform(batch))[0]
        except AudioError as e:
            failures.append(empty_row(name, str(e)))
            continue
        except RuntimeError as e:  # e.g. out of memory on a very long file
            failures.append(empty_row(name, f"{entry.path}: reconstruction failed ({str(e).splitlines()[0]})"))
            continue
        save_audio(audio_dir / RECONSTRUCTED / output_name, reconstructed.cpu(), rate)
        save_audio(audio_dir / COPY_SYNTHESIS / output_name, copy.cpu(), rate)
        jobs.append(ReconstructionJob(name, entry.path, output_name))
    return jobs, failures
