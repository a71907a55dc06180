"""Scoring a fold: both stages' best models on the validation and test speakers → the fold's metrics.

Whole clips, batched longest first exactly as the Trainer's evaluation batches them (`evaluation_batches`), so the
validation UA a checkpoint was selected on is the one reported, and a clip's scores are the pipeline's.
"""

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm

from ..auto_frame_aligned import AutoModelForFrameAlignedClassification
from ..collator import AudioClassificationCollator, make_feature_extractor
from ..data.folds import Fold
from ..evaluation.breakdowns import breakdowns
from ..evaluation.calibration import (
    MIN_CALIBRATION_UTTERANCES,
    TEMPERATURE_BOUNDS,
    calibration_scores,
    fit_temperature,
    store_temperature,
)
from ..metrics import compute_ser_metrics
from ..metrics.predictions import Predictions, predictions_csv, relative_file
from ..modeling_frame_aligned import FrameAlignedModelMixin
from ..prediction_fields import softmax
from ..rundir.atomic import atomic_file, atomic_write_text
from ..rundir.faults import fault_point
from ..rundir.integrity import checkpoint_problems
from ..rundir.layout import RunDir
from ..rundir.reader import fold_name
from ..trainer.sampling import evaluation_batches


@dataclass
class SplitOutputs:
    """The model's raw outputs on one split: logits (N, num_labels), true label ids (N,), utterance embeddings
    (N, hidden_size). `split_predictions` turns them into per-utterance `Predictions` (the CSV's rows)."""

    logits: np.ndarray
    labels: np.ndarray
    embeddings: np.ndarray

    def metrics(self, num_labels: int) -> dict:
        return compute_ser_metrics(self.logits.argmax(-1), self.labels, num_labels)


@torch.no_grad()
def predict(
    model: FrameAlignedModelMixin, dataset: Dataset, batch_size: int, progress: str = "Scoring"
) -> SplitOutputs:
    """Logits, labels and utterance embeddings of every row of `dataset`, in row order (whole clips, batched
    exactly as the Trainer's evaluation: `evaluation_batches`, one clip per batch when padding would change them).
    `progress`: the progress bar's title (the bar is shown on a terminal only)."""
    collator = AudioClassificationCollator(make_feature_extractor(model.config))
    model.eval()
    batches = evaluation_batches(dataset, batch_size, model.config)  # one clip each if padding changes outputs
    logits, embeddings = [None] * len(dataset), [None] * len(dataset)
    for rows in tqdm(batches, desc=progress, unit="batch", disable=None):  # disable=None: quiet unless a terminal
        batch = collator([dataset[i] for i in rows])
        batch.pop("labels", None)
        batch = {key: value.to(model.device) for key, value in batch.items()}
        output = model(**batch)
        for j, row in enumerate(rows):
            logits[row] = output.logits[j].float().cpu().numpy()
            embeddings[row] = output.utterance_embedding[j].float().cpu().numpy()
    return SplitOutputs(np.stack(logits), np.asarray(list(dataset["label"])), np.stack(embeddings))


def score_checkpoint(best_dir: Path, splits, batch_size: int) -> dict[str, SplitOutputs]:
    """Predictions of a saved best model on the validation and test splits."""
    problems = checkpoint_problems(best_dir)
    if problems:
        raise ValueError(f"{best_dir} is corrupt ({'; '.join(problems)}); run the same command again to rebuild it.")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForFrameAlignedClassification.from_pretrained(best_dir).to(device)
    return {split: predict(model, splits[split], batch_size) for split in ("validation", "test")}


PER_CLASS = ("per_class_precision", "per_class_recall", "per_class_f1", "support")


def _summary(metrics: dict, keep_matrix: bool) -> dict:
    keys = ("ua", "wa", "macro_f1", *PER_CLASS, "confusion_matrix") if keep_matrix else ("ua", "wa", "macro_f1")
    return {key: metrics[key] for key in keys}


def split_predictions(
    prediction: SplitOutputs, rows: Dataset, classes: list[str], root, temperature: float | None = None
) -> Predictions:
    """A split's `SplitOutputs` as per-utterance `Predictions` (files relative to the corpus root `root`;
    probabilities softmax(logits / temperature))."""
    return Predictions(
        files=[relative_file(audio, root) for audio in rows["audio"]],
        speakers=list(rows["speaker"]),
        labels=np.asarray(prediction.labels),
        probabilities=softmax(prediction.logits, temperature),
        classes=list(classes),
    )


def split_breakdowns(outputs: SplitOutputs, rows: Dataset, num_labels: int) -> dict:
    """Per-speaker and per-gender scores of a split (`modeling.evaluation.breakdowns`)."""
    groups = {name: list(rows[name]) for name in ("speaker", "gender") if name in rows.column_names}
    return breakdowns(outputs.labels, outputs.logits.argmax(-1), groups, num_labels)


def calibrate(outputs: dict[str, SplitOutputs], best_dir: Path) -> dict:
    """Temperature scaling of the selected stage-2 model: T fitted on the validation split (after selection),
    stored in its best/config.json (`calibration_temperature`); ECE / Brier / NLL before and after on validation
    and test (`modeling.evaluation.calibration`). A validation split of fewer than `MIN_CALIBRATION_UTTERANCES`
    utterances fits nothing: T = 1 is stored and `not_fitted` says why."""
    validation = outputs["validation"]
    count = len(validation.labels)
    fitted = count >= MIN_CALIBRATION_UTTERANCES
    temperature = fit_temperature(validation.logits, validation.labels) if fitted else 1.0
    store_temperature(best_dir, temperature)
    reason = (
        {} if fitted else {"not_fitted": f"validation split of {count} utterances (< {MIN_CALIBRATION_UTTERANCES})"}
    )
    if fitted and min(abs(temperature - bound) / bound for bound in TEMPERATURE_BOUNDS) < 1e-3:
        # T at 20: near-uniform probabilities fit the validation split best (a model near chance there); T at 0.05:
        # every validation clip right (probabilities pushed to 1). Either way the split cannot place T: say so.
        reason["at_bound"] = f"T = {temperature:.3g}, a bound of {list(TEMPERATURE_BOUNDS)}"
        logging.getLogger(__name__).warning("%s: calibration temperature %s", best_dir, reason["at_bound"])
    return {
        "temperature": temperature,
        "fitted_on": "validation" if fitted else None,
        **reason,
        **{split: calibration_scores(outputs[split].logits, outputs[split].labels, temperature) for split in outputs},
    }


def fold_metrics(fold: Fold, splits, best_dirs: dict[str, Path], run: RunDir, config: dict, num_labels: int) -> dict:
    """Score both stages' best models; save the stage-2 test embeddings (for t-SNE); the fold's metrics.json."""
    scores, predictions = {}, {}
    for stage, best_dir in best_dirs.items():
        batch_size = config[stage]["eval_batch_size"] or config[stage]["batch_size"]
        predictions[stage] = score_checkpoint(best_dir, splits, batch_size)
        scores[stage] = {split: prediction.metrics(num_labels) for split, prediction in predictions[stage].items()}
    classes = splits["test"].features["label"].names
    calibration = calibrate(predictions["stage2"], best_dirs["stage2"])
    for split in ("validation", "test"):
        rows = split_predictions(
            predictions["stage2"][split], splits[split], classes, config["data"]["root"], calibration["temperature"]
        )
        atomic_write_text(run.predictions(fold.number, split), predictions_csv(rows))
    test = predictions["stage2"]["test"]
    with atomic_file(run.test_predictions(fold.number), "wb") as f:
        np.savez(
            f,
            embeddings=test.embeddings,
            labels=test.labels,
            predictions=test.logits.argmax(-1),
            logits=test.logits,
            temperature=calibration["temperature"],
        )
    fault_point(f"scoring:after-predictions:{fold_name(fold.number)}")

    relative = {stage: run.relative(best_dir) for stage, best_dir in best_dirs.items()}
    return {
        "validation": _summary(scores["stage2"]["validation"], False),
        "test": _summary(scores["stage2"]["test"], True),
        "breakdowns": split_breakdowns(test, splits["test"], num_labels),
        "calibration": calibration,
        "checkpoint": relative["stage2"],
        "speakers": {split: list(fold.speakers(split)) for split in ("train", "validation", "test")},
        "num_examples": {split: len(splits[split]) for split in ("train", "validation", "test")},
        "stage1": {
            "validation": _summary(scores["stage1"]["validation"], False),
            "test": _summary(scores["stage1"]["test"], True),
            "checkpoint": relative["stage1"],
        },
    }


__all__ = ["PER_CLASS", "SplitOutputs", "fold_metrics", "predict", "score_checkpoint", "split_predictions"]
