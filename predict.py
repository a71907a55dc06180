#!/usr/bin/env python
"""Batch emotion prediction over a folder, a glob or a CSV of paths → a CSV (resumable):

    python predict.py data/polish3/audio --model runs/demo/fold1/stage2/best --output predictions.csv

`python predict.py --help` lists the options; the front end is `modeling/cli/predict.py`, the work
`modeling.inference.batch.predict_files`.
"""

import sys

from modeling.cli.predict import main


if __name__ == "__main__":
    sys.exit(main())
