"""Downstream TTS on the 5.4 Hz latents (docs/tts.md, docs/two_stage.md, docs/token_lm.md).

- one stage, text -> latents: :mod:`tts.one_stage` (``ar``: causal transformer + flow head + stop
  head; ``flow``: DiT flow matching with infilling; ``synthesis``);
- two stages, text -> speech tokens -> latents: :mod:`tts.tokenizers` (audio -> tokens: S3, FSQ;
  ``token_export`` for whole corpora), :mod:`tts.token_lm` (stage 1: the LM, plain and bistream
  layouts, sampling, generation), :mod:`tts.token_flow` (stage 2: the chunk-aware token-to-latent
  flow, offline and streamed), :mod:`tts.two_stage` (the stages chained, streaming);
- shared: ``text`` (front end), ``layers``, ``flow_matching``, ``run`` (run folders), ``synthesis``,
  ``synthetic`` (toy corpora that show a pipeline learns), :mod:`tts.presets` (model presets);
- training: :mod:`tts.trainers` (one trainer per model kind on a shared harness) and ``train``
  (``python -m tts.train``). The ``dcae tts`` command lives in :mod:`dcae.cli.tts`.
"""
