"""Speaker conditioning of the TTS models: the learnable speaker encoder (MiniMax-Speech) and the
reference pool that feeds it another utterance of the same speaker in training."""
