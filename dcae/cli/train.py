"""``dcae train ...``: the DC-AE trainer, the same as ``python train.py ...`` (which needs a clone of the
repository; this works from an installed wheel too). Every flag goes to :func:`dcae.model.trainer.main`."""
from __future__ import annotations

import sys

import click


@click.command("train", context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                          "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train_command(args: tuple[str, ...]) -> None:
    """Train the DC-AE (every TrainConfig field is a flag; --help lists them)."""
    from dcae.model.trainer import main

    sys.exit(main(list(args), prog="dcae train"))
