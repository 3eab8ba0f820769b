"""DC-AE mel autoencoder: model, configuration, checkpoint I/O and latent losses."""
from dcae.model.autoencoder import DCAE, Decoder, Encoder
from dcae.model.checkpoint import CheckpointError, load_dcae, read_state_dict, save_generator
from dcae.model.config import ConfigError, DCAEConfig
from dcae.model.losses import dispersive_loss
from dcae.model.weight_norm import add_weight_norm, fold_weight_norm
from dcae.model.wrapper import DCAEWrapper

__all__ = [
    "DCAE", "Encoder", "Decoder", "DCAEConfig", "ConfigError", "DCAEWrapper", "load_dcae", "read_state_dict",
    "save_generator", "CheckpointError", "dispersive_loss", "add_weight_norm", "fold_weight_norm",
]
