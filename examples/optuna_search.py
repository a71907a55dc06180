r"""An optuna hyper-parameter search through `FrameAlignedTrainer.hyperparameter_search` (transformers' own API).

    python examples/optuna_search.py --backbone facebook/wav2vec2-base --data data/polish3 --trials 20 \
        --output-dir runs/search

Each trial builds its model with `model_init` (the class from the backbone's `model_type`, a new attentive-pooling
head) and `FrameAlignedTrainer` freezes it exactly as it freezes a model passed in: the CNN always, the lower layers
per `--num-trainable-layers`. The search tunes the backbone's and the head's learning rates (the paper's per-part
rates, Table 2) on the held-out speaker's UA. `--data`: a folder with audio files and a `metadata.csv` (file, label,
speaker), or a Hub dataset id; the last speaker (sorted) is held out.
"""

import argparse
import json
from pathlib import Path

from modeling import (
    AudioClassificationCollator,
    AutoModelForFrameAlignedClassification,
    FrameAlignedTrainer,
    FrameAlignedTrainingArguments,
    load_hub_dataset,
    make_feature_extractor,
)
from modeling.metrics import make_compute_metrics


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", required=True, help="Plain backbone checkpoint: Hub id or folder.")
    parser.add_argument("--data", required=True, help="Audio folder with metadata.csv, or a Hub dataset id.")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-trainable-layers", type=int, default=None, help="Top layers trained (default: all).")
    return parser.parse_args(argv)


def hp_space(trial) -> dict:
    """The search space: per-part learning rates (FrameAlignedTrainingArguments fields), log-uniform."""
    return {
        "backbone_learning_rate": trial.suggest_float("backbone_learning_rate", 1e-5, 1e-3, log=True),
        "pooling_learning_rate": trial.suggest_float("pooling_learning_rate", 1e-4, 1e-2, log=True),
        "classifier_learning_rate": trial.suggest_float("classifier_learning_rate", 1e-4, 1e-2, log=True),
    }


def main(argv=None) -> dict:
    args = parse_args(argv)
    corpus = load_hub_dataset(args.data, split=None)
    held_out = sorted(set(corpus["speaker"]))[-1]
    speakers = corpus["speaker"]
    train = corpus.select([i for i, s in enumerate(speakers) if s != held_out])
    evaluation = corpus.select([i for i, s in enumerate(speakers) if s == held_out])
    labels = train.features["label"].names

    def model_init(trial=None):
        return AutoModelForFrameAlignedClassification.from_pretrained(
            args.backbone,
            start_new_head=True,
            pooling="attentive",
            num_trainable_layers=args.num_trainable_layers,
            id2label=dict(enumerate(labels)),
            label2id={name: i for i, name in enumerate(labels)},
        )

    trainer = FrameAlignedTrainer(
        model_init=model_init,
        args=FrameAlignedTrainingArguments(
            output_dir=str(Path(args.output_dir)),
            max_steps=args.max_steps,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.batch_size,
            eval_strategy="no",  # one evaluation per trial, at its end: the objective
            save_strategy="no",
            report_to="none",
            remove_unused_columns=False,
            train_sampling_strategy="group_by_length",
        ),
        train_dataset=train,
        eval_dataset=evaluation,
        data_collator=AudioClassificationCollator(make_feature_extractor()),
        compute_metrics=make_compute_metrics(len(labels)),
    )
    best = trainer.hyperparameter_search(
        hp_space=hp_space,
        compute_objective=lambda metrics: metrics["eval_ua"],
        direction="maximize",
        backend="optuna",
        n_trials=args.trials,
    )
    summary = {"best_ua": best.objective, "hyperparameters": best.hyperparameters, "trials": args.trials}
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "best_trial.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
