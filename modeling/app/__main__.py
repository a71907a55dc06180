"""`python -m modeling.app`: the same as `python app.py` (see `modeling/app/launch.py`)."""

import sys

from .launch import main


if __name__ == "__main__":
    sys.exit(main())
