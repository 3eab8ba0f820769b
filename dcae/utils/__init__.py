"""Small shared helpers: atomic file writes (``atomic``), torch.distributed set-up (``distributed``),
the torn-line-tolerant JSONL reader (``jsonl``) and giving freed heap memory back (``memory``).
Used by the trainers, export, inference and the TTS tools."""
