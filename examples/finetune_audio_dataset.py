r"""Fine-tune the frame-aligned emotion classifier on your own 🤗 `datasets` audio data, both stages, with
`FrameAlignedTrainer`: a dataset with an audio column → stage 1 (attentive pooling, CE) → stage 2 (CLS pooling,
CE + EAL + FUAL) → UA/WA on the test split → `save_pretrained`.

    python examples/finetune_audio_dataset.py --data my_corpus/ --backbone facebook/wav2vec2-base \
        --output-dir runs/mine

`--data`: a Hub dataset id, or a local folder (parquet / arrow / audio files with a metadata.csv, optionally in
train/validation/test sub-folders). Its own train/validation/test splits are used; without a validation or test
split, 10 % of the training rows each are held out (not speaker-independent: prefer your own splits).
`--backbone`: a Hub id or a local wav2vec2/HuBERT-style checkpoint folder (offline: a folder). No torchcodec needed.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from datasets import DatasetDict

from modeling import (
    AudioClassificationCollator,
    AutoModelForFrameAlignedClassification,
    CheckError,
    FrameAlignedTrainer,
    FrameAlignedTrainingArguments,
    Problem,
    load_hub_dataset,
    make_feature_extractor,
)
from modeling.cli.errors import exits_on
from modeling.data import CorpusError
from modeling.data.checks import label_problems
from modeling.metrics import compute_ser_metrics, make_compute_metrics


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="Hub dataset id or local dataset folder.")
    parser.add_argument("--backbone", default="facebook/wav2vec2-base", help="Hub id or local checkpoint folder.")
    parser.add_argument("--output-dir", required=True, help="Where stage1/, stage2/, final/ and test_metrics.json go.")
    parser.add_argument("--audio-column", default="audio", help="The dataset's audio column (default: audio).")
    parser.add_argument("--label-column", default="label", help="The dataset's label column (default: label).")
    parser.add_argument("--stage1-epochs", type=float, default=40, help="Stage 1 epochs (default: 40).")
    parser.add_argument("--stage2-epochs", type=float, default=30, help="Stage 2 epochs (default: 30).")
    parser.add_argument("--batch-size", type=int, default=32, help="Batch size per device (default: 32).")
    parser.add_argument(
        "--max-length-seconds", type=float, default=8.0, help="Training crops in s (default: 8; evaluation: whole)."
    )
    parser.add_argument(
        "--num-trainable-layers", type=int, default=6, help="Stage 2: top transformer layers trained (default: 6)."
    )
    return parser.parse_args(argv)


def load_splits(args) -> DatasetDict:
    """train / validation / test of the dataset (its own, else 80/10/10 of its rows, seeded). Raises `CheckError`
    for empty labels and for a class spelled two ways ('Angry' and 'angry' would train as two classes)."""
    corpus = load_hub_dataset(args.data, split=None, audio_column=args.audio_column, label_column=args.label_column)
    problems = label_problems(corpus)
    if problems:
        raise CheckError(problems, source=args.data)
    if "split" not in corpus.column_names:
        corpus = corpus.add_column("split", ["train"] * len(corpus))
    splits = {
        name: corpus.filter(lambda s, n=name: s == n, input_columns="split")
        for name in ("train", "validation", "test")
    }
    for name in ("validation", "test"):
        if len(splits[name]) == 0:
            parts = splits["train"].train_test_split(test_size=0.1, seed=0)
            splits["train"], splits[name] = parts["train"], parts["test"]
    return DatasetDict(splits)


def train_stage(model, splits, output_dir: Path, epochs: float, batch_size: int, learning_rates, max_length_seconds):
    """One stage with the paper's per-part learning rates (Table 2); returns the Trainer (best model loaded).
    `warmup_steps` below 1 is a fraction of the steps (transformers 5 dropped `warmup_ratio`)."""
    feature_extractor = make_feature_extractor()
    backbone_lr, pooling_lr, classifier_lr = learning_rates
    args = FrameAlignedTrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        learning_rate=backbone_lr,
        backbone_learning_rate=backbone_lr,
        pooling_learning_rate=pooling_lr,
        classifier_learning_rate=classifier_lr,
        weight_decay=1e-2,
        warmup_steps=0.1,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="ua",
        train_sampling_strategy="group_by_length",
        report_to="none",
        logging_steps=10,
    )
    trainer = FrameAlignedTrainer(  # evaluation: whole clips (eval_data_collator), longest first (group_by_length)
        model=model,
        args=args,
        train_dataset=splits["train"],
        eval_dataset=splits["validation"],
        data_collator=AudioClassificationCollator(feature_extractor, max_length_seconds, random_crop=True),
        eval_data_collator=AudioClassificationCollator(feature_extractor),
        processing_class=feature_extractor,
        compute_metrics=make_compute_metrics(model.config.num_labels),
    )
    trainer.train()
    return trainer


STAGE1 = {"pooling": "attentive"}
STAGE2 = {"pooling": "cls_attention", "eal_margin": 0.8, "eal_weight": 0.05, "fual_weight": 0.05}


def check_settings(args, label_maps: dict):
    """Both stages' model configs, built before anything trains (a bad --num-trainable-layers is found now, not
    after stage 1): raises `CheckError` listing every problem."""
    problems = []
    stages = {  # (the model config's settings, the flags that chose them)
        "stage 1": (STAGE1, f"--backbone {args.backbone}"),
        "stage 2": (
            {**STAGE2, "num_trainable_layers": args.num_trainable_layers},
            f"--backbone {args.backbone} --num-trainable-layers {args.num_trainable_layers}",
        ),
    }
    for stage, (settings, flags) in stages.items():
        try:
            AutoModelForFrameAlignedClassification.config_from_pretrained(args.backbone, **settings, **label_maps)
        except (OSError, TypeError, ValueError) as error:
            problems.append(Problem(stage, f"{stage} with {flags}: {error}"))
    if problems:
        raise CheckError(problems, source="the command line")


@exits_on(CheckError, CorpusError)  # refused settings or data: the problems on stderr, exit status 2 (as train.py)
def main(argv=None) -> int:
    run(parse_args(argv))
    return 0


def run(args) -> dict:
    """Both stages, then the test split's UA/WA (also written to OUTPUT/test_metrics.json); raises `CheckError`
    listing every problem of the settings before anything trains."""
    output = Path(args.output_dir)
    splits = load_splits(args)
    labels = splits["train"].features["label"].names
    label_maps = {"id2label": dict(enumerate(labels)), "label2id": {name: i for i, name in enumerate(labels)}}
    check_settings(args, label_maps)

    # The class from the backbone's model_type (wav2vec2, HuBERT, WavLM, data2vec-audio); a new head on it.
    stage1 = AutoModelForFrameAlignedClassification.from_pretrained(
        args.backbone, start_new_head=True, num_labels=len(labels), **STAGE1, **label_maps
    )
    trainer = train_stage(
        stage1,
        splits,
        output / "stage1",
        args.stage1_epochs,
        args.batch_size,
        (1e-4, 5e-4, 1e-4),
        args.max_length_seconds,
    )
    trainer.save_model(str(output / "stage1" / "best"))

    stage2 = AutoModelForFrameAlignedClassification.from_pretrained(
        output / "stage1" / "best",
        start_new_head=True,  # stage 2's CLS pooling and classifier replace stage 1's head
        num_trainable_layers=args.num_trainable_layers,
        **STAGE2,
    )
    trainer = train_stage(
        stage2,
        splits,
        output / "stage2",
        args.stage2_epochs,
        args.batch_size,
        (1e-5, 3e-4, 3e-4),
        args.max_length_seconds,
    )
    prediction = trainer.predict(splits["test"])
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    metrics = compute_ser_metrics(np.argmax(logits, axis=-1), prediction.label_ids, len(labels))
    trainer.save_model(str(output / "final"))  # save_pretrained + the feature extractor: pipeline-ready
    summary = {"test_ua": metrics["ua"], "test_wa": metrics["wa"], "num_test": len(splits["test"]), "labels": labels}
    (output / "test_metrics.json").write_text(json.dumps(summary, indent=2))
    print(
        f"test UA {100 * metrics['ua']:.2f} %  WA {100 * metrics['wa']:.2f} %  ({len(splits['test'])} clips) "
        f"→ {output / 'final'}"
    )
    return summary


if __name__ == "__main__":
    sys.exit(main())
