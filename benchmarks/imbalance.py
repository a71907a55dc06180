"""A short run on deliberately imbalanced real speech: minority-class recall with and without class weighting.

`python -m benchmarks.imbalance [--epochs 4] [--output benchmarks/imbalance.json]`

nEMO's 4-class subset (../shared/data/nemo4, CC BY-NC-SA: read from there, never copied) with one class (`sad`) cut
to 15 % of its clips in the training speakers; speakers KS0 (male) and MK0 (female) are held out as the test split.
The same small randomly initialised wav2vec2-shaped model (the seed fixes it) trains with `FrameAlignedTrainer`
(attentive pooling, cross-entropy, length-sorted batches, 1.5 s training crops) once per setting: plain CE, inverse
class weights, focal loss (γ = 2), and the class-balanced sampler. Reported per setting: test recall of every class,
UA, macro-F1. The numbers are from a short CPU run of a small model from scratch: they show the direction the
options move minority recall in, not what a pre-trained backbone reaches (docs/imbalance_and_soft_labels.md).
"""

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset

from benchmarks.common import SMALL_CPU_BACKBONE
from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.configuration_frame_aligned import Wav2Vec2FrameAlignedConfig
from modeling.metrics import compute_ser_metrics, make_compute_metrics
from modeling.rundir.atomic import atomic_write_json


NEMO4 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nemo4"
CLASSES = ["angry", "happy", "neutral", "sad"]
MINORITY, KEEP = "sad", 0.15
TEST_SPEAKERS = ("KS0", "MK0")
SETTINGS = {
    "plain CE": {},
    "inverse class weights": {"class_weights": "inverse"},
    "focal γ=2": {"focal_gamma": 2.0},
    "class-balanced sampler": {"class_balanced_sampling": True},
}
BACKBONE = SMALL_CPU_BACKBONE


def imbalanced_splits(seed: int = 0) -> tuple[Dataset, Dataset]:
    """(train, test): train = the other 7 speakers with `sad` cut to 15 %, test = the held-out speakers, all clips."""
    with open(NEMO4 / "metadata.csv") as f:
        rows = [row for row in csv.DictReader(f) if row["label"] in CLASSES]
    test = [row for row in rows if row["speaker"] in TEST_SPEAKERS]
    train = [row for row in rows if row["speaker"] not in TEST_SPEAKERS]
    minority = [row for row in train if row["label"] == MINORITY]
    random.Random(seed).shuffle(minority)
    train = [row for row in train if row["label"] != MINORITY] + minority[: round(KEEP * len(minority))]

    def dataset(part):
        return Dataset.from_dict(
            {
                "audio": [str(NEMO4 / row["file"]) for row in part],
                "label": [CLASSES.index(row["label"]) for row in part],
                "duration_s": [float(row["duration_s"]) for row in part],
            }
        )

    return dataset(train), dataset(test)


def train_and_score(setting: dict, train: Dataset, test: Dataset, epochs: float, output_dir: str) -> dict:
    torch.manual_seed(0)
    config = Wav2Vec2FrameAlignedConfig(
        **BACKBONE,
        num_labels=len(CLASSES),
        id2label=dict(enumerate(CLASSES)),
        label2id={name: i for i, name in enumerate(CLASSES)},
        pooling="attentive",
        num_trainable_layers=None,
    )
    model = Wav2Vec2ForFrameAlignedClassification(config)
    extractor = make_feature_extractor()
    trainer = FrameAlignedTrainer(
        model=model,
        args=FrameAlignedTrainingArguments(
            output_dir=output_dir,
            num_train_epochs=epochs,
            per_device_train_batch_size=32,
            per_device_eval_batch_size=16,
            learning_rate=1e-3,
            warmup_steps=0.1,
            weight_decay=0.01,
            train_sampling_strategy="group_by_length",
            length_column_name="duration_s",
            save_strategy="no",
            eval_strategy="no",
            logging_steps=20,
            report_to=[],
            use_cpu=True,
            seed=0,
            disable_tqdm=True,
            **setting,
        ),
        train_dataset=train,
        data_collator=AudioClassificationCollator(extractor, max_length_seconds=1.5, random_crop=True),
        compute_metrics=make_compute_metrics(len(CLASSES)),
    )
    start = time.perf_counter()
    trainer.train()
    trainer.data_collator = AudioClassificationCollator(extractor, max_length_seconds=6.0)
    predictions = trainer.predict(test)
    scores = compute_ser_metrics(np.argmax(predictions.predictions, axis=-1), predictions.label_ids, len(CLASSES))
    recall = dict(zip(CLASSES, (float(r) for r in scores["per_class_recall"])))
    return {
        "recall": recall,
        "minority_recall": recall[MINORITY],
        "ua": float(scores["ua"]),
        "macro_f1": float(scores["macro_f1"]),
        "train_seconds": round(time.perf_counter() - start, 1),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=4)
    parser.add_argument("--output", default="benchmarks/imbalance.json")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args(argv)
    if not (NEMO4 / "metadata.csv").is_file():
        print(f"error: {NEMO4} not found (../shared/data/nemo4)", file=sys.stderr)
        return 2
    train, test = imbalanced_splits()
    counts = {name: int(sum(1 for y in train["label"] if y == i)) for i, name in enumerate(CLASSES)}
    results = {
        "corpus": f"nemo4, {MINORITY} cut to {KEEP:.0%} in training; test speakers {list(TEST_SPEAKERS)}",
        "train_counts": counts,
        "test_counts": {name: int(sum(1 for y in test["label"] if y == i)) for i, name in enumerate(CLASSES)},
        "epochs": args.epochs,
        "settings": {},
    }
    for name in args.settings:
        with tempfile.TemporaryDirectory() as tmp:
            results["settings"][name] = train_and_score(SETTINGS[name], train, test, args.epochs, tmp)
        print(name, json.dumps(results["settings"][name]), flush=True)
        atomic_write_json(Path(args.output), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
