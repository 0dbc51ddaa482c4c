"""Train GasMono: ``python train.py --data_path D --use_posegt --selfpp ...``.

Multi-GPU: ``torchrun --nproc_per_node N train.py ...`` (see run.sh).
"""
from __future__ import annotations

import logging

from options import GasMonoOptions
from utils import cli_entry_point


@cli_entry_point
def main(argv: list[str] | None = None) -> None:
    options = GasMonoOptions().parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from distributed import shutdown_distributed
    from trainer import Trainer

    trainer = Trainer(options)
    try:
        trainer.train()
    finally:
        shutdown_distributed(trainer.dist)


if __name__ == "__main__":
    main()
