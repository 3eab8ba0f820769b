"""DC-Speech-VAE: the toolkit's package.

| room | holds |
| --- | --- |
| :mod:`dcae.model` | the DC-AE itself: network, config, checkpoint I/O, weight norm, receptive field, discriminators, losses, its trainer |
| :mod:`dcae.pipeline` | :class:`DCAEInferenceWrapper`: audio <-> latents <-> audio (DC-AE + BigVGAN), windows, streaming decode |
| :mod:`dcae.corpus` | latent / token files, ``manifest.jsonl``, ``stats.json``, the export store, datasets |
| :mod:`dcae.training` | the training harness every trainer runs on, optimizers, schedules |
| :mod:`dcae.cli` | every command (``dcae ...``) |
| :mod:`dcae.audio`, :mod:`dcae.hub`, :mod:`dcae.precision`, ... | audio I/O, model files, precision names, ... |

The names below are importable from ``dcae`` itself (``from dcae import DCAEWrapper``); each is
loaded on first use, so importing one room does not load the others.
"""
from __future__ import annotations

from dcae.lazy import lazy_exports

_EXPORTS = {
    "DCAE": "dcae.model.autoencoder", "Encoder": "dcae.model.autoencoder", "Decoder": "dcae.model.autoencoder",
    "DCAEConfig": "dcae.model.config", "ConfigError": "dcae.errors", "DCAEWrapper": "dcae.model.wrapper",
    "load_dcae": "dcae.model.checkpoint", "read_state_dict": "dcae.model.checkpoint",
    "save_generator": "dcae.model.checkpoint", "CheckpointError": "dcae.model.checkpoint",
    "dispersive_loss": "dcae.model.losses", "add_weight_norm": "dcae.model.weight_norm",
    "fold_weight_norm": "dcae.model.weight_norm", "DCAEInferenceWrapper": "dcae.pipeline",
    "load_audio": "dcae.audio", "save_audio": "dcae.audio",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
