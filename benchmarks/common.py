"""Shared pieces of the benchmarks: model shapes, real clips, interleaved timing, FLOP counting, result records.

Timing on a shared CPU is noisy (other processes run beside us). Three defences:

- every comparison is a *ratio of two variants measured side by side*: the variants alternate within each
  repetition (their order rotating), one ratio per repetition; the reported value is the median ratio, with the
  min–max of the per-repetition ratios as the noise band;
- on the CPU, torch runs one intra-op thread (`python -m benchmarks --threads 1`, the default) and a call is timed
  by the *CPU time* of the process (`time.process_time`): time spent descheduled while other jobs run is not
  counted. Wall-clock times are recorded beside it;
- on CUDA, wall-clock time between `torch.cuda.synchronize()` calls.
"""

import csv
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
NEMO4 = SHARED_DATA / "nemo4"
POLISH3 = next(
    (path for path in (REPO / "data" / "polish3", SHARED_DATA / "polish3") if (path / "metadata.csv").exists()), None
)


# ------------------------------------------------------------------------------------------------------------------
# Sizes: which model shape and how many repetitions each mode uses
# ------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """How big and how long: `full` is wav2vec2-base; `quick` a narrower, shallower copy; `smoke` a toy (tests)."""

    name: str
    backbone: dict  # Wav2Vec2Config overrides (empty = wav2vec2-base)
    batch_size: int
    clip_seconds: float
    repetitions: int
    warmup: int
    epoch_clips: int  # clips per "epoch" in the frozen-prefix benchmark
    inference_clips: int
    loading_clips: int
    padding_epochs: int = 10

    def describe(self) -> dict:
        config = self.backbone_config()
        return {
            "profile": self.name,
            "hidden_size": config.hidden_size,
            "num_hidden_layers": config.num_hidden_layers,
            "num_attention_heads": config.num_attention_heads,
            "intermediate_size": config.intermediate_size,
            "conv_dim": list(config.conv_dim),
            "feat_extract_norm": config.feat_extract_norm,
            "batch_size": self.batch_size,
            "clip_seconds": self.clip_seconds,
            "repetitions": self.repetitions,
        }

    def backbone_config(self, **overrides):
        """A `Wav2Vec2FrameAlignedConfig` with this profile's backbone, stage-2 head, deterministic frozen part."""
        from modeling import Wav2Vec2FrameAlignedConfig

        settings = dict(
            pooling="cls_attention",
            num_labels=4,
            layerdrop=0.0,  # LayerDrop makes step times random (skipped layers)
            mask_time_prob=0.0,
        )
        settings.update(self.backbone)
        settings.setdefault("num_trainable_layers", settings.get("num_hidden_layers", 12) // 2)
        settings.update(overrides)
        return Wav2Vec2FrameAlignedConfig(**settings)


# A backbone small enough for a few CPU epochs of the training benchmarks (imbalance, flea_stage0): 320 samples
# (20 ms) per frame, as the base-size backbones; 2 transformer layers (a benchmark needing more overrides it).
SMALL_CPU_BACKBONE = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    conv_dim=(32, 32, 32),
    conv_kernel=(10, 8, 8),
    conv_stride=(5, 8, 8),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
    mask_time_prob=0.0,
    layerdrop=0.0,
)
PROFILES = {
    "full": Profile(
        "full",
        {},
        batch_size=4,
        clip_seconds=3.0,
        repetitions=9,
        warmup=1,
        epoch_clips=16,
        inference_clips=24,
        loading_clips=96,
    ),
    "quick": Profile(
        "quick",
        dict(
            hidden_size=256,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=1024,
            conv_dim=(128,) * 7,
            num_conv_pos_embedding_groups=8,
        ),
        batch_size=4,
        clip_seconds=3.0,
        repetitions=11,
        warmup=1,
        epoch_clips=16,
        inference_clips=48,
        loading_clips=64,
    ),
    "smoke": Profile(
        "smoke",
        dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(16,) * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
        ),
        batch_size=2,
        clip_seconds=1.0,
        repetitions=2,
        warmup=0,
        epoch_clips=4,
        inference_clips=4,
        loading_clips=4,
        padding_epochs=2,
    ),
}


# ------------------------------------------------------------------------------------------------------------------
# Real clips
# ------------------------------------------------------------------------------------------------------------------


def corpus_rows(prefer: str = "nemo4") -> tuple[str, list[dict]]:
    """(corpus name, metadata rows with an absolute `path`); nemo4 when present, else polish3."""
    for name, root in (("nemo4", NEMO4), ("polish3", POLISH3)) if prefer == "nemo4" else (("polish3", POLISH3),):
        if root is not None and (root / "metadata.csv").exists():
            with open(root / "metadata.csv") as f:
                rows = list(csv.DictReader(f))
            for row in rows:
                row["path"] = str(root / row["file"])
                row["duration_s"] = float(row["duration_s"])
            return name, rows
    raise FileNotFoundError("No corpus found under ../shared/data (nemo4 or polish3).")


def pick_clips(count: int, min_seconds: float = 0.0, seed: int = 0) -> tuple[str, list[dict]]:
    """`count` clips (at least `min_seconds` long when possible), spread over the corpus, reproducibly."""
    corpus, rows = corpus_rows()
    long_enough = [row for row in rows if row["duration_s"] >= min_seconds] or rows
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(long_enough), size=min(count, len(long_enough)), replace=False)
    labels = sorted({row["label"] for row in rows})
    clips = [dict(long_enough[i], label_id=labels.index(long_enough[i]["label"])) for i in sorted(picked)]
    return corpus, clips


# ------------------------------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------------------------------


def synchronize(device: torch.device | str = "cpu"):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def clock_for(device="cpu") -> str:
    """ "cpu" (process CPU time) on the CPU, "wall" on accelerators (their work is not CPU time)."""
    return "cpu" if torch.device(device).type == "cpu" else "wall"


def time_call(function: Callable[[], object], device="cpu", clock: str | None = None) -> float:
    """Seconds one call takes: process CPU time (`clock="cpu"`) or wall-clock time (`"wall"`)."""
    clock = clock or clock_for(device)
    now = time.process_time if clock == "cpu" else time.perf_counter
    synchronize(device)
    start = now()
    function()
    synchronize(device)
    return now() - start


WALL_TIMES: dict[str, list[float]] = {}  # wall-clock seconds of the last `interleaved_times` call, for the record


def interleaved_times(
    variants: dict[str, Callable[[], object]], repetitions: int, warmup: int = 1, device="cpu"
) -> dict[str, list[float]]:
    """Seconds per call of each variant (see `time_call`); within a repetition every variant runs once, the order
    rotating. Wall-clock seconds of the same calls are left in `WALL_TIMES`."""
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    times = {name: [] for name in names}
    WALL_TIMES.clear()
    WALL_TIMES.update({name: [] for name in names})
    for repetition in range(repetitions):
        shift = repetition % len(names)
        for name in names[shift:] + names[:shift]:
            wall_start = time.perf_counter()
            times[name].append(time_call(variants[name], device))
            WALL_TIMES[name].append(time.perf_counter() - wall_start)
    return times


def ratio_stats(numerator: list[float], denominator: list[float]) -> dict:
    """Median of the per-repetition ratios (measured side by side) and their spread."""
    ratios = [a / b for a, b in zip(numerator, denominator)]
    return {
        "median": statistics.median(ratios),
        "min": min(ratios),
        "max": max(ratios),
        "per_repetition": [round(r, 4) for r in ratios],
    }


def seconds_stats(times: list[float], wall: list[float] | None = None) -> dict:
    stats = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times)}
    if wall:
        stats["wall_median_s"] = statistics.median(wall)
    return stats


def _cpu_flash_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_flash_attention_backward_flops(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# FlopCounterMode knows the CUDA attention kernels but not the fused CPU one, which SDPA picks on the CPU when the
# attention has no dropout (the pooling layer; the backbone's attention_dropout=0.1 makes training take the math
# path, plain bmm, which is counted): without these entries the pooling layer's attention counted 0 FLOPs.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_attention_backward_flops,
}


def count_flops(function: Callable[[], object]) -> int:
    """FLOPs of one call, counted by `torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions and attention,
    the fused CPU attention kernel with torch's formulas for the CUDA ones; element-wise ops, norms and softmax are
    not counted)."""
    counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS)
    with counter:
        function()
    return int(counter.get_total_flops())


# ------------------------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------------------------


def flop_ratio_result(name: str, ratio: dict, flop_ratio: float, config: str) -> dict:
    """A row comparing two timed steps (`ratio_stats`) with the ratio of their FLOPs: met when the timed ratio is at
    most the FLOP ratio + 0.02."""
    return ratio_result(
        name,
        ratio["median"],
        flop_ratio + 0.02,
        "<=",
        reference=flop_ratio,
        note=f"target = FLOP ratio {flop_ratio:.4f} (FlopCounterMode, fwd+bwd) + 0.02",
        noise=(ratio["min"], ratio["max"]),
        config=config,
    )


def ratio_result(
    name: str,
    measured: float | None,
    target: float | None,
    kind: str,
    note: str = "",
    noise: tuple[float, float] | None = None,
    reference: float | None = None,
    config: str = "",
) -> dict:
    """One row of the results table. `kind`: "<=" / ">=" (measured vs target) or "within" (|measured/reference − 1|
    ≤ target)."""
    if measured is None:
        met = None
    elif kind == "<=":
        met = measured <= target
    elif kind == ">=":
        met = measured >= target
    elif kind == "within":
        met = abs(measured / reference - 1.0) <= target
    else:
        raise ValueError(kind)
    return {
        "name": name,
        "measured": None if measured is None else round(float(measured), 4),
        "target": target if target is None else round(float(target), 4),
        "target_kind": kind,
        "reference": None if reference is None else round(float(reference), 4),
        "met": met,
        "noise": None if noise is None else [round(float(noise[0]), 4), round(float(noise[1]), 4)],
        "config": config,
        "note": note,
    }


def machine_description() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "cpu": cpu,
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": None if load is None else [round(x, 2) for x in load],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "platform": platform.platform(),
        "cuda_available": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
