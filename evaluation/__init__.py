"""Speech quality evaluation: PESQ-WB/NB, STOI, ESTOI, log-mel distance and SI-SDR.

- :mod:`evaluation.metrics`: the metric functions on arrays (also used during training);
- :mod:`evaluation.scoring`: one reference/degraded pair -> a row of all metrics and an ``error``;
- :mod:`evaluation.pairing`, :mod:`evaluation.runner`: pair folders, score them in parallel;
- :mod:`evaluation.report`, :mod:`evaluation.plots`: ``metrics.csv``, ``summary.json``, PNG figures;
- :mod:`evaluation.reconstruct`: DCAE reconstructions and BigVGAN copy-synthesis to score;
- :mod:`evaluation.cli`: ``dcae evaluate`` / ``python -m evaluation``.
"""

AUDIO_FORMATS = ("mp3", "opus", "wav")  # the listening page's audio copies (dcae evaluate --report-audio)
