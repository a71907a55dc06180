#!/usr/bin/env python
"""The Gradio demo on a trained run, checkpoint or published folds (needs `pip install -e ".[app]"`):

    python app.py --model runs/demo                  # the run's fold models and their ensemble
    python app.py --model runs/demo/fold1/stage2/best
    python app.py --model ORG/NAME-fold1,ORG/NAME-fold2

`python app.py --help` lists the options; the work is in `modeling/app/`.
"""

import sys

from modeling.app.launch import main


if __name__ == "__main__":
    sys.exit(main())
