"""Small shared helpers: atomic file writes (``atomic``), torch.distributed set-up (``distributed``)
and the torn-line-tolerant JSONL reader (``jsonl``). Used by the trainers, export and the TTS tools."""
