"""Downstream TTS on the 5.4 Hz latents.

Modules: ``data`` (latent manifest dataset, any downstream use), ``text`` (front end), ``ar_model``
(causal transformer + flow head + stop head), ``flow_model`` (DiT flow matching with infilling),
``train`` (``python -m tts.train``), ``run`` (run folders), ``synthesize`` and ``cli`` (``dcae tts``),
``synthetic`` (toy corpora for checking that a pipeline learns).

Two-stage (speech tokens, docs/two_stage.md): ``tokenizers`` (audio -> tokens), ``token_flow_model``
(tokens -> latents: ``token_encoder``, ``length_regulator``, ``chunk_attention``, ``frame_noise``),
``token_flow_stream`` (chunk-by-chunk generation), ``streaming`` (token chunks -> latent / audio chunks).
Stage 1 (text -> tokens, docs/token_lm.md): ``token_lm`` (the LM, KV-cached decoder), ``token_lm_layout``
(plain and bistream sequences), ``token_sampling`` (top-k / top-p / RAS, guidance), ``token_lm_generate``
(sampling loops), ``token_lm_synthesis`` (with a run: text or text pieces -> tokens), ``two_stage``
(text -> tokens -> latents -> audio, streaming), ``lm_command`` (``dcae tts`` for token-lm runs).
"""
