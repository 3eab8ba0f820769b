"""``python -m dcae ...``: the ``dcae`` command."""
from dcae.cli import main

main(prog_name="dcae")
