r"""Score a finished train.py run on any corpus: each fold's stage-2 best model and their ensemble (`score.py`).

    python score.py --run-dir runs/iemocap --config configs/emodb.yaml --data-dir /data/emodb \
        --label-map anger=angry happiness=happy sadness=sad --output-dir runs/iemocap/on_emodb

Everything is checked first (the run: every fold finished; the configs, label map, perturbations, output folder:
every problem listed, nothing written; exit status 2). Writes OUT/scores.json, OUT/scores.md and
OUT/predictions.csv; the work is `modeling.evaluation.cross_corpus.score_run`. Scored on the run's own training
corpus, the numbers are not held-out: a warning says so (and scores.md).
"""

import argparse
import logging
import sys

from ..data import CorpusError
from ..data.checks import DatasetCheckError
from ..data.problems import CheckError
from ..evaluation.breakdowns import breakdown_summary
from ..evaluation.cross_corpus import ENSEMBLE, score_run
from ..evaluation.score_checks import score_problems
from ..metrics.over_folds import format_signed
from ..training.run_config import ConfigError
from .errors import report_error
from .interrupt import exits_cleanly_on_interrupt


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="A finished train.py run (fold<k>/stage2/best).")
    parser.add_argument("--config", required=True, help="YAML config of the corpus to score on (its data section).")
    parser.add_argument("--data-dir", help="Corpus folder; overrides the config's data.root.")
    parser.add_argument(
        "--label-map",
        nargs="+",
        action="extend",
        default=[],
        metavar="SRC=DST",
        help="Rename corpus classes to the run's, e.g. anger=angry (repeatable; classes mapping to none of the "
        "run's are left out and counted; an entry whose SRC the corpus lacks or whose DST the run lacks is an "
        "error).",
    )
    parser.add_argument("--split", help="Score one predefined split only (corpora with a `split` column).")
    parser.add_argument("--batch-size", type=int, default=8, help="Clips per batch (longest first; default 8).")
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="Probabilities from the raw softmax (T = 1) instead of each fold model's calibration temperature.",
    )
    parser.add_argument(
        "--ensemble-calibration",
        metavar="CONFIG",
        help="A corpus config whose utterances no fold model saw (same --label-map): the ensemble is calibrated as "
        "an ensemble there (its own temperature on the log of its mean probabilities).",
    )
    parser.add_argument(
        "--perturb",
        nargs="+",
        action="extend",
        default=[],
        metavar="SPEC",
        help="Also score perturbed copies (repeatable): noise:snr_db=10[,color=pink], telephone[:codec=gsm], "
        "mp3|vorbis|opus[:compression_level=0.9], reverb:rt60_s=0.5[,drr_db=0] "
        "(docs/evaluation_breakdowns_calibration.md).",
    )
    parser.add_argument("--perturb-seed", type=int, default=0, help="Seed of the perturbations' noise (default 0).")
    parser.add_argument("--output-dir", required=True, help="Where scores.json, scores.md, predictions.csv go.")
    return parser.parse_args(argv)


def _saved(argv) -> str:
    return f"the run directory is untouched; {parse_args(argv).output_dir} holds only the files completed so far"


@exits_cleanly_on_interrupt("python score.py", _saved, resumes=False)
def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        perturbations, label_map = score_problems(args)  # everything checked first: nothing written on a problem
        scores = score_run(
            args.run_dir,
            args.config,
            args.output_dir,
            data_dir=args.data_dir,
            label_map=label_map,
            split=args.split,
            batch_size=args.batch_size,
            calibrated=not args.no_calibration,
            perturbations=perturbations,
            perturb_seed=args.perturb_seed,
            ensemble_calibration=args.ensemble_calibration,
        )
    except (CheckError, ConfigError, CorpusError, DatasetCheckError, FileNotFoundError, ValueError) as error:
        return report_error(error)
    if scores.get("not_held_out"):
        print(f"warning: {scores['not_held_out']}", file=sys.stderr)
    for name, s in [*scores["folds"].items(), (ENSEMBLE, scores[ENSEMBLE])]:
        print(
            f"{name:>9}: UA {100 * s['ua']:.2f} %  WA {100 * s['wa']:.2f} %  macro-F1 {100 * s['macro_f1']:.2f} %  "
            f"(n = {s['n']})"
        )
    if scores[ENSEMBLE].get("breakdowns"):
        print(f"ensemble {breakdown_summary(scores[ENSEMBLE]['breakdowns'])}")
    for spec, entry in (scores.get("perturbations") or {}).items():
        e = entry["models"][ENSEMBLE]
        deltas = f"ΔUA {format_signed(e['delta_ua'])}  Δmacro-F1 {format_signed(e['delta_macro_f1'])}"
        print(f"{spec}: ensemble {deltas} (points)")
    if scores["left_out"]:
        print("left out (no run class): " + ", ".join(f"{k} ({v})" for k, v in scores["left_out"].items()))
    if scores["missing_classes"]:
        print(
            "run classes absent from the corpus: "
            + ", ".join(scores["missing_classes"])
            + " (not scored: null per-class values, left out of UA and macro-F1)"
        )
    print(f"→ {args.output_dir}/scores.md, scores.json, predictions.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
