"""Pretrained speaker-verification models: speech -> a fixed speaker embedding (S,), what
``dcae speakers`` writes for each utterance (:mod:`tts.speakers.embedding_export`) and what a
token LM / token flow can be conditioned on (a manifest's ``speaker_path``, CosyVoice's way).

    verifier = load_verifier("resemblyzer")          # Resemblyzer's GE2E encoder, 256-d (weights in its wheel)
    verifier = load_verifier("campplus.onnx")        # a CAM++ / ECAPA / ResNet ONNX model on Kaldi fbank, e.g. 192-d
    verifier = load_verifier("microsoft/wavlm-base-plus-sv")   # a transformers x-vector model (folder or hub id)
    embedding = verifier.embed(audio)                # audio (samples,) at verifier.sample_rate -> (S,) float32

ONNX models: the convention of CosyVoice's ``campplus.onnx`` and the 3D-Speaker / WeSpeaker exports:
one input (1, T, 80) of 80-bin Kaldi log-mel filterbanks of 16 kHz audio (Kaldi's defaults: 25 ms
Povey windows every 10 ms; no dither; the waveform as floats in [-1, 1], as CosyVoice passes it),
minus their mean over time; one output (1, S). The filterbanks come from
``kaldi-native-fbank`` (the k2-fsa package, Kaldi's ``compute-fbank-feats`` without torchaudio),
the model runs in ``onnxruntime`` on CPU (extra ``[speakers]``).
"""
from __future__ import annotations

import hashlib
import warnings
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import torch

from dcae.hub import ModelNotFound, resolve_pretrained
from tts.speakers import resemblyzer_encoder

RESEMBLYZER = "resemblyzer"
ONNX_RATE = 16000
FBANK_BINS = 80
ONNX_HINT = 'pip install "dc-speech-vae[speakers]" (onnxruntime and kaldi-native-fbank; README, "Extras")'


class VerifierError(ValueError):
    """A speaker model that cannot be loaded or used (one line for the user)."""


class SpeakerVerifier(ABC):
    """A pretrained speaker-verification model: ``embed`` (samples,) at ``sample_rate`` -> (dim,)."""

    name: str  # e.g. "resemblyzer 0.1.4 VoiceEncoder (GE2E LSTM, 256-d, 16 kHz)"
    sample_rate: int
    dim: int
    fingerprint: str  # short hash of the model: embeddings of two models never mix in one folder

    @abstractmethod
    def embed(self, audio: torch.Tensor) -> torch.Tensor:
        """Audio (samples,) at ``sample_rate`` -> speaker embedding (dim,) float32. ValueError: unusable audio."""


class ResemblyzerVerifier(SpeakerVerifier):
    """Resemblyzer's voice encoder (:mod:`tts.speakers.resemblyzer_encoder`): 256-d, L2-normed, 16 kHz."""

    sample_rate, dim = 16000, 256

    def __init__(self):
        reason = resemblyzer_encoder.encoder_available()
        if reason is not None:
            raise VerifierError(reason)
        self.name = resemblyzer_encoder.encoder_description()
        h = hashlib.sha256(b"resemblyzer")
        for key, value in sorted(resemblyzer_encoder.speaker_encoder().state_dict().items()):
            h.update(key.encode())
            h.update(value.detach().float().cpu().numpy().tobytes())
        self.fingerprint = h.hexdigest()[:16]

    def embed(self, audio: torch.Tensor) -> torch.Tensor:
        embedding = resemblyzer_encoder.speaker_embedding(audio.float().cpu().numpy(), self.sample_rate)
        return torch.from_numpy(np.asarray(embedding, dtype=np.float32))


class OnnxVerifier(SpeakerVerifier):
    """A speaker model in an ONNX file on mean-normalised 80-bin Kaldi fbank of 16 kHz audio (module
    docstring); runs on CPU with ``onnxruntime``."""

    sample_rate = ONNX_RATE

    def __init__(self, path: str | Path, flag: str = "--encoder"):
        path = Path(path)
        try:
            import kaldi_native_fbank as knf
            import onnxruntime as ort
        except ImportError as e:
            raise VerifierError(f"{flag} {path}: an ONNX speaker model needs {e.name}; {ONNX_HINT}") from None
        if not path.is_file():
            raise VerifierError(f"{flag} {path}: file not found (want 'resemblyzer' or an ONNX speaker model)")
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for bad files
            raise VerifierError(f"{flag} {path}: not a usable ONNX model ({' '.join(str(e).split())[:200]})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 3 or inputs[0].shape[-1] not in (FBANK_BINS, "feat_dim", None):
            raise VerifierError(f"{flag} {path}: want one input (1, T, {FBANK_BINS}) of Kaldi fbank, the model has "
                                f"{[(i.name, i.shape) for i in inputs]}")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.knf = knf
        self.fbank_options = knf.FbankOptions()  # Kaldi's defaults (25 ms / 10 ms, Povey window), as CosyVoice's
        self.fbank_options.frame_opts.samp_freq = ONNX_RATE
        self.fbank_options.frame_opts.dither = 0.0
        self.fbank_options.mel_opts.num_bins = FBANK_BINS
        self.path = path
        self.fingerprint = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        probe = self.embed(torch.zeros(ONNX_RATE))  # the output width, and a model that runs at all
        self.dim = probe.numel()
        self.name = f"ONNX speaker model {path.name} ({self.dim}-d, 80-bin Kaldi fbank, 16 kHz)"

    def fbank(self, audio: torch.Tensor) -> np.ndarray:
        """(samples,) at 16 kHz -> (frames, 80) Kaldi log-mel filterbanks, mean-normalised over time."""
        computer = self.knf.OnlineFbank(self.fbank_options)
        computer.accept_waveform(ONNX_RATE, audio.float().cpu().numpy().tolist())
        computer.input_finished()
        if computer.num_frames_ready == 0:
            raise ValueError("too short for a speaker embedding (under 25 ms)")
        feats = np.stack([computer.get_frame(i) for i in range(computer.num_frames_ready)]).astype(np.float32)
        return feats - feats.mean(axis=0, keepdims=True)

    def embed(self, audio: torch.Tensor) -> torch.Tensor:
        feats = self.fbank(audio)[None]
        (out,) = self.session.run([self.output_name], {self.input_name: feats})
        return torch.from_numpy(np.asarray(out, dtype=np.float32).reshape(-1))


class XVectorVerifier(SpeakerVerifier):
    """A transformers audio x-vector model (``AutoModelForAudioXVector``: WavLM / UniSpeech-SAT / wav2vec 2.0
    fine-tuned for speaker verification, e.g. ``microsoft/wavlm-base-plus-sv``) from a folder or hub id:
    its own feature extractor on 16 kHz audio, the ``embeddings`` output (S,)."""

    def __init__(self, spec: str, flag: str = "--encoder"):
        try:
            import transformers as tf
        except ImportError as e:
            raise VerifierError(f"{flag} {spec}: an x-vector model needs transformers ({e}); "
                                'pip install "dc-speech-vae[llm]"') from None
        tf.logging.set_verbosity_error()
        tf.logging.disable_progress_bar()
        try:
            folder = resolve_pretrained(spec, flag)
        except ModelNotFound as e:
            raise VerifierError(str(e)) from None
        try:
            self.extractor = tf.AutoFeatureExtractor.from_pretrained(str(folder))
            self.model = tf.AutoModelForAudioXVector.from_pretrained(str(folder)).eval()
        except (OSError, ValueError, KeyError) as e:
            raise VerifierError(f"{flag} {spec}: not a transformers x-vector speaker model "
                                f"({str(e).splitlines()[0][:200]})") from None
        self.sample_rate = int(getattr(self.extractor, "sampling_rate", 16000))
        self.dim = int(self.model.config.xvector_output_dim)
        h = hashlib.sha256(b"xvector")
        for key, value in sorted(self.model.state_dict().items()):
            h.update(key.encode())
            h.update(value.detach().float().cpu().numpy().tobytes())
        self.fingerprint = h.hexdigest()[:16]
        self.name = (f"transformers x-vector model {spec} ({self.model.config.model_type}, {self.dim}-d, "
                     f"{self.sample_rate // 1000} kHz)")

    def embed(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.numel() < self.sample_rate // 10:
            raise ValueError("too short for a speaker embedding (under 0.1 s)")
        inputs = self.extractor(audio.float().cpu().numpy(), sampling_rate=self.sample_rate, return_tensors="pt")
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's note on the model's mask types
            out = self.model(**inputs).embeddings
        return out.reshape(-1).float()


def load_verifier(spec: str, flag: str = "--encoder") -> SpeakerVerifier:
    """``"resemblyzer"``, the path of an ONNX speaker model, or a transformers x-vector model's folder or
    hub id; ``flag`` names the option in messages. Raises :class:`VerifierError` (one line)."""
    if spec == RESEMBLYZER:
        return ResemblyzerVerifier()
    if spec.lower().endswith(".onnx"):
        return OnnxVerifier(spec, flag)
    if Path(spec).expanduser().is_dir() or (spec.count("/") == 1 and not spec.startswith((".", "/", "~"))):
        return XVectorVerifier(spec, flag)
    raise VerifierError(f"{flag} {spec}: unknown speaker model (want '{RESEMBLYZER}', a .onnx file, or a "
                        f"transformers x-vector model folder or hub id)")
