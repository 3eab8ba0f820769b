"""Speech <-> 5.4 Hz latents, as the design card names it: ``from inference import DCAEInferenceWrapper``
and ``python inference.py reconstruct|encode|decode IN... -o OUT`` (same as ``dcae reconstruct ...``).

The wrapper lives in :mod:`dcae.pipeline` (``from dcae import DCAEInferenceWrapper``), the commands in
:mod:`dcae.cli.audio`; this module only keeps those two names where users call them.
"""
from dcae.pipeline import DCAEInferenceWrapper, ModelLoadError, load_wrapper

__all__ = ["DCAEInferenceWrapper", "ModelLoadError", "load_wrapper"]

if __name__ == "__main__":
    from dcae.cli.audio import cli

    cli()
