"""Publish the folds of a finished training run to the Hugging Face Hub (`push_to_hub.py`, or
`python -m modeling.cli.push`).

    python push_to_hub.py --run-dir runs/demo --repo-id ORG/NAME                  # ORG/NAME-fold1 ... -fold5
    python push_to_hub.py --run-dir runs/demo --repo-id ORG/NAME --folds 1,3
    python push_to_hub.py --run-dir runs/demo --repo-id ORG/NAME --revision-per-fold   # branches fold1..fold5
    python push_to_hub.py --run-dir runs/demo --repo-id ORG/NAME --dry-run             # check + show, no upload
    python push_to_hub.py --run-dir runs/demo --repo-id ORG/NAME --space ORG/NAME-demo # + a Gradio demo Space

The token comes from HF_TOKEN or `hf auth login`; the Hub from HF_ENDPOINT (default https://huggingface.co).
Re-running the same command uploads only what changed, and completes a push that was interrupted. The work is
done by `modeling.publishing.hub.push_run`; this module parses the arguments and prints. Needs no torch.
"""

import argparse
import logging
import sys

from ..publishing.hub import describe_plan, push_run
from ..publishing.hub import logger as hub_logger
from ..publishing.run import PushError
from .errors import report_error


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="push_to_hub.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run-dir", required=True, help="Run directory written by train.py (holds results.json).")
    parser.add_argument("--repo-id", required=True, help="ORG/NAME; folds go to ORG/NAME-fold<k> (or branches).")
    parser.add_argument(
        "--folds", help="Comma-separated folds to publish: numbers or fold names, e.g. 1,3 or fold1 (default: all)."
    )
    parser.add_argument("--private", action="store_true", help="Create the repositories private.")
    parser.add_argument(
        "--revision-per-fold",
        action="store_true",
        help="One repository ORG/NAME with a branch fold<k> per fold; main gets an overview card and a copy of one "
        "fold's checkpoint (the best validation UA, or --main-fold), so it loads without a revision.",
    )
    parser.add_argument(
        "--main-fold", help="With --revision-per-fold: the fold main holds, e.g. 2 (default: best validation UA)."
    )
    parser.add_argument("--license", help="License of the card (default: the training corpus's license).")
    parser.add_argument("--dry-run", action="store_true", help="Check the run and list what would be uploaded.")
    parser.add_argument(
        "--space",
        help="ORG/NAME of a demo Space (Gradio) published after the folds; it loads them by id and every model card "
        "links to it (docs/demo.md).",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger(hub_logger.name).setLevel(logging.INFO)  # one line per commit, not every HTTP request
    folds = [f for f in args.folds.split(",") if f.strip()] if args.folds else None
    try:
        outcome = push_run(
            args.run_dir,
            args.repo_id,
            folds,
            private=args.private,
            revision_per_fold=args.revision_per_fold,
            dry_run=args.dry_run,
            license=args.license,
            space=args.space,
            main_fold=args.main_fold,
        )
    except PushError as error:
        return report_error(error)
    if args.dry_run:
        print(describe_plan(outcome), end="")
        print("Dry run: nothing was uploaded.")
        return 0
    for result in outcome:
        status = f"uploaded {len(result.uploaded)} file(s)" if result.uploaded else "up to date"
        kind = "Space " if args.space and result.repo_id == args.space else ""
        print(f"{kind}{result.url}: {status}, {len(result.unchanged)} unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
