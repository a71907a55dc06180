r"""A grid of train.py runs sharing one stage 1 per fold, then their comparison (`sweep.py`):

    python sweep.py --sweep sweeps/table4_margin_eal.yaml --data-dir /data/IEMOCAP_full_release \
        --output-dir runs/table4

Each run is `OUTPUT/<name>` (resumed like any run); OUTPUT/comparison.md (compare_runs against the first run) and
OUTPUT/sweep.md (every run's mean test UA / WA and the paper-shaped pivot table) are written at the end.
`--dry-run` prints the runs and their overrides after checking every run's config. The work is
`modeling.training.sweep.run_sweep`.
"""

import argparse
import logging
import sys
from pathlib import Path

from ..data import CorpusError
from ..data.checks import DatasetCheckError
from ..training.run_config import ConfigError
from ..training.sweep import planned_configs, read_sweep, run_sweep
from .errors import report_error
from .interrupt import exits_cleanly_on_interrupt


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", required=True, help="Sweep file (see sweeps/).")
    parser.add_argument("--output-dir", required=True, help="Folder of the runs (one sub-folder per run).")
    parser.add_argument("--data-dir", help="Corpus folder (or Hub dataset id); overrides data.root of every run.")
    parser.add_argument(
        "--folds",
        help="Comma-separated folds to run: 1-based numbers or fold names, e.g. 1,3 or fold1 (default: all).",
    )
    parser.add_argument("--max-epochs", type=int, help="Cap the epochs of both stages (quick runs).")
    parser.add_argument("--skip-bad-audio", action="store_true", help="Leave out unreadable audio (as train.py).")
    parser.add_argument("--dry-run", action="store_true", help="Check every run's config and list the runs.")
    return parser.parse_args(argv)


def _saved(argv) -> str:
    output = parse_args(argv).output_dir
    return f"every finished run and fold of the sweep is kept in {output} (the interrupted run resumes)"


@exits_cleanly_on_interrupt("python sweep.py", _saved)
def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.dry_run:
            sweep = read_sweep(args.sweep)
            for run, _ in planned_configs(sweep, Path(args.output_dir), args.data_dir, args.max_epochs):
                shared = f" (stage 1 from {run.shared_from})" if run.shared_from else ""
                print(f"{Path(args.output_dir) / run.name}: {' '.join(run.set_arguments())}{shared}")
            return 0
        run_sweep(args.sweep, args.output_dir, args.data_dir, args.folds, args.max_epochs, args.skip_bad_audio)
    except (ConfigError, CorpusError, DatasetCheckError, FileNotFoundError) as error:
        return report_error(error)
    print(f"Sweep finished: {Path(args.output_dir) / 'sweep.md'}, {Path(args.output_dir) / 'comparison.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
