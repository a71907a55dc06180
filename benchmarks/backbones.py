"""Benchmark: the stage-2 training step of each backbone's frame-aligned model vs transformers' own sequence classifier
on the same backbone (wav2vec 2.0, HuBERT, WavLM, data2vec-audio).

Per backbone, one training step = forward + backward on the same batch of real clips (as `head_overhead.py`): ours
(`cls_attention` pooling, λ_EAL = λ_FUAL = 0.05, through `FrameAlignedTrainer.compute_loss`, CNN + lower half of the
layers frozen by `freeze_for_training()`) against the backbone's `*ForSequenceClassification` (mean pooling +
projector + classifier) with the same backbone config and weights, frozen the same way. Target: the timed ratio is
within the FLOP ratio of the two steps (`FlopCounterMode`: the extra pooling layer) + 0.02. The profile's backbone
shape is applied to every backbone's config (so `full` is base-size for all four).
"""

import tempfile

import torch
import transformers

from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments
from modeling.auto_frame_aligned import FRAME_ALIGNED_MODELS
from modeling.configuration_frame_aligned import FRAME_ALIGNED_CONFIGS

from .common import Profile, count_flops, flop_ratio_result, interleaved_times, ratio_stats
from .head_overhead import real_batch


# backbone model_type → transformers' plain config and sequence-classification classes
BASELINES = {
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2ForSequenceClassification"),
    "hubert": ("HubertConfig", "HubertForSequenceClassification"),
    "wavlm": ("WavLMConfig", "WavLMForSequenceClassification"),
    "data2vec-audio": ("Data2VecAudioConfig", "Data2VecAudioForSequenceClassification"),
}


def backbone_settings(profile: Profile, model_type: str) -> dict:
    """The profile's backbone shape for `model_type` (data2vec-audio: its own positional convolution stack)."""
    settings = dict(profile.backbone, layerdrop=0.0, mask_time_prob=0.0)
    if model_type == "data2vec-audio":
        settings.pop("num_conv_pos_embeddings", None)
    return settings


def pair(profile: Profile, model_type: str):
    """(ours, transformers' sequence classifier) on the same backbone config and weights, frozen the same way."""
    settings = backbone_settings(profile, model_type)
    config_class = FRAME_ALIGNED_CONFIGS[f"{model_type}-frame-aligned"]
    torch.manual_seed(0)
    ours = FRAME_ALIGNED_MODELS[config_class.model_type](
        config_class(
            pooling="cls_attention",
            num_labels=4,
            num_trainable_layers=settings.get("num_hidden_layers", 12) // 2,
            **settings,
        )
    )
    config_name, model_name = BASELINES[model_type]
    hf = getattr(transformers, model_name)(getattr(transformers, config_name)(num_labels=4, **settings))
    prefix = ours.base_model_prefix
    getattr(hf, prefix).load_state_dict(ours.base_model.state_dict())
    hf.freeze_feature_encoder()
    for module in ours.frozen_backbone_modules():  # same names under the backbone's prefix
        name = next(n for n, m in ours.base_model.named_modules() if m is module)
        getattr(hf, prefix).get_submodule(name).requires_grad_(False)
    return ours, hf


def variants(profile: Profile, batch: dict) -> dict:
    """{"<model_type>/ours" | "<model_type>/hf": one training step (forward + backward, gradients cleared)}."""
    steps = {}
    with tempfile.TemporaryDirectory() as tmp:
        args = FrameAlignedTrainingArguments(output_dir=tmp, report_to=[], use_cpu=True)
        for model_type in BASELINES:
            ours, hf = pair(profile, model_type)
            trainer = FrameAlignedTrainer(model=ours, args=args)  # applies freeze_for_training()
            ours.train(), hf.train()
            hf_inputs = {"input_values": batch["input_values"], "labels": batch["labels"]}  # no padding in the batch

            def step(model, loss):
                def run_step():
                    loss().backward()
                    model.zero_grad(set_to_none=True)

                return run_step

            steps[f"{model_type}/ours"] = step(ours, lambda t=trainer, m=ours: t.compute_loss(m, batch))
            steps[f"{model_type}/hf"] = step(hf, lambda m=hf: m(**hf_inputs).loss)
    return steps


def run(profile: Profile, context: dict) -> dict:
    corpus, batch = real_batch(profile)
    steps = variants(profile, batch)
    flops = {name: count_flops(function) for name, function in steps.items()}
    times = interleaved_times(steps, profile.repetitions, profile.warmup)
    shape = f"{profile.name}: batch {profile.batch_size} × {profile.clip_seconds:g} s ({corpus} clips)"
    results, ratios = [], {}
    for model_type, (_, model_name) in BASELINES.items():
        flop_ratio = flops[f"{model_type}/ours"] / flops[f"{model_type}/hf"]
        ratio = ratio_stats(times[f"{model_type}/ours"], times[f"{model_type}/hf"])
        ratios[model_type] = {"timed": ratio, "flops": flop_ratio}
        results.append(flop_ratio_result(f"backbones: step(ours) / step(HF {model_name})", ratio, flop_ratio, shape))
    return {
        "config": profile.describe() | {"corpus": corpus, "backbones": list(BASELINES)},
        "flops": flops,
        "ratios": ratios,
        "results": results,
    }
