"""Two-stage, cross-validated training of the frame- and utterance-aligned emotion classifier (`train.py`, or
`python -m modeling.cli.train`).

    python train.py --config configs/demo.yaml --output-dir runs/demo
    python train.py --config configs/iemocap.yaml --data-dir /data/IEMOCAP_full_release --folds 1,3
    torchrun --nproc_per_node 2 train.py --config configs/demo.yaml --output-dir runs/demo-ddp

Re-running the same command resumes: finished folds and stages are skipped, an interrupted stage continues from
its last checkpoint. The work happens in `modeling.training.experiment.run_experiment`; this module parses the
arguments and prints.
"""

import argparse
import logging
import sys

from accelerate import PartialState

from ..auto_frame_aligned import BackboneWeightsError, HeadWeightsError
from ..data import CorpusError
from ..data.checks import DatasetCheckError
from ..data.folds import FoldError
from ..metrics.over_folds import format_mean_std
from ..rundir.locks import LockHeldError
from ..trainer.trainer import NonFiniteError
from ..training.checkpoints import ModelSettingsError
from ..training.config_checks import resolve_checked_config
from ..training.experiment import RunConfigMismatchError, cpu_distributed, run_experiment
from ..training.results import results_table
from ..training.run_config import ConfigError, config_origins
from ..training.selection import selection_sentence
from .errors import report_error
from .interrupt import exits_cleanly_on_interrupt, run_dir_saved


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="YAML experiment config (see configs/).")
    parser.add_argument("--data-dir", help="Corpus folder (or Hub dataset id); overrides data.root.")
    parser.add_argument("--output-dir", help="Run directory (default: runs/<config name>).")
    parser.add_argument(
        "--folds",
        help="Comma-separated folds to run: 1-based numbers or fold names, e.g. 1,3 or fold1,fold3 (default: all).",
    )
    parser.add_argument("--max-epochs", type=int, help="Cap the epochs of both stages (quick runs).")
    parser.add_argument("--seed", type=int, help="Overrides the config's seed.")
    parser.add_argument(
        "--skip-bad-audio",
        action="store_true",
        help="Leave out missing/unreadable/empty audio files (listed in OUTPUT/skipped_audio.json) "
        "instead of stopping.",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override any config value, e.g. --set stage2.epochs=5 --set stage2.eal_weight=0 "
        "(repeatable; values are YAML).",
    )
    return parser.parse_args(argv)


def output_dir_of(args: argparse.Namespace) -> str:
    """The run directory: --output-dir, else runs/<config file's name without extension>."""
    return args.output_dir or f"runs/{args.config.rsplit('/', 1)[-1].rsplit('.', 1)[0]}"


@exits_cleanly_on_interrupt("python train.py", lambda argv: run_dir_saved(output_dir_of(parse_args(argv))))
def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    output_dir = output_dir_of(args)
    try:
        config = resolve_checked_config(args.config, args.overrides, args.data_dir, args.max_epochs, args.seed)
        origins = config_origins(args.config, args.overrides, data_dir=args.data_dir, seed=args.seed)
        results = run_experiment(
            config, output_dir, folds=args.folds, skip_bad_audio=args.skip_bad_audio, origins=origins
        )
    except (
        ConfigError,
        CorpusError,
        DatasetCheckError,
        FoldError,
        RunConfigMismatchError,
        ModelSettingsError,
        BackboneWeightsError,
        HeadWeightsError,
        FileNotFoundError,
        LockHeldError,
        NonFiniteError,
    ) as error:
        return report_error(error)
    if not PartialState(cpu=cpu_distributed()).is_main_process:
        return 0
    print(f"\nPer-fold test UA/WA (%). {selection_sentence(results['config'])}\n" + results_table(results))
    print("\n" + summary_line(results, output_dir))
    return 0


def summary_line(results: dict, output_dir: str) -> str:
    """The last line train.py prints: mean ± std over folds of test UA, WA (and macro-F1), in percent ("n/a" for
    the std of a one-fold run)."""
    mean, std = results["mean"], results["std"]
    shown = [(name, m) for name, m in (("UA", "ua"), ("WA", "wa"), ("macro-F1", "macro_f1")) if m in mean]
    return (
        f"Mean over {len(results['folds'])} fold(s): "
        + ", ".join(f"{name} {format_mean_std(mean[m], std.get(m))} %" for name, m in shown)
        + f" (results in {output_dir}/results.md)"
    )


if __name__ == "__main__":
    sys.exit(main())
