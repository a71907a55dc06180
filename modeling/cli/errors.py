"""How a command reports an input it refuses: `error: <message>` on stderr and exit status 2, never a traceback.

The message of a `CheckError` (`modeling.data.problems`) is the whole listing (every problem, grouped by cause), so
printing it is all a command does. Every command (train.py, score.py, predict.py, push_to_hub.py, sweep.py, the
examples) reports the inputs it refuses through here; argparse's own usage errors keep `<prog>: error:`.
"""

import functools
import sys
from collections.abc import Callable


REFUSED_EXIT_CODE = 2  # the checks (or a corpus, config or fold error) refused the input: nothing trained or written


def report_error(error: BaseException) -> int:
    """Print `error: <message>` on stderr; returns `REFUSED_EXIT_CODE` (for `return report_error(error)`)."""
    print(f"error: {error}", file=sys.stderr, flush=True)
    return REFUSED_EXIT_CODE


def exits_on(*errors: type[BaseException]) -> Callable:
    """Decorate a command's `main(argv=None)`: any of `errors` raised inside it is printed by `report_error` and
    `main` returns `REFUSED_EXIT_CODE` (2) instead of raising; other exceptions propagate unchanged."""

    def decorate(main):
        @functools.wraps(main)
        def wrapper(argv=None):
            try:
                return main(argv)
            except errors as error:
                return report_error(error)

        return wrapper

    return decorate


__all__ = ["REFUSED_EXIT_CODE", "exits_on", "report_error"]
