"""A finished train.py run on an EmoBox corpus (`data.loader: emobox`) → the files EmoBox's evaluation reads.

    python -m modeling.cli.emobox_export --run-dir runs/cafe --output-dir runs/cafe/emobox

Per fold k: `fold<k>_predictions.jsonl` ({"key", "prediction"} per test utterance) and `fold<k>_labels.jsonl`
({"key", "label"}), class names as label_map.json gives them (EmoBox/EmoEval.py's `EmoEval(predictions,
data_labels)` compares them per key), from the run's `fold<k>/predictions_test.csv`; `summary.json` says which folds
are speaker-dependent. The work is `modeling.evaluation.emobox_export.export_run`.
"""

import argparse
import sys

from ..data.emobox import EmoBoxError
from ..evaluation.emobox_export import export_run
from .errors import exits_on


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", required=True, help="A finished train.py run with data.loader: emobox.")
    parser.add_argument("--output-dir", required=True, help="Where the EmoBox evaluation files go.")
    return parser.parse_args(argv)


@exits_on(EmoBoxError, ValueError, KeyError)  # `error: …` on stderr, exit status 2
def main(argv=None) -> int:
    args = parse_args(argv)
    summary = export_run(args.run_dir, args.output_dir)
    print(f"{summary['corpus']}: {', '.join(summary['folds'])} → {args.output_dir}")
    if summary["speaker_dependent_folds"]:
        print(f"speaker-dependent (EmoBox's folds share speakers): {', '.join(summary['speaker_dependent_folds'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
