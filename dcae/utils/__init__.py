"""Small shared helpers: atomic file writes, dataclass configs on the command line,
torch.distributed setup and rotating checkpoints. Used by the VAE trainer, export and TTS."""
