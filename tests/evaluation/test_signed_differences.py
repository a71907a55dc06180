"""Signed differences are written by one formatter (`metrics.over_folds.format_signed`): compare_runs.py's tables and
bootstrap lines, score.py --perturb's table and line. A difference that rounds to zero reads "+0.00", never
"-0.00" (a fresh user read `ΔUA -0.00 [-0.61, +0.67]` as a loss)."""

from modeling.evaluation.compare import comparison_markdown
from modeling.evaluation.robustness import robustness_markdown
from modeling.metrics.over_folds import format_signed


def test_a_difference_that_rounds_to_zero_is_plus_zero():
    assert [format_signed(v) for v in (-0.00004, -0.0, 0.0, 0.00004)] == ["+0.00"] * 4
    assert [format_signed(v) for v in (-0.0061, 0.0067, -0.00005, 0.00005)] == ["-0.61", "+0.67", "-0.01", "+0.01"]
    assert format_signed(None) == "–"
    assert format_signed(-0.004, scale=1.0, digits=3) == "-0.004" and format_signed(-0.0004, 1.0, 2) == "+0.00"


def test_compare_runs_report_writes_no_negative_zero():
    delta = {"ua": -0.00003, "wa": 0.0, "macro_f1": -0.0061}
    interval = {"observed": -0.00003, "low": -0.0061, "high": 0.0067}
    report = {
        "num_test_utterances": 10,
        "folds": [1],
        "baseline": "runs/a",
        "runs": [{"run": r, **{m: {"mean": 0.5, "std": None} for m in delta}} for r in ("runs/a", "runs/b")],
        "comparisons": [
            {
                "run": "runs/b",
                "per_fold": {"fold1": delta},
                "config_differences": [],
                "bootstrap": {"resamples": 100, "seed": 0, "ua": interval, "wa": interval},
                "mcnemar": {"b": 1, "c": 1, "p_value": 1.0},
            }
        ],
    }
    text = comparison_markdown(report)
    assert "- ΔUA +0.00 [-0.61, +0.67]" in text and "| fold1 | +0.00 | +0.00 | -0.61 |" in text
    assert "-0.00" not in text


def test_robustness_markdown_writes_no_negative_zero():
    entry = {"measured": {}, "models": {"ensemble": {"delta_ua": -0.00001, "delta_macro_f1": -0.0123}}}
    assert "| +0.00 / -1.23 |" in robustness_markdown({"snr=20": entry}, ["ensemble"])
