"""A finished train.py run on an EmoBox corpus (`data.loader: emobox`) → the files EmoBox's evaluation reads (the
command: `python -m modeling.cli.emobox_export`).

Per fold k: `fold<k>_predictions.jsonl` ({"key", "prediction"} per test utterance) and `fold<k>_labels.jsonl`
({"key", "label"}), class names as label_map.json gives them (EmoBox/EmoEval.py's `EmoEval(predictions,
data_labels)` compares them per key), from the run's `fold<k>/predictions_test.csv`; `summary.json` says which folds
are speaker-dependent.
"""

import json
from pathlib import Path

from ..data.emobox import EmoBoxError, audio_path, emobox_predictions, read_emobox, speaker_dependent_folds
from ..metrics.predictions import read_predictions
from ..rundir.atomic import atomic_write_json, atomic_write_text
from ..rundir.reader import FinishedRun, fold_name


def export_run(run_dir, output_dir) -> dict:
    """Write the files above; returns summary.json's content. Raises EmoBoxError for a run not trained on an
    EmoBox corpus or predictions of files the EmoBox folds do not name."""
    run = FinishedRun(run_dir)
    results = run.results()
    data = (results.get("config") or {}).get("data") or {}
    if data.get("loader") != "emobox":
        raise EmoBoxError(f"{run_dir}: trained with data.loader {data.get('loader')!r}, not emobox.")
    args = data.get("loader_args") or {}
    corpus = read_emobox(args["metadata_dir"], args["corpus"])
    root = Path(data["root"]).expanduser().resolve()
    keys_by_file = {
        audio_path(root, corpus.name, str(record["wav"])).resolve().relative_to(root).as_posix(): key
        for key, record in corpus.records.items()
    }
    output = Path(output_dir)
    for k in results["folds"]:
        rows = emobox_predictions(read_predictions(run.predictions(k, "test")), keys_by_file)
        name = fold_name(k)
        atomic_write_text(
            output / f"{name}_predictions.jsonl",
            "".join(json.dumps({"key": r["key"], "prediction": r["prediction"]}) + "\n" for r in rows),
        )
        atomic_write_text(
            output / f"{name}_labels.jsonl",
            "".join(json.dumps({"key": r["key"], "label": r["label"]}) + "\n" for r in rows),
        )
    summary = {
        "corpus": corpus.name,
        "folds": [fold_name(k) for k in results["folds"]],
        "speaker_dependent_folds": [fold_name(k) for k in sorted(speaker_dependent_folds(corpus))],
    }
    atomic_write_json(output / "summary.json", summary)
    return summary
