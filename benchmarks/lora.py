"""Benchmark: LoRA (`model.lora`) against full fine-tuning, at the same batch (issue 25).

One training step = forward + backward + AdamW step through `FrameAlignedTrainer` (`compute_loss`,
`create_optimizer`: the per-group learning rates), stage-1 settings (attentive pooling, every transformer layer
trained, CNN frozen), on the profile's backbone (`full`: wav2vec2-base-shaped, random weights) and a batch of real
clips cropped to `clip_seconds`. Variants:

- `full_finetuning`: every transformer layer trains (the paper's stage 1);
- `lora`: the same model in `trainer/lora.py`'s peft wrapper, rank 16, alpha 32, on `q_proj` and `v_proj` of every
  layer (`model.lora: {r: 16, alpha: 32}`): the base frozen, the adapters and the head trained.

Measured side by side in one run: the step time ratio lora / full (interleaved, `benchmarks/common.py`), and memory:

- peak resident memory of a fresh process that builds the variant and trains `MEMORY_STEPS` steps, above the same
  process's resident memory before the model was built (VmHWM: what the machine must have; CPU);
- its parts, counted: weights, gradients and AdamW state (from the trainable parameters), and the activations autograd
  saves for the backward pass (`torch.autograd.graph.saved_tensors_hooks`, bytes of every saved tensor's storage,
  each storage once).
"""

import json
import resource
import statistics
import subprocess
import sys
import tempfile

import torch

from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from modeling.trainer.lora import with_lora

from .common import (
    PROFILES,
    REPO,
    WALL_TIMES,
    Profile,
    interleaved_times,
    ratio_result,
    ratio_stats,
    seconds_stats,
)
from .head_overhead import real_batch


LORA = {"r": 16, "alpha": 32}  # the default target modules: q_proj, v_proj
MEMORY_STEPS = 3
VARIANTS = ("full_finetuning", "lora")


def build(profile: Profile, variant: str):
    """(model, step function) of a variant: the stage-1 model (same seed: same weights), its Trainer's optimizer."""
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(
        profile.backbone_config(pooling="attentive", num_trainable_layers=None)
    )
    if variant == "lora":
        model = with_lora(model, LORA)
    with tempfile.TemporaryDirectory() as tmp:
        args = FrameAlignedTrainingArguments(
            output_dir=tmp, report_to=[], use_cpu=True, learning_rate=1e-4, pooling_learning_rate=5e-4
        )
        trainer = FrameAlignedTrainer(model=model, args=args)  # freeze_for_training(): the CNN
    optimizer = trainer.create_optimizer()
    model.train()
    return model, trainer, optimizer


def training_step(model, trainer, optimizer, batch):
    def step():
        trainer.compute_loss(model, batch).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def counted_bytes(model, trainer, batch) -> dict:
    """Weights, gradients, AdamW state (2 fp32 tensors per trainable parameter) and saved activations, in bytes."""
    parameters = list(model.parameters())
    trainable = [p for p in parameters if p.requires_grad]
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = trainer.compute_loss(model, batch)
    weight_ptrs = {p.untyped_storage().data_ptr() for p in parameters}
    activations = sum(size for ptr, size in storages.items() if ptr not in weight_ptrs)
    del loss
    trainable_bytes = sum(p.numel() * p.element_size() for p in trainable)
    return {
        "parameters": sum(p.numel() for p in parameters),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "weights_bytes": sum(p.numel() * p.element_size() for p in parameters),
        "gradients_bytes": trainable_bytes,
        "adamw_state_bytes": 2 * trainable_bytes,
        "saved_activations_bytes": activations,
    }


def resident_bytes() -> int:
    """This process's resident memory now (Linux: /proc/self/statm, in pages)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def peak_resident_bytes() -> int:
    """This process's resident high-water mark (Linux: VmHWM of /proc/self/status). Not `ru_maxrss`: Linux carries
    that over from the parent through fork and exec, so a child started by a big process reports the parent's peak."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024  # kB


def measure_memory(profile_name: str, variant: str) -> dict:
    """In this (fresh) process: resident memory before the model, then the peak over `MEMORY_STEPS` steps."""
    profile = PROFILES[profile_name]
    _, batch = real_batch(profile)
    before = resident_bytes()
    model, trainer, optimizer = build(profile, variant)
    step = training_step(model, trainer, optimizer, batch)
    for _ in range(MEMORY_STEPS):
        step()
    peak = peak_resident_bytes()
    return {"rss_before_model_bytes": before, "peak_rss_bytes": peak, "peak_rss_above_start_bytes": peak - before}


def memory_in_subprocess(profile: Profile, variant: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.lora", profile.name, variant]
    process = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=1800)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr[-2000:]}")
    return json.loads(process.stdout.strip().splitlines()[-1])


def run(profile: Profile, context: dict) -> dict:
    corpus, batch = real_batch(profile)
    built = {variant: build(profile, variant) for variant in VARIANTS}
    steps = {variant: training_step(*built[variant], batch) for variant in VARIANTS}
    counted = {variant: counted_bytes(built[variant][0], built[variant][1], batch) for variant in VARIANTS}
    times = interleaved_times(steps, profile.repetitions, profile.warmup)
    del built, steps
    # a fresh process per variant (its peak is that variant's); the smoke profile (a harness check) stays in this one
    if profile.name == "smoke":
        memory = {variant: measure_memory(profile.name, variant) for variant in VARIANTS}
    else:
        memory = {variant: memory_in_subprocess(profile, variant) for variant in VARIANTS}
    speed = ratio_stats(times["lora"], times["full_finetuning"])
    peak = {variant: memory[variant]["peak_rss_above_start_bytes"] for variant in VARIANTS}
    parts = {variant: sum(v for k, v in counted[variant].items() if k.endswith("_bytes")) for variant in VARIANTS}
    shape = f"{profile.name}: batch {profile.batch_size} × {profile.clip_seconds:g} s ({corpus} clips), stage 1"
    mib = 2**20
    trainable = {variant: counted[variant]["trainable_parameters"] for variant in VARIANTS}
    note = (
        f"peak RSS above the process's start: full {peak['full_finetuning'] / mib:.0f} MiB, LoRA "
        f"{peak['lora'] / mib:.0f} MiB; trainable parameters: full {trainable['full_finetuning']:,}, LoRA "
        f"{trainable['lora']:,}"
    )
    results = [
        ratio_result(
            "lora: peak memory(LoRA) / peak memory(full fine-tuning)",
            peak["lora"] / max(peak["full_finetuning"], 1),
            1.0,
            "<=",
            note=note,
            config=shape,
        ),
        ratio_result(
            "lora: counted memory(LoRA) / counted memory(full fine-tuning)",
            parts["lora"] / parts["full_finetuning"],
            1.0,
            "<=",
            note="weights + gradients + AdamW state + saved activations",
            config=shape,
        ),
        ratio_result(
            "lora: step time(LoRA) / step time(full fine-tuning)",
            speed["median"],
            1.0,
            "<=",
            note="the frozen base computes no weight gradients (the backward still runs through every layer)",
            noise=(speed["min"], speed["max"]),
            config=shape,
        ),
    ]
    return {
        "config": profile.describe() | {"corpus": corpus, "lora": LORA, "memory_steps": MEMORY_STEPS},
        "step_seconds": {name: seconds_stats(values, WALL_TIMES.get(name)) for name, values in times.items()},
        "step_seconds_median": {name: statistics.median(values) for name, values in times.items()},
        "ratio_lora_over_full": speed,
        "memory": memory,
        "counted": counted,
        "results": results,
    }


if __name__ == "__main__":  # one variant's memory in a fresh process: python -m benchmarks.lora <profile> <variant>
    torch.set_num_threads(1)
    print(json.dumps(measure_memory(sys.argv[1], sys.argv[2])))
