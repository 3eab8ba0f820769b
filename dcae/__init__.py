"""DC-AE mel autoencoder: model, configuration, checkpoint I/O and latent losses."""
from .autoencoder import DCAE, Decoder, Encoder
from .checkpoint import CheckpointError, load_dcae, read_state_dict, save_generator
from .config import ConfigError, DCAEConfig
from .losses import dispersive_loss
from .weight_norm import add_weight_norm, fold_weight_norm
from .wrapper import DCAEWrapper

__all__ = [
    "DCAE", "Encoder", "Decoder", "DCAEConfig", "ConfigError", "DCAEWrapper", "load_dcae", "read_state_dict",
    "save_generator", "CheckpointError", "dispersive_loss", "add_weight_norm", "fold_weight_norm",
]
