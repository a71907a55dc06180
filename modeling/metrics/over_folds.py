"""Mean ± std of a metric over cross-validation folds: the one owner of that number and of how it is written
(results.json / results.md, train.py's summary, the model cards through `results_table`, compare_runs.py), and of
how a signed difference of two such numbers is written (`format_signed`).

The std is the population form (ddof=0) over the folds evaluated. With a single fold it is undefined, not 0: it is
`None` (JSON null) and is written "n/a" — "45.00 ± 0.00" would claim a spread of zero that nobody measured.
"""

import numpy as np


NOT_AVAILABLE = "n/a"


def mean_and_std(values) -> tuple[float, float | None]:
    """(mean, std with ddof=0) of the per-fold values (a non-empty sequence of numbers); std is None for one fold.

    Raises:
        ValueError: no values.
    """
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_and_std needs at least one fold's value, got none.")
    return float(np.mean(values)), (float(np.std(values)) if len(values) > 1 else None)


def format_mean_std(
    mean: float | None, std: float | None, scale: float = 100.0, digits: int = 2, std_recorded: bool = True
) -> str:
    """The mean and std times `scale` (100 for fractions shown in percent): "45.00 ± 1.23"; "45.00 ± n/a" when the
    std is None (one fold); "45.00 ± –" when `std_recorded` is False (an older results.json without it); "–" when
    the mean is None (not recorded)."""
    if mean is None:
        return "–"
    spread = "–" if not std_recorded else NOT_AVAILABLE if std is None else f"{scale * std:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {spread}"


def format_signed(value: float | None, scale: float = 100.0, digits: int = 2) -> str:
    """A difference times `scale` (100: fractions as percentage points) with its sign: "+1.23", "-0.61", and "+0.00"
    for anything that rounds to zero (never "-0.00": a difference of -0.001 points is no loss); "–" for None."""
    if value is None:
        return "–"
    text = f"{scale * value:+.{digits}f}"
    return f"{0.0:+.{digits}f}" if float(text) == 0 else text


__all__ = ["NOT_AVAILABLE", "format_mean_std", "format_signed", "mean_and_std"]
