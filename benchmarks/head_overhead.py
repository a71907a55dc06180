"""Benchmark 1: what the stage-2 head and the EAL/FUAL losses cost on top of the backbone.

One training step = forward + backward (no optimizer step) on the same padded-free batch of real clips cropped to
`profile.clip_seconds`, CNN + lower half of the layers frozen (`freeze_for_training()` with `num_trainable_layers`
= half the layers), through `FrameAlignedTrainer.compute_loss`. Variants, timed interleaved:

- `eal_fual`: cls_attention pooling, λ_EAL = λ_FUAL = 0.05 (the paper's stage 2);
- `lambda0`: the same with λ_EAL = λ_FUAL = 0 (note: `compute_loss` still *computes* both losses and back-propagates
  0·loss through them, so this ratio cannot show their cost);
- `ce_only`: the same model, loss = the model's cross-entropy alone (no auxiliary loss computed at all): the ratio
  eal_fual / ce_only is what EAL + FUAL really cost;
- `hf_sequence_classification`: transformers' `Wav2Vec2ForSequenceClassification`, same backbone config and
  weights, `freeze_feature_encoder()` + the same lower modules frozen, mean pooling + projector + classifier.

The FLOP ratio eal_fual / hf comes from `FlopCounterMode` on one step of each (matmul/conv/attention FLOPs); the
auxiliary losses are element-wise and count ~0 FLOPs, so their cost is also timed directly (micro-benchmark of
`auxiliary_losses` forward + backward on the step's real outputs).
"""

import copy
import statistics
import tempfile
from types import SimpleNamespace

import torch
from transformers import Wav2Vec2Config, Wav2Vec2ForSequenceClassification

from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.trainer.trainer import auxiliary_losses

from .common import (
    WALL_TIMES,
    Profile,
    count_flops,
    flop_ratio_result,
    interleaved_times,
    pick_clips,
    ratio_result,
    ratio_stats,
    seconds_stats,
    time_call,
)


HEAD_KEYS = {  # our config keys that a plain Wav2Vec2Config does not take
    "pooling",
    "pooling_num_heads",
    "pooling_num_layers",
    "pooling_intermediate_size",
    "pooling_dropout",
    "eal_margin",
    "eal_weight",
    "fual_weight",
    "fual_detach_target",
    "num_trainable_layers",
    "backbone_attention_mask",
}


def real_batch(profile: Profile) -> tuple[str, dict]:
    """`batch_size` real clips at least `clip_seconds` long, cropped to exactly that (no padding)."""
    corpus, clips = pick_clips(profile.batch_size, min_seconds=profile.clip_seconds)
    collator = AudioClassificationCollator(make_feature_extractor(), max_length_seconds=profile.clip_seconds)
    return corpus, collator([{"audio": clip["path"], "label": clip["label_id"]} for clip in clips])


def hf_baseline(model: Wav2Vec2ForFrameAlignedClassification) -> Wav2Vec2ForSequenceClassification:
    """transformers' sequence classifier on the same backbone (weights copied), frozen the same way."""
    settings = {k: v for k, v in model.config.to_dict().items() if k not in HEAD_KEYS}
    for key in ("model_type", "architectures", "auto_map", "transformers_version"):
        settings.pop(key, None)
    hf = Wav2Vec2ForSequenceClassification(Wav2Vec2Config(**settings))
    hf.wav2vec2.load_state_dict(model.wav2vec2.state_dict())
    hf.freeze_feature_encoder()
    for module in model.frozen_backbone_modules():  # same names under `wav2vec2.`
        name = next(n for n, m in model.wav2vec2.named_modules() if m is module)
        hf.wav2vec2.get_submodule(name).requires_grad_(False)
    return hf


def aux_loss_seconds(model, batch, repetitions: int = 30) -> float:
    """Median seconds of λ·EAL + λ·FUAL forward + backward on the real outputs of `model` (as leaf tensors)."""
    with torch.no_grad():
        outputs = model(**batch)
    leaves = SimpleNamespace(frame_mask=outputs.frame_mask)
    for key in ("logits", "frame_logits", "frame_weights", "utterance_embedding", "frame_embeddings"):
        setattr(leaves, key, getattr(outputs, key).detach().clone().requires_grad_(True))
    config = model.config

    def step():
        terms = auxiliary_losses(leaves, config)
        (config.eal_weight * terms["loss_eal"] + config.fual_weight * terms["loss_fual"]).backward()

    step()
    return statistics.median(time_call(step) for _ in range(repetitions))


def setup(profile: Profile) -> SimpleNamespace:
    """The batch, the four models (ours trained by `FrameAlignedTrainer`, ours with λ = 0, HF's) and one training
    step per variant (forward + backward, gradients cleared)."""
    torch.manual_seed(0)
    corpus, batch = real_batch(profile)
    config = profile.backbone_config()
    model = Wav2Vec2ForFrameAlignedClassification(config)
    with tempfile.TemporaryDirectory() as tmp:
        args = FrameAlignedTrainingArguments(output_dir=tmp, report_to=[], use_cpu=True)
        trainer = FrameAlignedTrainer(model=model, args=args)  # applies freeze_for_training()
    model_lambda0 = copy.deepcopy(model)
    model_lambda0.config.eal_weight = model_lambda0.config.fual_weight = 0.0
    hf = hf_baseline(model)
    for m in (model, model_lambda0, hf):
        m.train()
    hf_inputs = {"input_values": batch["input_values"], "labels": batch["labels"]}  # no padding: same as with mask

    def step(function):
        def run_step():
            function().backward()
            for m in (model, model_lambda0, hf):
                m.zero_grad(set_to_none=True)

        return run_step

    variants = {
        "eal_fual": step(lambda: trainer.compute_loss(model, batch)),
        "lambda0": step(lambda: trainer.compute_loss(model_lambda0, batch)),
        "ce_only": step(lambda: model(**batch).loss),
        "hf_sequence_classification": step(lambda: hf(**hf_inputs).loss),
    }
    return SimpleNamespace(corpus=corpus, batch=batch, model=model, hf=hf, variants=variants)


def step_flops(profile: Profile) -> dict[str, int]:
    """FLOPs of one training step of each variant (`count_flops`: from the shapes, no timing)."""
    return {name: count_flops(function) for name, function in setup(profile).variants.items()}


def flop_ratio(flops: dict[str, int]) -> float:
    """Our stage-2 step (EAL + FUAL) over HF's `Wav2Vec2ForSequenceClassification` step: the timed ratio's target."""
    return flops["eal_fual"] / flops["hf_sequence_classification"]


def run(profile: Profile, context: dict) -> dict:
    bench = setup(profile)
    corpus, batch, model, variants = bench.corpus, bench.batch, bench.model, bench.variants
    flops = {name: count_flops(function) for name, function in variants.items()}
    times = interleaved_times(variants, profile.repetitions, profile.warmup)
    vs_lambda0 = ratio_stats(times["eal_fual"], times["lambda0"])
    vs_ce = ratio_stats(times["eal_fual"], times["ce_only"])
    vs_hf = ratio_stats(times["eal_fual"], times["hf_sequence_classification"])
    ours_over_hf = flop_ratio(flops)
    aux_seconds = aux_loss_seconds(model, batch)
    step_seconds = statistics.median(times["eal_fual"])
    context["stage2_step_seconds"] = step_seconds
    context["stage2_step_clips"] = profile.batch_size
    context["stage2_step_audio_seconds"] = profile.batch_size * profile.clip_seconds

    shape = f"{profile.name}: batch {profile.batch_size} × {profile.clip_seconds:g} s ({corpus} clips)"
    aux_note = (
        f"EAL+FUAL fwd+bwd alone: {aux_seconds * 1e3:.2f} ms = {100 * aux_seconds / step_seconds:.3f} % of a step"
    )
    results = [
        ratio_result(
            "head: step(EAL+FUAL) / step(λ=0)",
            vs_lambda0["median"],
            1.02,
            "<=",
            note="λ=0 computes both losses for the logs, without an autograd graph; " + aux_note,
            noise=(vs_lambda0["min"], vs_lambda0["max"]),
            config=shape,
        ),
        ratio_result(
            "head: step(EAL+FUAL) / step(CE only)",
            vs_ce["median"],
            1.02,
            "<=",
            note="CE only = the model's loss, no auxiliary loss computed; " + aux_note,
            noise=(vs_ce["min"], vs_ce["max"]),
            config=shape,
        ),
        flop_ratio_result("head: step(ours) / step(HF Wav2Vec2ForSequenceClassification)", vs_hf, ours_over_hf, shape),
    ]
    return {
        "config": profile.describe() | {"corpus": corpus, "attn_implementation": model.config._attn_implementation},
        "step_seconds": {name: seconds_stats(values, WALL_TIMES.get(name)) for name, values in times.items()},
        "flops": flops,
        "flop_ratio_ours_over_hf": ours_over_hf,
        "aux_losses_seconds": aux_seconds,
        "aux_losses_share_of_step": aux_seconds / step_seconds,
        "ratios": {"eal_fual/lambda0": vs_lambda0, "eal_fual/ce_only": vs_ce, "ours/hf": vs_hf},
        "results": results,
    }
