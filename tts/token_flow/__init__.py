"""Stage 2 of the two-stage TTS: speech tokens -> latents (docs/two_stage.md)."""

DEFAULT_CHUNK_FRAMES = 2  # latent frames per streamed chunk (2 x 186 ms)
