#!/usr/bin/env python
"""Compare finished train.py runs on the same folds (mean ± std, per-fold differences, paired bootstrap CI,
McNemar):

    python compare_runs.py RUN_A RUN_B [...] --output OUT.md

`python compare_runs.py --help` lists the options; the front end is `modeling/cli/compare_runs.py`, the work
`modeling.evaluation.compare.compare_runs`.
"""

import sys

from modeling.cli.compare_runs import main


if __name__ == "__main__":
    sys.exit(main())
