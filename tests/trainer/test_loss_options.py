"""FrameAlignedTrainer's utterance-loss options: class weights, focal loss, soft targets (EAL/FUAL unchanged)."""

import pytest
import torch
from datasets import Dataset
from helpers import polish3_clips, tiny_config

from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.losses import emotional_attention_loss, frame_utterance_alignment_loss, utterance_loss
from modeling.trainer.loss_options import distribution_problems, loss_option_problems


DISTRIBUTIONS = [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.2, 0.2, 0.6], [0.0, 0.25, 0.75]]


@pytest.fixture(scope="module")
def clips():
    return polish3_clips(4)


@pytest.fixture(scope="module")
def dataset(clips):
    # labels 0, 0, 1, 2 (counts 2, 1, 1) whatever polish3's own labels are: the weights below are computed by hand
    return Dataset.from_dict(
        {"audio": [path for path, _ in clips], "label": [0, 0, 1, 2], "label_distribution": DISTRIBUTIONS}
    )


def make_trainer(tmp_path, model, dataset=None, **args):
    settings = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    return FrameAlignedTrainer(
        model=model,
        args=FrameAlignedTrainingArguments(**{**settings, **args}),
        train_dataset=dataset,
        eval_dataset=dataset,
        data_collator=AudioClassificationCollator(make_feature_extractor()),
    )


def make_model():
    torch.manual_seed(0)
    return Wav2Vec2ForFrameAlignedClassification(tiny_config(eal_weight=0.3, fual_weight=0.7)).eval()


def batch_of(dataset, distribution: bool):
    collator = AudioClassificationCollator(
        make_feature_extractor(), distribution_column="label_distribution" if distribution else None
    )
    return collator([dataset[i] for i in range(len(dataset))])


@pytest.mark.parametrize(
    "options, soft, weights",
    [
        ({"focal_gamma": 2.0}, False, None),
        ({"class_weights": {"anger": 2.0, "fear": 1.0, "neutral": 0.5}}, False, [2.0, 1.0, 0.5]),
        # inverse: N / (C n_c) with counts 2, 1, 1
        ({"soft_labels": True, "focal_gamma": 1.0, "class_weights": "inverse"}, True, [4 / 6, 4 / 3, 4 / 3]),
    ],
)
def test_the_options_change_the_utterance_term_only(tmp_path, dataset, options, soft, weights):
    model = make_model()
    trainer = make_trainer(tmp_path, model, dataset, **options)
    batch = batch_of(dataset, soft)
    loss = trainer.compute_loss(model, batch)
    with torch.no_grad():
        out = model(**{k: v for k, v in batch.items() if k != "label_distribution"})
    term = utterance_loss(
        out.logits,
        batch["labels"],
        target_distribution=torch.tensor(DISTRIBUTIONS) if soft else None,
        class_weights=None if weights is None else torch.tensor(weights),
        focal_gamma=options.get("focal_gamma", 0.0),
    )
    assert term.item() != pytest.approx(out.loss.item(), rel=1e-3)  # the option does change the utterance term
    eal = emotional_attention_loss(out.utterance_embedding, out.frame_embeddings, out.frame_mask, 0.8)
    fual = frame_utterance_alignment_loss(out.logits, out.frame_logits, out.frame_weights, out.frame_mask)
    assert loss.item() == pytest.approx((term + 0.3 * eal + 0.7 * fual).item(), rel=1e-5)


def test_inverse_weights_come_from_the_training_labels(tmp_path, dataset):
    trainer = make_trainer(tmp_path, make_model(), dataset, class_weights="inverse_sqrt")
    # counts 2, 1, 1: raw 1/√2, 1, 1; scale N / Σ n_c raw_c = 4 / (√2 + 2)
    scale = 4 / (2**0.5 + 2)
    expected = [scale / 2**0.5, scale, scale]
    assert trainer.utterance_class_weights("cpu").tolist() == pytest.approx(expected, rel=1e-6)


def test_soft_labels_train_and_evaluate_with_metrics_on_the_consensus_label(tmp_path, dataset):
    seen = []

    def compute_metrics(prediction):
        seen.append(prediction.label_ids.tolist())
        return {"ua": 0.5}

    trainer = make_trainer(tmp_path, make_model(), dataset, soft_labels=True, max_steps=1, eval_strategy="no")
    trainer.compute_metrics = compute_metrics
    trainer.train()  # remove_unused_columns=True keeps label_distribution; the collator was given its column
    trainer.evaluate()
    assert seen == [[0, 0, 1, 2]]


def test_soft_labels_without_a_distribution_column_fail_clearly(tmp_path, clips):
    plain = Dataset.from_dict({"audio": [path for path, _ in clips], "label": [0, 0, 1, 2]})
    trainer = make_trainer(tmp_path, make_model(), plain, soft_labels=True, max_steps=1)
    with pytest.raises(ValueError, match="no 'label_distribution'"):
        trainer.train()


def test_bad_options_are_refused_when_the_arguments_are_built(tmp_path):
    with pytest.raises(ValueError, match="focal_gamma must be a number >= 0"):
        FrameAlignedTrainingArguments(output_dir=str(tmp_path), focal_gamma=-1.0)
    with pytest.raises(ValueError, match="class_weights must be null, one of"):
        FrameAlignedTrainingArguments(output_dir=str(tmp_path), class_weights="balanced")
    args = FrameAlignedTrainingArguments(output_dir=str(tmp_path), class_weights='{"anger": 2, "fear": 1}')
    assert args.class_weights == {"anger": 2, "fear": 1}  # JSON text from a command line


def test_explicit_weights_are_checked_against_the_classes():
    problems = loss_option_problems({"anger": 2.0, "joy": 1.0, "fear": -1}, 0.0, ["anger", "fear", "neutral"])
    assert problems == [
        "class_weights: weights must be finite numbers > 0, got {'fear': -1}.",
        "class_weights: unknown class(es) ['joy']; the classes are ['anger', 'fear', 'neutral'].",
        "class_weights: no weight for class(es) ['neutral']; one per class ['anger', 'fear', 'neutral'].",
    ]


def test_distribution_rows_are_checked():
    rows = [[0.5, 0.5, 0.0], [0.5, 0.6, 0.0], [1.0, 0.0], [0.5, -0.5, 1.0], None]
    assert distribution_problems(rows, 3) == [
        "label_distribution, row 1: sums to 1.1, not 1: [0.5, 0.6, 0.0].",
        "label_distribution, row 2: has 2 values, expected 3 (one per class).",
        "label_distribution, row 3: holds values that are not finite numbers >= 0: [0.5, -0.5, 1.0].",
        "label_distribution, row 4: expected 3 probabilities, got None.",
    ]
