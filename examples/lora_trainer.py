"""LoRA through `FrameAlignedTrainer`: low-rank adapters on the backbone's attention, a new head, the paper's losses.

    python examples/lora_trainer.py --backbone facebook/hubert-base-ls960 --data data/polish3 --output-dir runs/lora

`--backbone`: a plain wav2vec 2.0 / HuBERT / WavLM / data2vec-audio checkpoint (Hub id or folder; the class comes
from its `model_type`). `--data`: a folder with audio files and a `metadata.csv` (file, label, speaker), or a Hub
dataset id. The last speaker (sorted) is held out for evaluation.

What it shows: peft freezes the base model and trains the adapters plus `modules_to_save` (the pooling head and the
classifier); `FrameAlignedTrainer` keeps that trainable set (its freezing only ever turns `requires_grad` off and
never touches an adapter's parameters), so the base weights never change and the saved adapter, loaded onto a fresh
copy of the same backbone, reproduces the trained model: the script prints the largest logit difference (0 up to
float error).
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from modeling import (
    AudioClassificationCollator,
    AutoModelForFrameAlignedClassification,
    FrameAlignedTrainer,
    FrameAlignedTrainingArguments,
    load_hub_dataset,
    make_feature_extractor,
)
from modeling.metrics import compute_ser_metrics, make_compute_metrics


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", required=True, help="Plain backbone checkpoint: Hub id or folder.")
    parser.add_argument("--data", required=True, help="Audio folder with metadata.csv, or a Hub dataset id.")
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--rank", type=int, default=8, help="LoRA rank r (lora_alpha = 2r).")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    return parser.parse_args(argv)


def speaker_split(corpus):
    """(train, evaluation): the last speaker (sorted) held out."""
    held_out = sorted(set(corpus["speaker"]))[-1]
    speakers = corpus["speaker"]
    train = corpus.select([i for i, s in enumerate(speakers) if s != held_out])
    return train, corpus.select([i for i, s in enumerate(speakers) if s == held_out])


def base_model(backbone: str, labels: list[str]):
    """The backbone (class from its model_type) with a new CLS-pooling head: built the same to train and to reload."""
    torch.manual_seed(0)
    return AutoModelForFrameAlignedClassification.from_pretrained(
        backbone,
        start_new_head=True,
        pooling="cls_attention",
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
    )


def logits_of(model, dataset, collator) -> np.ndarray:
    batch = collator([dataset[i] for i in range(len(dataset))])
    batch.pop("labels")
    with torch.no_grad():
        return model.eval()(**batch).logits.numpy()


def main(argv=None) -> dict:
    args = parse_args(argv)
    output = Path(args.output_dir)
    train, evaluation = speaker_split(load_hub_dataset(args.data, split=None))
    labels = train.features["label"].names
    model = base_model(args.backbone, labels)
    prefix = model.base_model_prefix  # wav2vec2, hubert, wavlm, data2vec_audio
    # WavLM's attention reads its projections' weights without calling them (adapters there would never train, and
    # FrameAlignedTrainer refuses them): its feed-forward instead
    targets = (
        r"feed_forward\.(intermediate_dense|output_dense)" if prefix == "wavlm" else r"attention\.(q_proj|v_proj)"
    )
    lora = LoraConfig(
        r=args.rank,
        lora_alpha=2 * args.rank,
        target_modules=rf"{prefix}\.encoder\.layers\.\d+\.{targets}",
        modules_to_save=["pooler", "classifier"],
    )
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    collator = AudioClassificationCollator(make_feature_extractor())
    trainer = FrameAlignedTrainer(
        model=model,
        args=FrameAlignedTrainingArguments(
            output_dir=str(output),
            max_steps=args.max_steps,
            per_device_train_batch_size=args.batch_size,
            per_device_eval_batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            save_strategy="no",
            report_to="none",
            remove_unused_columns=False,
            train_sampling_strategy="group_by_length",
        ),
        train_dataset=train,
        eval_dataset=evaluation,
        data_collator=collator,
        compute_metrics=make_compute_metrics(len(labels)),
    )
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable  # the adapter's set, kept
    trainer.train()
    model.save_pretrained(output / "adapter")

    trained = logits_of(model, evaluation, collator)
    reloaded = PeftModel.from_pretrained(base_model(args.backbone, labels), output / "adapter")
    restored = logits_of(reloaded, evaluation, collator)
    metrics = compute_ser_metrics(trained.argmax(-1), evaluation["label"], len(labels))
    summary = {
        "trainable_parameters": trainable,
        "evaluation_utterances": len(evaluation),
        "ua": metrics["ua"],
        "max_logit_difference_after_reload": float(np.abs(trained - restored).max()),
    }
    (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
