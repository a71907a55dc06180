"""GPU section: base-size (768/12-layer) stage-2 step time, samples/s and peak memory; fp32 vs bf16 autocast,
eager vs SDPA attention. Runs only where CUDA is available; otherwise the results say so (no invented numbers).

One step = forward + backward + AdamW step through `FrameAlignedTrainer.compute_loss` (CE + λ·EAL + λ·FUAL), CNN +
lower 6 layers frozen, batch of real clips cropped to 3 s.
"""

import statistics
import tempfile

import torch

from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor

from . import inference
from .common import PROFILES, pick_clips, time_call


NOT_RUN = "not run: no accelerator lent to this task"
VARIANTS = [("float32", "eager"), ("float32", "sdpa"), ("bfloat16", "eager"), ("bfloat16", "sdpa")]
BATCH_SIZE = 8
CLIP_SECONDS = 3.0


def measure_variant(profile, batch: dict, dtype_name: str, attention: str, device: str, steps: int) -> dict:
    """Median step time, samples/s and peak memory of one (dtype, attention implementation) combination."""
    device_type = torch.device(device).type
    torch.manual_seed(0)
    config = profile.backbone_config()
    config._attn_implementation = attention
    model = Wav2Vec2ForFrameAlignedClassification(config).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        args = FrameAlignedTrainingArguments(output_dir=tmp, report_to=[], use_cpu=device_type != "cuda")
        trainer = FrameAlignedTrainer(model=model, args=args)
    optimizer = trainer.create_optimizer()
    model.train()
    autocast = torch.autocast(device_type, dtype=torch.bfloat16, enabled=dtype_name == "bfloat16")

    def step():
        with autocast:
            loss = trainer.compute_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up (kernels, allocator)
    if device_type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = statistics.median(time_call(step, device) for _ in range(steps))
    return {
        "step_seconds": seconds,
        "samples_per_second": BATCH_SIZE / seconds,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if device_type == "cuda" else None,
        "attn_implementation": model.config._attn_implementation,
    }


def run(profile, context: dict, device: str = "cuda", dry_run: bool = False) -> dict:
    """`dry_run=True` runs the same code on `device` even without CUDA (tests use it on the CPU to keep the path
    working); its numbers are not GPU numbers."""
    device_type = torch.device(device).type
    if not dry_run and (device_type != "cuda" or not torch.cuda.is_available()):
        return {"status": NOT_RUN, "results": []}
    on_cuda = device_type == "cuda"
    steps = 3 if profile.name == "smoke" else 10
    base = PROFILES["full"] if profile.name != "smoke" else profile
    corpus, clips = pick_clips(BATCH_SIZE, min_seconds=CLIP_SECONDS)
    collator = AudioClassificationCollator(make_feature_extractor(), max_length_seconds=CLIP_SECONDS)
    batch = collator([{"audio": c["path"], "label": c["label_id"]} for c in clips])
    batch = {key: value.to(device) for key, value in batch.items()}
    measurements = {
        f"{dtype_name}/{attention}": measure_variant(base, batch, dtype_name, attention, device, steps)
        for dtype_name, attention in VARIANTS
    }
    if on_cuda:
        torch.cuda.empty_cache()
    throughput = {"status": "not run on the CPU dry run", "results": []}
    if on_cuda:  # benchmark 4 again, on the GPU: batching is where a GPU wins
        throughput = inference.run(base, {}, device=device)
    return {
        "inference": throughput,
        "status": "run" if on_cuda else f"dry run on {device} (not GPU numbers)",
        "device": torch.cuda.get_device_name(0) if on_cuda else device,
        "config": base.describe() | {"batch_size": BATCH_SIZE, "clip_seconds": CLIP_SECONDS, "corpus": corpus},
        "measurements": measurements,
        "results": throughput["results"],
    }
