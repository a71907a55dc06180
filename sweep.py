#!/usr/bin/env python
r"""A grid of train.py runs that share one stage 1 per fold (the paper's Tables 4 and 5, the imbalance study):

    python sweep.py --sweep sweeps/table4_margin_eal.yaml --data-dir /data/IEMOCAP_full_release \
        --output-dir runs/table4

`python sweep.py --help` lists the options; the front end is `modeling/cli/sweep.py`, the work
`modeling.training.sweep.run_sweep`.
"""

import sys

from modeling.cli.sweep import main


if __name__ == "__main__":
    sys.exit(main())
