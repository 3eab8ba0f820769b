"""Train the DC-AE: ``python train.py [--config FILE] [--field-name VALUE ...]`` (also ``dcae train ...``);
``torchrun --nproc_per_node N train.py ...`` for data-parallel training. The trainer is
:mod:`dcae.model.trainer` (``TrainConfig``, ``DCAETrainer``); ``--help`` lists every flag."""
import sys

from dcae.model.trainer import main

if __name__ == "__main__":
    sys.exit(main())
