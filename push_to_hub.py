#!/usr/bin/env python
"""Publish the folds of a finished training run to the Hugging Face Hub (no torch needed):

    python push_to_hub.py --run-dir runs/demo --repo-id ORG/NAME --dry-run

`python push_to_hub.py --help` lists the options; the front end is `modeling/cli/push.py`, the work
`modeling.publishing.hub.push_run`.
"""

import sys

from modeling.cli.push import main


if __name__ == "__main__":
    sys.exit(main())
