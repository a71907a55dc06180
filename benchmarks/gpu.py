"""GPU section: what one training step of wav2vec2-base costs on a GPU, at the size people train at.

    python -m benchmarks.gpu                 # on a GPU: wav2vec2-base, 32 clips × 8 s per step (docs/gpu.md)
    python -m benchmarks.gpu --dry-run       # the same code at toy size on the CPU (CI runs it; not GPU numbers)

Rows: stage 1 (attentive pooling, CNN frozen, 12 layers train) and stage 2 (CLS attention + EAL + FUAL, the lower 6
layers frozen), each in fp32, bf16 autocast, fp16 autocast with a `GradScaler`, and bf16 + activation checkpointing;
evaluation (forward only, fp32 as the final scoring); building the frozen-prefix cache (fp16 storage). Each row:
ms/step (median), samples/s and audio s/s, peak GiB (CUDA), host syncs per step (a dispatch tracer over one extra
step: reads of device values, boolean indexing).

One step = `FrameAlignedTrainer.compute_loss` (CE + λ·EAL + λ·FUAL) under autocast, backward, AdamW step, as
the Trainer runs it. The clips are real speech, exactly 8 s each (no padding): nEMO clips of 8 s or more when
`../shared/data/nemo4` is there, else consecutive clips of the bundled corpus concatenated to 8 s (the result says
which).
"""

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor

from .common import PROFILES, corpus_rows, time_call


NOT_RUN = "not run: no accelerator lent to this task"
SAMPLING_RATE = 16000
GPU_BATCH, GPU_SECONDS = 32, 8.0  # the size of a real wav2vec2-base SER step
DRY_BATCH, DRY_SECONDS = 2, 1.0
PRECISIONS = ("fp32", "bf16", "fp16", "bf16+checkpointing")
STAGES = {
    "stage1": dict(pooling="attentive", num_trainable_layers=None, eal_weight=0.0, fual_weight=0.0),
    "stage2": dict(pooling="cls_attention", eal_weight=0.05, fual_weight=0.05),  # lower half frozen (profile)
}
SYNCING_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "is_nonzero", "equal"}
SYNCING_METHODS = {"tolist", "numpy", "item", "__bool__", "__float__", "__int__"}


class HostSyncs(TorchDispatchMode):
    """Counts the operations that make the host wait for the device: value reads, data-dependent shapes."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING_OPS:
            self.count += 1
        elif name in ("index", "index_put", "index_put_") and any(
            isinstance(index, torch.Tensor) and index.dtype == torch.bool for index in args[1] or ()
        ):
            self.count += 1
        return func(*args, **(kwargs or {}))


class HostReads(TorchFunctionMode):
    def __init__(self, counter: HostSyncs):
        super().__init__()
        self.counter = counter

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in SYNCING_METHODS:
            self.counter.count += 1
        return func(*args, **(kwargs or {}))


def long_clips(count: int, seconds: float, folder: Path) -> dict:
    """`count` wav files of exactly `seconds` s of real speech in `folder`; {"corpus", "source", "files", "labels"}.

    nEMO clips at least `seconds` long (cut to `seconds`) when there are enough; otherwise consecutive clips of the
    corpus joined end to end and cut (said in "source")."""
    corpus, rows = corpus_rows()
    labels = sorted({row["label"] for row in rows})
    length = int(seconds * SAMPLING_RATE)
    long_enough = [row for row in rows if row["duration_s"] >= seconds]
    joined = len(long_enough) < count
    files, clip_labels, source_rows = [], [], iter(rows * (1 + count * int(seconds) // max(1, len(rows))))
    for index in range(count):
        if not joined:
            parts, label = (
                [soundfile.read(long_enough[index]["path"], dtype="float32")[0]],
                long_enough[index]["label"],
            )
        else:
            parts, label, total = [], None, 0
            while total < length:
                row = next(source_rows)
                audio = soundfile.read(row["path"], dtype="float32")[0]
                parts.append(audio if audio.ndim == 1 else audio.mean(-1))
                label, total = label or row["label"], total + len(parts[-1])
        path = folder / f"clip{index:03d}.wav"
        soundfile.write(path, np.concatenate(parts)[:length], SAMPLING_RATE)
        files.append(str(path))
        clip_labels.append(labels.index(label))
    source = f"{corpus} clips of >= {seconds:g} s, cut to {seconds:g} s"
    if joined:
        source = f"{corpus} clips joined end to end and cut to {seconds:g} s (nEMO absent or too few long clips)"
    return {"corpus": corpus, "source": source, "files": files, "labels": clip_labels, "num_labels": len(labels)}


def make_model(profile, stage: str, num_labels: int, device: str, checkpointing: bool):
    torch.manual_seed(0)
    settings = dict(STAGES[stage], num_labels=num_labels)  # stage 2: the profile's lower half frozen
    model = Wav2Vec2ForFrameAlignedClassification(profile.backbone_config(**settings)).to(device)
    model.freeze_for_training()
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model.train()


def measure_training(profile, stage: str, precision: str, batch: dict, clips: dict, device: str, steps: int) -> dict:
    """ms/step, samples/s, peak GiB and host syncs per step of one (stage, precision) row."""
    device_type = torch.device(device).type
    model = make_model(profile, stage, clips["num_labels"], device, checkpointing="checkpointing" in precision)
    with tempfile.TemporaryDirectory() as tmp:
        args = FrameAlignedTrainingArguments(output_dir=tmp, report_to=[], use_cpu=device_type == "cpu")
        trainer = FrameAlignedTrainer(model=model, args=args)
    trainer.defer_non_finite_check = True  # as on an accelerator: read at logging steps
    optimizer = trainer.create_optimizer()
    dtype = {"fp32": None, "fp16": torch.float16}.get(precision, torch.bfloat16)
    scaler = torch.amp.GradScaler(device_type, enabled=precision == "fp16")

    def step():
        with torch.autocast(device_type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = trainer.compute_loss(model, batch)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: kernels, allocator, optimizer state
    counter = HostSyncs()
    with counter, HostReads(counter):
        step()
    if device_type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = statistics.median(time_call(step, device, clock="wall") for _ in range(steps))
    trainer.loss_terms.pop("train")
    size, audio_s = len(batch["labels"]), batch["input_values"].shape[-1] / SAMPLING_RATE
    return {
        "ms_per_step": round(1000 * seconds, 2),
        "samples_per_second": round(size / seconds, 2),
        "audio_seconds_per_second": round(size * audio_s / seconds, 1),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device_type == "cuda" else None,
        "host_syncs_per_step": counter.count,
    }


def measure_evaluation(profile, batch: dict, clips: dict, device: str, steps: int) -> dict:
    """Forward only, fp32 (as the Trainer's evaluation and the final scoring)."""
    model = make_model(profile, "stage2", clips["num_labels"], device, checkpointing=False).eval()
    inputs = {key: value for key, value in batch.items() if key != "labels"}

    def forward():
        with torch.no_grad():
            model(**inputs)

    forward()
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = statistics.median(time_call(forward, device, clock="wall") for _ in range(steps))
    size = len(batch["labels"])
    return {
        "ms_per_batch": round(1000 * seconds, 2),
        "samples_per_second": round(size / seconds, 2),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
        if torch.device(device).type == "cuda"
        else None,
    }


def measure_prefix_cache(profile, clips: dict, batch_size: int, device: str) -> dict:
    """Building the frozen-prefix cache (CNN + lower 6 layers, fp16 storage, in memory) of the clips once."""
    from datasets import Dataset

    from modeling.prefix_cache.cache import build_prefix_cache

    model = make_model(profile, "stage2", clips["num_labels"], device, checkpointing=False)
    dataset = Dataset.from_dict({"audio": clips["files"], "label": clips["labels"]})
    collator = AudioClassificationCollator(make_feature_extractor())

    def build():
        build_prefix_cache(model, dataset, collator, batch_size=batch_size, dtype=torch.float16, device=device)

    seconds = time_call(build, device, clock="wall")
    return {"seconds": round(seconds, 3), "clips_per_second": round(len(dataset) / seconds, 2)}


def run(profile, context: dict, device: str = "cuda", dry_run: bool = False) -> dict:
    """All rows on `device`. Without CUDA and without `dry_run`: "not run" (no invented numbers). `dry_run`: toy
    size (the `smoke` profile, 2 clips × 1 s) on any device: the code path, not GPU numbers."""
    device_type = torch.device(device).type
    on_cuda = device_type == "cuda" and torch.cuda.is_available()
    if not dry_run and not on_cuda:
        return {"status": NOT_RUN, "results": []}
    base = PROFILES["smoke"] if dry_run else PROFILES["full"]
    count, seconds = (DRY_BATCH, DRY_SECONDS) if dry_run else (GPU_BATCH, GPU_SECONDS)
    steps = 2 if dry_run else 10
    with tempfile.TemporaryDirectory() as folder:
        clips = long_clips(count, seconds, Path(folder))
        collator = AudioClassificationCollator(make_feature_extractor())
        batch = collator([{"audio": path, "label": label} for path, label in zip(clips["files"], clips["labels"])])
        batch = {key: value.to(device) for key, value in batch.items()}
        training = {
            f"{stage}/{precision}": measure_training(base, stage, precision, batch, clips, device, steps)
            for stage in STAGES
            for precision in PRECISIONS
        }
        evaluation = measure_evaluation(base, batch, clips, device, steps)
        prefix_cache = measure_prefix_cache(base, clips, count, device)
    return {
        "status": "run" if on_cuda and not dry_run else f"dry run on {device} at toy size (not GPU numbers)",
        "device": torch.cuda.get_device_name(0) if on_cuda else device,
        "config": base.describe() | {"batch_size": count, "clip_seconds": seconds},
        "clips": clips["source"],
        "training": training,
        "evaluation": evaluation,
        "prefix_cache": prefix_cache,
        "results": [],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="toy size, any device (CI runs it on the CPU)")
    parser.add_argument("--device", default="cuda", help="default cuda (the dry run: cpu)")
    parser.add_argument("--output", help="write the JSON here (default: print it)")
    args = parser.parse_args(argv)
    device = "cpu" if args.dry_run and args.device == "cuda" and not torch.cuda.is_available() else args.device
    result = run(None, {}, device=device, dry_run=args.dry_run)
    text = json.dumps(result, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
