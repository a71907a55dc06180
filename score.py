#!/usr/bin/env python
"""Score a finished train.py run on any corpus (each fold's model and their ensemble):

    python score.py --run-dir RUN --config CORPUS.yaml [--data-dir DIR] [--label-map SRC=DST ...] --output-dir OUT

`python score.py --help` lists the options; the front end is `modeling/cli/score.py`, the work
`modeling.evaluation.cross_corpus.score_run`.
"""

import sys

from modeling.cli.score import main


if __name__ == "__main__":
    sys.exit(main())
