"""Speaker references at synthesis: the vector a run with a learnable speaker encoder (token flow or
token LM, :mod:`tts.speakers.learnable`) is conditioned on, from a reference's DC-AE latent or audio,
with no transcript; or a fixed embedding checked against the run. One-line
:class:`~tts.synthesis.SynthesisError` for each bad input.

    reference = reference_from_audio(wrapper, "ref.wav")      # (D, R) latent of the reference
    vector = speaker_vector(run, None, reference)             # (width,) for the run's model
"""
from __future__ import annotations

from pathlib import Path

import torch

from dcae.audio import AudioError, load_checked_audio
from tts.run import TTSRun
from tts.synthesis import SynthesisError


def reference_from_audio(wrapper, path: str | Path, what: str = "--speaker-audio") -> torch.Tensor:
    """A speaker reference from audio: its DC-AE latent (D, R) (``wrapper``: a
    :class:`dcae.pipeline.DCAEInferenceWrapper`). Raises :class:`SynthesisError` naming the file (and
    ``what`` it was given as)."""
    try:
        audio = load_checked_audio(path, wrapper.sample_rate)
    except AudioError as e:
        raise SynthesisError(f"{what}: {e}") from None
    latent = wrapper.encode(audio, wrapper.sample_rate)[0]
    if latent.shape[-1] == 0:
        raise SynthesisError(f"{what} {path}: too short for one latent frame ({1 / wrapper.frame_rate:.2f} s)")
    return latent.float().cpu()


def speaker_vector(run: TTSRun, speaker: torch.Tensor | None, reference: torch.Tensor | None = None
                   ) -> torch.Tensor | None:
    """The speaker vector the run is conditioned on: a fixed embedding (S,) checked against the run, or
    for a learnable speaker encoder the vector of ``reference`` (the reference's latent (D, R), as a
    latent file holds it), normalised by the run's latent stats. None: none (runs without speakers ignore
    a fixed one)."""
    model = run.model
    if reference is not None:
        if model.speaker_encoder is None:
            raise SynthesisError(f"{run.directory}: a speaker reference needs a run trained with --speaker-encoder "
                                 f"learnable" + (" (this one takes a fixed speaker embedding)" if model.speaker_size
                                                 else ""))
        reference = torch.as_tensor(reference, dtype=torch.float32)
        if reference.ndim != 2 or reference.shape[0] != model.cfg.latent_dim or reference.shape[1] == 0:
            raise SynthesisError(f"speaker reference: expected a latent ({model.cfg.latent_dim}, frames), "
                                 f"got {tuple(reference.shape)}")
        if not torch.isfinite(reference).all():
            raise SynthesisError("speaker reference: the latent holds NaN or Inf")
        return model.encode_speaker(run.stats.normalize(reference.T))
    size = model.speaker_size
    if speaker is None or size == 0:
        return None
    speaker = torch.as_tensor(speaker, dtype=torch.float32).reshape(-1)
    if speaker.numel() != size:
        raise SynthesisError(f"speaker embedding has {speaker.numel()} values, the run takes {size}")
    return speaker
