"""Benchmark 4: inference throughput, length-sorted batches vs one clip per call, with label agreement.

A stage-2 model (random weights, profile shape) is saved with its feature extractor and run by:

- transformers' `pipeline("audio-classification", model=saved_dir, feature_extractor=...)`, inputs as
  `{"raw", "sampling_rate"}` dicts (no FFmpeg here): one call per clip vs one call on the clips sorted by length
  (longest first) with `batch_size`;
- the project's `modeling.timeline` pipeline ("frame-aligned-emotion", when importable): `batch_size=1` vs
  `batch_size` with `padded_batches=True` (its own length sorting).

Clips are real (nemo4 when present, else polish3), decoded once beforehand, full length (no crop). Label
agreement = share of clips whose top label is the same batched and one by one. A group-norm backbone
(wav2vec2-base) sees the zero padding of a batch in its first conv normalisation and attention, so batched scores
differ slightly from one-by-one scores (sorted batches keep the padding small); see `max_score_difference`.
"""

import tempfile

import numpy as np
import torch
from transformers import pipeline
from transformers.utils import logging as hf_logging

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.audio import load_audio
from modeling.collator import make_feature_extractor
from modeling.inference import load_pipeline
from modeling.prediction_fields import PREDICTED, probabilities_of, probability_field

from .common import WALL_TIMES, Profile, interleaved_times, pick_clips, ratio_result, ratio_stats, seconds_stats


BATCH_SIZE = 8


def _top(result) -> tuple[str, float]:
    """(predicted class, its probability) of an audio-classification (transformers' [{"label", "score"}]) or timeline
    (ours: "predicted", "prob_<class>") result."""
    if isinstance(result, dict):
        return result[PREDICTED], float(result[probability_field(result[PREDICTED])])
    return result[0]["label"], float(result[0]["score"])


def _scores(result) -> dict[str, float]:
    if isinstance(result, dict):
        return probabilities_of(result)
    return {entry["label"]: float(entry["score"]) for entry in result}


def compare(
    name: str,
    one_by_one,
    batched,
    inputs: list,
    profile: Profile,
    config_text: str,
    device: str = "cpu",
    extra_note: str = "",
) -> tuple[dict, dict]:
    outputs = {}

    def run_single():
        outputs["single"] = [one_by_one(item) for item in inputs]

    def run_batched():
        outputs["batched"] = batched(inputs)

    times = interleaved_times(
        {"one_by_one": run_single, "batched": run_batched},
        max(1, profile.repetitions // 3),
        warmup=profile.warmup,
        device=device,
    )
    ratio = ratio_stats(times["one_by_one"], times["batched"])  # time ratio = throughput ratio
    single_labels = [_top(r)[0] for r in outputs["single"]]
    batched_labels = [_top(r)[0] for r in outputs["batched"]]
    agreement = float(np.mean([a == b for a, b in zip(single_labels, batched_labels)]))
    max_difference = max(
        abs(_scores(a)[label] - _scores(b)[label])
        for a, b in zip(outputs["single"], outputs["batched"])
        for label in _scores(a)
    )
    per_second = {key: len(inputs) / float(np.median(value)) for key, value in times.items()}
    details = {
        "seconds": {key: seconds_stats(value, WALL_TIMES.get(key)) for key, value in times.items()},
        "utterances_per_second": per_second,
        "ratio": ratio,
        "label_agreement": agreement,
        "max_score_difference": max_difference,
    }
    result = ratio_result(
        f"inference ({name}): utterances/s batched / one-by-one",
        ratio["median"],
        3.0,
        ">=",
        note=(
            f"{per_second['batched']:.1f} vs {per_second['one_by_one']:.1f} utt/s; label agreement "
            f"{100 * agreement:.1f} %, max |Δscore| {max_difference:.2g}" + extra_note
        ),
        noise=(ratio["min"], ratio["max"]),
        config=config_text,
    )
    return details, result


@torch.no_grad()
def batching_without_padding(model, arrays: list, profile: Profile, device: str) -> dict:
    """The model alone: `BATCH_SIZE` clips tiled/cut to `clip_seconds` (no padding), one forward each vs one batch.
    Separates what batching itself buys on this device from padding and pipeline overhead."""
    samples = int(profile.clip_seconds * 16_000)
    clips = torch.stack([torch.from_numpy(np.resize(array, samples)) for array in arrays[:BATCH_SIZE]]).to(device)
    mask = torch.ones_like(clips, dtype=torch.long)
    model = model.to(device)
    times = interleaved_times(
        {
            "one_by_one": lambda: [model(clips[i : i + 1], attention_mask=mask[i : i + 1]) for i in range(len(clips))],
            "batched": lambda: model(clips, attention_mask=mask),
        },
        max(1, profile.repetitions // 3),
        warmup=profile.warmup,
        device=device,
    )
    return {
        "clips": len(clips),
        "clip_seconds": profile.clip_seconds,
        "seconds": {key: seconds_stats(value) for key, value in times.items()},
        "ratio": ratio_stats(times["one_by_one"], times["batched"]),
    }


def run(profile: Profile, context: dict, device: str = "cpu") -> dict:
    torch.manual_seed(0)
    corpus, clips = pick_clips(profile.inference_clips, seed=2)
    arrays = [load_audio(clip["path"]) for clip in clips]
    labels = sorted({clip["label"] for clip in clips}) if len({c["label"] for c in clips}) >= 2 else ["a", "b"]
    config = profile.backbone_config(
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)}
    )
    model = Wav2Vec2ForFrameAlignedClassification(config).eval()
    inputs = [{"raw": array, "sampling_rate": 16_000} for array in arrays]
    seconds = [len(a) / 16_000 for a in arrays]
    config_text = (
        f"{profile.name} on {device}: {len(inputs)} {corpus} clips ({min(seconds):.1f}–{max(seconds):.1f} s, "
        f"mean {np.mean(seconds):.1f} s), batch {BATCH_SIZE}, random weights"
    )
    details, results = {"model_forward_equal_lengths": batching_without_padding(model, arrays, profile, device)}, []
    no_padding = details["model_forward_equal_lengths"]["ratio"]["median"]
    extra_note = (
        f"; the model alone on {BATCH_SIZE} equal {profile.clip_seconds:g} s clips (no padding, no pipeline): "
        f"batched / one-by-one = {no_padding:.2f}×"
    )
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the pipeline logs that a custom model type is "not supported" (it works)
    try:
        with tempfile.TemporaryDirectory() as saved:
            model.save_pretrained(saved)
            feature_extractor = make_feature_extractor()
            feature_extractor.save_pretrained(saved)

            classifier = pipeline(
                "audio-classification", model=saved, feature_extractor=feature_extractor, device=device
            )
            order = sorted(range(len(inputs)), key=lambda i: -len(arrays[i]))

            def batched_pipeline(items):
                results_sorted = classifier([dict(items[i]) for i in order], batch_size=BATCH_SIZE, top_k=None)
                unsorted = [None] * len(items)
                for position, index in enumerate(order):
                    unsorted[index] = results_sorted[position]
                return unsorted

            details["audio_classification_pipeline"], result = compare(
                "transformers audio-classification pipeline",
                lambda item: classifier(dict(item), top_k=None),
                batched_pipeline,
                inputs,
                profile,
                config_text,
                device,
                extra_note,
            )
            results.append(result)

            timeline = load_pipeline(saved, device=device)  # the one loader (modeling.auto_frame_aligned)
            details["timeline_pipeline"], result = compare(
                "modeling.timeline pipeline, padded_batches=True",
                lambda item: timeline(item, batch_size=1),
                lambda items: timeline(list(items), batch_size=BATCH_SIZE, padded_batches=True),
                inputs,
                profile,
                config_text,
                device,
                extra_note,
            )
            results.append(result)
    finally:
        hf_logging.set_verbosity(verbosity)
    return {"config": profile.describe() | {"corpus": corpus, "batch_size": BATCH_SIZE}, **details, "results": results}
