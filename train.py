#!/usr/bin/env python
"""Two-stage, cross-validated training of the frame- and utterance-aligned emotion classifier:

    python train.py --config configs/demo.yaml --output-dir runs/demo
    torchrun --nproc_per_node 2 train.py --config configs/demo.yaml --output-dir runs/demo-ddp

`python train.py --help` lists the options; the front end is `modeling/cli/train.py`, the work
`modeling.training.experiment.run_experiment`.
"""

import sys

from modeling.cli.train import main


if __name__ == "__main__":
    sys.exit(main())
