"""Names and defaults of the corpus formats, importable without torch or pyarrow (the commands'
``--help`` reads them)."""

LATENT_DTYPE_NAMES = ("float32", "bfloat16")  # what a latent file may store (dcae export --latent-dtype)
DEFAULT_SHARD_MB = 256.0  # a shard is closed once its rows hold this many MB of latents
LATENT_EXTENSION = ".safetensors"  # latent (and token, speaker) files
ROW_GROUP_ROWS = 256  # rows per Parquet row group: the unit a streaming reader reads and shuffles
