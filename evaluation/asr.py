"""Speech recognition for WER/CER: a Whisper model (or a CTC model such as HuBERT/wav2vec 2.0 fine-tuned
for ASR) through ``transformers``, from a local folder or a hub id (``--asr``).

    asr = load_asr("openai/whisper-large-v3", language="en")     # or a folder saved by save_pretrained
    texts = asr.transcribe([audio1, audio2])                      # (samples,) float arrays at asr.sample_rate

Whisper decodes greedily (``num_beams=1``) with the language and task forced (``language=en``,
``task=transcribe``), as Seed-TTS-eval and F5-TTS run Whisper-large-v3; audio over 30 s is cut into
30 s windows and the texts joined. CTC models take the most likely token per frame (greedy CTC), as
VALL-E / NaturalSpeech-style LibriSpeech evaluations run HuBERT-large.
Models are read from a folder or the Hugging Face cache; offline with neither, :class:`ASRUnavailable`
says in one line what to fetch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dcae.hub import ModelNotFound, resolve_pretrained

ASR_RATE = 16000
WHISPER_WINDOW_S = 30
DEFAULT_ASR_EN = "openai/whisper-large-v3"
INSTALL_HINT = 'pip install "dc-speech-vae[asr]" (transformers, jiwer; README, "Extras")'


class ASRUnavailable(RuntimeError):
    """The ASR model cannot be loaded (one line naming the model and what to do)."""


@dataclass
class Transcriber:
    """A loaded ASR model: :meth:`transcribe` audio at ``sample_rate`` (16 kHz) to text."""

    name: str  # e.g. "openai/whisper-large-v3 (Whisper, greedy, language en)"
    kind: str  # "whisper" or "ctc"
    model: Any
    processor: Any
    language: str
    device: str = "cpu"
    spelling: dict[str, str] = field(default_factory=dict)  # Whisper's normalizer.json (English spellings)
    sample_rate: int = ASR_RATE
    batch_size: int = 8

    def transcribe(self, audios: Sequence[np.ndarray]) -> list[str]:
        """Texts of (samples,) float arrays at :attr:`sample_rate`, in order."""
        import torch

        texts: list[str] = []
        with torch.inference_mode():
            for start in range(0, len(audios), self.batch_size):
                batch = [np.asarray(a, dtype=np.float32) for a in audios[start:start + self.batch_size]]
                texts += self._whisper(batch) if self.kind == "whisper" else self._ctc(batch)
        return [" ".join(t.split()) for t in texts]

    def _whisper(self, batch: list[np.ndarray]) -> list[str]:
        window = WHISPER_WINDOW_S * self.sample_rate
        pieces, owner = [], []
        for index, audio in enumerate(batch):  # 30 s windows: Whisper's own input length
            for offset in range(0, max(len(audio), 1), window):
                pieces.append(audio[offset:offset + window])
                owner.append(index)
        features = self.processor.feature_extractor(pieces, sampling_rate=self.sample_rate, return_tensors="pt")
        inputs = features.input_features.to(self.device, self.model.dtype)
        options: dict[str, Any] = {"num_beams": 1, "do_sample": False}
        generation = self.model.generation_config
        if getattr(generation, "lang_to_id", None) and getattr(generation, "is_multilingual", True):  # not *.en
            options.update(language=self.language, task="transcribe")
        ids = self.model.generate(inputs, **options)
        decoded = self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True)
        texts = [""] * len(batch)
        for index, text in zip(owner, decoded):
            texts[index] = f"{texts[index]} {text}".strip()
        return texts

    def _ctc(self, batch: list[np.ndarray]) -> list[str]:
        import torch

        inputs = self.processor(batch, sampling_rate=self.sample_rate, return_tensors="pt", padding=True)
        logits = self.model(inputs.input_values.to(self.device, self.model.dtype),
                            attention_mask=None if inputs.get("attention_mask") is None
                            else inputs.attention_mask.to(self.device)).logits
        return self.processor.batch_decode(torch.argmax(logits, dim=-1))


def _transformers():
    try:
        import jiwer  # noqa: F401  (the error counts: checked before any model loads)
        import transformers
    except ImportError as e:
        raise ASRUnavailable(f"--asr needs transformers ({e}); {INSTALL_HINT}") from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return transformers


def _spelling_map(folder: Path) -> dict[str, str]:
    """Whisper's British -> American spelling map (``normalizer.json``, in every OpenAI Whisper folder)."""
    path = folder / "normalizer.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ASRUnavailable(f"{path}: unreadable spelling map ({e})") from None
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def load_asr(spec: str, language: str = "en", device: str = "cpu", batch_size: int = 8) -> Transcriber:
    """The ASR model of a folder or hub id (``--asr``): Whisper or a CTC model. Raises
    :class:`ASRUnavailable` (one line)."""
    tf = _transformers()
    try:
        folder = resolve_pretrained(spec, "--asr")
    except ModelNotFound as e:
        raise ASRUnavailable(str(e)) from None
    try:
        config = tf.AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError) as e:
        raise ASRUnavailable(f"--asr {spec}: not a transformers model folder ({str(e).splitlines()[0]})") from None
    try:
        if config.model_type == "whisper":
            model = tf.WhisperForConditionalGeneration.from_pretrained(str(folder))
            processor, kind = tf.WhisperProcessor.from_pretrained(str(folder)), "whisper"
        elif any(a.endswith("ForCTC") for a in (config.architectures or [])):
            model = tf.AutoModelForCTC.from_pretrained(str(folder))
            processor, kind = tf.AutoProcessor.from_pretrained(str(folder)), "ctc"
        else:
            raise ASRUnavailable(f"--asr {spec}: a {config.model_type} model is neither Whisper nor a CTC ASR model")
    except (OSError, ValueError) as e:
        raise ASRUnavailable(f"--asr {spec}: cannot load it ({str(e).splitlines()[0]})") from None
    model = model.to(device).eval()
    what = (f"Whisper, greedy, language {language}" if kind == "whisper" else "CTC, greedy")
    return Transcriber(name=f"{spec} ({what})", kind=kind, model=model, processor=processor, language=language,
                       device=device, spelling=_spelling_map(folder), batch_size=batch_size)
