"""Compare finished train.py runs on the same folds: mean ± std, per-fold differences, paired bootstrap 95 %
intervals of ΔUA / ΔWA and McNemar's exact test (`compare_runs.py`).

    python compare_runs.py runs/ablation_2 runs/ablation_5 --output runs/compare_2_vs_5.md

Prints the Markdown report; with `--output OUT.md` also writes OUT.md and OUT.json (same name, .json). The work is
`modeling.evaluation.compare.compare_runs`. Every config key whose value differs between the baseline and a run is
listed in the report (and warned about on stderr), e.g. `training.seed: 1 vs 2`.
"""

import argparse
import sys
from pathlib import Path

from ..evaluation.compare import RunMismatchError, compare_runs, comparison_markdown, difference_lines
from ..rundir.atomic import atomic_write_json, atomic_write_text
from .errors import report_error


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="Run directories; the first is the baseline.")
    parser.add_argument(
        "--output", help="Also write the report here (OUT.md; OUT.json beside it). Default: printed only."
    )
    parser.add_argument("--resamples", type=int, default=2000, help="Bootstrap resamples (≥ 2000; default 2000).")
    parser.add_argument("--seed", type=int, default=0, help="Bootstrap seed (default 0).")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        report = compare_runs(args.runs, args.resamples, args.seed)
    except (RunMismatchError, FileNotFoundError, ValueError) as error:
        return report_error(error)
    markdown = comparison_markdown(report)
    if args.output:
        output = Path(args.output)
        atomic_write_text(output, markdown)
        atomic_write_json(output.with_suffix(".json"), report)
    print(markdown)
    for comparison in report["comparisons"]:
        lines = difference_lines(comparison["config_differences"])
        if comparison["config_differences"] is None:
            print(f"warning: {comparison['run']} or {report['baseline']}: no config recorded", file=sys.stderr)
        elif lines:
            print(
                f"warning: the configs of {report['baseline']} and {comparison['run']} differ in {len(lines)} key(s): "
                + "; ".join(lines),
                file=sys.stderr,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
