"""``python -m dcae.cli ...``: the ``dcae`` command (for ``torchrun ... -m dcae.cli export ...``)."""
from dcae.cli import main

main(prog_name="dcae")
