"""Downstream TTS on the 5.4 Hz latents.

Modules: ``data`` (latent manifest dataset, any downstream use), ``text`` (front end), ``ar_model``
(causal transformer + flow head + stop head), ``flow_model`` (DiT flow matching with infilling),
``train`` (``python -m tts.train``), ``run`` (run folders), ``synthesize`` and ``cli`` (``dcae tts``),
``synthetic`` (toy corpus for checking that a pipeline learns).
"""
