"""Benchmark: Whisper's encoder on each clip's own frames (ours) vs transformers' `WhisperForAudioClassification`,
which pads every clip to 30 s (3000 mel frames → 1500 encoder frames).

A Whisper-base-shaped encoder (openai/whisper-base's config: d_model 512, 6 layers, 8 heads, feed-forward 2048,
80 mel bins; random weights: no Hub access) with the same weights in both; inference (eval, no gradient) on a batch
of 4 s real clips. Ours takes the waveforms and computes the log-mel inside the model (its cost is counted); theirs
takes `WhisperFeatureExtractor`'s 30 s features, computed once outside the timing (their cost is not counted: the
comparison favours transformers). Reported side by side in this one run: the FLOP ratio (`FlopCounterMode`) and the
measured time ratio, HF / ours. Target: ≥ 5× faster (30 s / 4 s = 7.5× fewer encoder frames, minus the head's and the
log-mel's share). `--smoke`: a tiny encoder (numbers meaningless).
"""

import numpy as np
import torch
import transformers

from modeling import WhisperFrameAlignedConfig, load_audio
from modeling.auto_frame_aligned import FRAME_ALIGNED_MODELS
from modeling.collator import make_feature_extractor

from .common import Profile, count_flops, interleaved_times, pick_clips, ratio_result, ratio_stats


CLIP_SECONDS = 4.0
TARGET_SPEEDUP = 5.0
# openai/whisper-base's encoder (config.json on the Hub); the decoder is irrelevant to both models here.
WHISPER_BASE = dict(d_model=512, encoder_layers=6, encoder_attention_heads=8, encoder_ffn_dim=2048, num_mel_bins=80)
WHISPER_SMOKE = dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, num_mel_bins=80)


def whisper_pair(profile: Profile):
    """(ours with a stage-2 `cls_attention` head, transformers' WhisperForAudioClassification), same encoder."""
    shape = WHISPER_SMOKE if profile.name == "smoke" else WHISPER_BASE
    settings = dict(shape, num_labels=4)  # the decoder's fields are unused: neither model builds a decoder
    torch.manual_seed(0)
    ours = FRAME_ALIGNED_MODELS[WhisperFrameAlignedConfig.model_type](
        WhisperFrameAlignedConfig(pooling="cls_attention", **settings)
    )
    hf = transformers.WhisperForAudioClassification(transformers.WhisperConfig(**settings))
    hf.encoder.load_state_dict(ours.model.encoder.state_dict())
    return ours.eval(), hf.eval()


def clip_batch(profile: Profile) -> tuple[str, list[np.ndarray]]:
    """`profile.batch_size` real clips of at least 4 s, cut to 4 s."""
    corpus, rows = pick_clips(profile.batch_size, min_seconds=CLIP_SECONDS)
    samples = int(CLIP_SECONDS * 16_000)
    clips = [load_audio(row["path"])[:samples] for row in rows]
    return corpus, [np.pad(clip, (0, samples - len(clip))) for clip in clips]  # a shorter clip: zeros to 4 s


def run(profile: Profile, context: dict) -> dict:
    corpus, clips = clip_batch(profile)
    ours, hf = whisper_pair(profile)
    ours_inputs = make_feature_extractor(ours.config)(clips, sampling_rate=16_000, return_tensors="pt")
    hf_inputs = transformers.WhisperFeatureExtractor(feature_size=80)(clips, sampling_rate=16_000, return_tensors="pt")

    def forward(model, inputs):
        def call():
            with torch.no_grad():
                model(**inputs)

        return call

    variants = {"whisper/ours": forward(ours, dict(ours_inputs)), "whisper/hf": forward(hf, dict(hf_inputs))}
    flops = {name: count_flops(call) for name, call in variants.items()}
    times = interleaved_times(variants, profile.repetitions, profile.warmup)
    speedup = ratio_stats(times["whisper/hf"], times["whisper/ours"])
    flop_ratio = flops["whisper/hf"] / flops["whisper/ours"]
    shape = "smoke" if profile.name == "smoke" else "whisper-base encoder (512 × 6 layers)"
    config = f"{shape}: batch {len(clips)} × {CLIP_SECONDS:g} s ({corpus} clips), inference"
    result = ratio_result(
        "whisper: time(HF WhisperForAudioClassification, 30 s padding) / time(ours, clip's own frames)",
        speedup["median"],
        TARGET_SPEEDUP,
        ">=",
        reference=flop_ratio,
        note=f"FLOP ratio HF / ours {flop_ratio:.2f} (FlopCounterMode, forward); ours includes its log-mel, HF's "
        "feature extraction is not timed",
        noise=(speedup["min"], speedup["max"]),
        config=config,
    )
    return {
        "config": {"profile": profile.name, **WHISPER_BASE, "batch_size": len(clips), "clip_seconds": CLIP_SECONDS}
        | ({"shape": "smoke"} if profile.name == "smoke" else {}),
        "flops": flops,
        "ratios": {"timed_speedup": speedup, "flop_ratio": flop_ratio},
        "results": [result],
    }
