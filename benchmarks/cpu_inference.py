"""Benchmark 7: inference at scale on CPUs — the peer pipeline, ours in PyTorch, ONNX Runtime fp32 and int8.

A stage-2 model of the profile's shape (random weights; full mode: wav2vec2-base) is saved, exported to ONNX
(`modeling.inference.onnx_export`) and quantised to dynamic int8 (MatMul/Gemm). Variants, each over the same real
clips one by one (batching does not help on a CPU, see benchmark 4), timed interleaved in process CPU time:

- `peer`: transformers' `pipeline("audio-classification")` with `Wav2Vec2ForSequenceClassification` (same backbone
  weights; mean pooling + projector + classifier);
- `ours_torch`: `FrameAlignedEmotionPipeline` (PyTorch fp32), with its timeline post-processing;
- `ours_onnx`: the same pipeline on ONNX Runtime fp32 (`backend="onnx"`), `ours_int8`: ONNX Runtime dynamic int8.

Reported: audio seconds per CPU second (= per core) and per wall second; achieved FLOP/s (FlopCounterMode's count of
each model's forward, ONNX variants credited with the fp32 model's FLOPs) as a fraction of this CPU's measured
dense-matmul peak (fp32 `torch.mm`, same thread count); peak resident memory of each variant in a fresh process;
label agreement int8 vs fp32; a profile split of ours (CNN / transformer / head / I/O). Targets (issue #16): ours ≥
peer ÷ (our FLOPs / peer FLOPs) − 0.02; ONNX fp32 ≥ 1.2× ours; int8 ≥ 2× ours at ≥ 97 % label agreement. The int8
agreement that matters is on trained weights: measured on the demo run's checkpoints (`--demo-run`, default
runs/demo) over all bundled clips when that run exists.
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from transformers import pipeline
from transformers.utils import logging as hf_logging

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.audio import load_audio
from modeling.collator import make_feature_extractor
from modeling.prediction_fields import PREDICTED, probabilities_of

from .common import (
    POLISH3,
    REPO,
    WALL_TIMES,
    Profile,
    count_flops,
    interleaved_times,
    pick_clips,
    ratio_result,
    ratio_stats,
    seconds_stats,
    time_call,
)
from .head_overhead import hf_baseline


VARIANTS = ("peer", "ours_torch", "ours_onnx", "ours_int8")
BACKEND_OF = {"ours_torch": "torch", "ours_onnx": "onnx", "ours_int8": "onnx-int8"}


def matmul_peak_flops(size: int, repetitions: int = 5) -> float:
    """This CPU's dense fp32 matmul rate at torch's current thread count: the best of `repetitions` (size × size) @
    (size × size) products, 2·size³ FLOPs each, over process CPU time (so: FLOP/s per core-second used)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(time_call(lambda: torch.mm(a, b)) for _ in range(repetitions))
    return 2 * size**3 / best


def build(profile: Profile, folder: Path, labels: list[str]) -> dict:
    """Save our model and the peer (same backbone weights) under `folder`; export ONNX fp32 + int8 next to ours."""
    from modeling.inference.onnx_export import export_model, quantize_int8

    config = profile.backbone_config(
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)}
    )
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(config).eval()
    peer = hf_baseline(model).eval()
    peer.config.id2label, peer.config.label2id = dict(config.id2label), dict(config.label2id)
    extractor = make_feature_extractor()
    for name, module in (("ours", model), ("peer", peer)):
        module.save_pretrained(folder / name)
        extractor.save_pretrained(folder / name)
    started = time.perf_counter()
    fp32 = export_model(model, folder / "ours" / "onnx" / "model.onnx")
    int8 = quantize_int8(fp32)
    return {
        "model": model,
        "peer": peer,
        "ours_dir": folder / "ours",
        "peer_dir": folder / "peer",
        "export_seconds": round(time.perf_counter() - started, 1),
        "onnx_mib": {"fp32": fp32.stat().st_size / 2**20, "int8": int8.stat().st_size / 2**20},
    }


def make_runner(variant: str, ours_dir, peer_dir, threads: int):
    """A callable: one input dict {"raw", "sampling_rate"} → (label, {label: score})."""
    from modeling.inference import load_pipeline

    if variant == "peer":
        classifier = pipeline("audio-classification", model=str(peer_dir), feature_extractor=make_feature_extractor())

        def run_peer(item):
            scores = classifier(dict(item), top_k=None)
            return scores[0]["label"], {entry["label"]: entry["score"] for entry in scores}

        return run_peer
    pipe = load_pipeline(ours_dir, backend=BACKEND_OF[variant], num_threads=threads)

    def run_ours(item):
        result = pipe(item["raw"], sampling_rate=item["sampling_rate"])
        return result[PREDICTED], probabilities_of(result)

    return run_ours


def _forward_flops(model, arrays: list[np.ndarray]) -> int:
    with torch.no_grad():
        return sum(count_flops(lambda a=a: model(torch.from_numpy(a)[None])) for a in arrays)


@torch.no_grad()
def profile_split(model, paths: list[str], repetitions: int) -> dict:
    """CPU seconds of ours, part by part, over the clips: I/O (decode + resample from the file, feature extraction),
    CNN (feature encoder), transformer (projection + encoder), head (pooling + classifier, utterance and frames)."""
    extractor = make_feature_extractor()
    parts = {"io": 0.0, "cnn": 0.0, "transformer": 0.0, "head": 0.0}
    for _ in range(repetitions):
        for path in paths:
            holder = {}
            parts["io"] += time_call(
                lambda: holder.update(
                    x=extractor(load_audio(path), sampling_rate=16_000, return_tensors="pt")["input_values"]
                )
            )
            parts["cnn"] += time_call(lambda: holder.update(f=model.wav2vec2.feature_extractor(holder["x"])))

            def transformer():
                features = holder["f"].transpose(1, 2)
                hidden, _ = model.wav2vec2.feature_projection(features)
                holder["h"] = model.wav2vec2.encoder(hidden).last_hidden_state

            parts["transformer"] += time_call(transformer)
            mask = torch.ones(holder["h"].shape[:2], dtype=torch.bool)
            parts["head"] += time_call(lambda: model.classify_frames(holder["h"], mask))
    total = sum(parts.values())
    return {name: {"seconds": seconds / repetitions, "share": seconds / total} for name, seconds in parts.items()}


def peak_memory(variant: str, ours_dir, peer_dir, threads: int, paths: list[str]) -> dict | None:
    """Memory of a fresh process that loads `variant` and runs it over the clips (None on failure), in MiB:
    `after_imports` (torch, transformers, onnxruntime, modeling imported) and `peak` (its resident set sampled every
    2 ms while the model loads and runs). Not ru_maxrss: on Linux a child keeps its parent's high-water mark across
    fork + exec, so it reported the benchmark process's own 3.2 GB for every variant."""
    command = [sys.executable, "-m", "benchmarks.cpu_inference", variant, str(ours_dir), str(peer_dir), str(threads)]
    process = subprocess.run(command + paths, cwd=REPO, capture_output=True, text=True, timeout=1800)
    if process.returncode != 0:
        print(process.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(process.stdout.strip().splitlines()[-1])


def _memory_main(argv: list[str]) -> int:
    """`python -m benchmarks.cpu_inference VARIANT OURS_DIR PEER_DIR THREADS CLIP...`: print `peak_memory`'s dict."""
    import threading

    import onnxruntime  # noqa: F401  (imported before the baseline is taken, like the other libraries)
    import psutil

    import modeling.inference  # noqa: F401

    variant, ours_dir, peer_dir, threads, *paths = argv
    torch.set_num_threads(int(threads))
    hf_logging.set_verbosity_error()
    me, stop, peak = psutil.Process(), threading.Event(), [0]
    after_imports = me.memory_info().rss

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], me.memory_info().rss)
            stop.wait(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    runner = make_runner(variant, ours_dir, peer_dir, int(threads))
    for path in paths:
        runner({"raw": load_audio(path), "sampling_rate": 16_000})
    stop.set()
    sampler.join()
    mib = 2**20
    print(json.dumps({"after_imports": after_imports / mib, "peak": peak[0] / mib}))
    return 0


@contextlib.contextmanager
def quiet_transformers_logs():
    """The pipeline logs that a custom model type is "not supported" for audio-classification (it works): hush it."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)


def label_agreement(a: list, b: list) -> float:
    """Share of inputs whose top label is the same in two lists of (label, scores) results."""
    return float(np.mean([x[0] == y[0] for x, y in zip(a, b)])) if a else float("nan")


def int8_agreement_on_run(run_dir: Path, threads: int) -> dict | None:
    """Label agreement int8 vs fp32 (ONNX Runtime) of every fold's stage-2 checkpoint of a finished run (e.g. `make
    demo`'s runs/demo) over all bundled polish3 clips; None when the run has no checkpoint."""
    from modeling.inference.agreement import run_int8_agreement

    if POLISH3 is None:
        return None
    paths = sorted(str(path) for path in (POLISH3 / "audio").iterdir())
    result = run_int8_agreement(run_dir, paths, threads)
    if result is not None:
        for fold in result["folds"].values():
            fold["disagreements"] = [[os.path.basename(path), a, b] for path, a, b in fold["disagreements"]]
    return result


def throughput(times: dict, wall: dict, audio_seconds: float, flops: dict, peak: float) -> dict:
    """Per variant: audio seconds per CPU second (per core) and per wall second, FLOP/s and its share of the peak."""
    out = {}
    for variant, seconds in times.items():
        cpu, wall_s = float(np.median(seconds)), float(np.median(wall[variant]))
        flop_rate = flops[variant] / cpu
        out[variant] = {
            "audio_s_per_cpu_s": audio_seconds / cpu,
            "audio_s_per_wall_s": audio_seconds / wall_s,
            "cpu_seconds": seconds_stats(seconds, wall[variant]),
            "flops": flops[variant],
            "flop_per_s": flop_rate,
            "fraction_of_matmul_peak": flop_rate / peak,
        }
    return out


def _rows(details: dict, config_text: str) -> list[dict]:
    t, ratios, split = details["throughput"], details["ratios"], details["profile_split_ours_torch"]
    flop_ratio = details["flop_ratio_ours_over_peer"]
    split_text = ", ".join(f"{name} {100 * part['share']:.0f} %" for name, part in split.items())
    agreement = details["label_agreement"]["int8_vs_onnx_fp32"]

    memory = details.get("memory_mib") or {}

    def note(variant):
        peak = (memory.get(variant) or {}).get("peak")
        return (
            f"{t[variant]['audio_s_per_cpu_s']:.2f} audio s per core-s, "
            f"{100 * t[variant]['fraction_of_matmul_peak']:.0f} % of the fp32 matmul peak"
            + ("" if peak is None else f", peak RSS {peak:.0f} MiB")
        )

    rows = [
        ratio_result(
            "CPU inference: ours PyTorch fp32 / peer audio-classification pipeline (audio s per core-s)",
            ratios["ours_torch/peer"]["median"],
            1 / flop_ratio - 0.02,
            ">=",
            note=f"ours {note('ours_torch')}; peer {note('peer')}; FLOP ratio {flop_ratio:.3f}",
            noise=(ratios["ours_torch/peer"]["min"], ratios["ours_torch/peer"]["max"]),
            config=config_text,
        ),
        ratio_result(
            "CPU inference: ONNX Runtime fp32 / ours PyTorch",
            ratios["ours_onnx/ours_torch"]["median"],
            1.2,
            ">=",
            note=f"{note('ours_onnx')}; split of ours: {split_text}",
            noise=(ratios["ours_onnx/ours_torch"]["min"], ratios["ours_onnx/ours_torch"]["max"]),
            config=config_text,
        ),
        ratio_result(
            "CPU inference: ONNX Runtime int8 / ours PyTorch",
            ratios["ours_int8/ours_torch"]["median"],
            2.0,
            ">=",
            note=f"{note('ours_int8')}; label agreement with fp32 {100 * agreement:.1f} % "
            f"(random weights); split of ours: {split_text}",
            noise=(ratios["ours_int8/ours_torch"]["min"], ratios["ours_int8/ours_torch"]["max"]),
            config=config_text,
        ),
    ]
    return rows


def measure(profile: Profile, built: dict, items: list, paths: list[str], threads: int) -> dict:
    """Time the four variants interleaved; FLOPs, agreement, the profile split and (not in smoke mode) memory."""
    runners = {v: make_runner(v, built["ours_dir"], built["peer_dir"], threads) for v in VARIANTS}
    outputs = {}

    def run_all(variant):
        return lambda: outputs.__setitem__(variant, [runners[variant](item) for item in items])

    repetitions = max(1, profile.repetitions // 3)
    times = interleaved_times({v: run_all(v) for v in VARIANTS}, repetitions, warmup=profile.warmup)
    wall = dict(WALL_TIMES)
    arrays = [item["raw"] for item in items]
    ours_flops, peer_flops = _forward_flops(built["model"], arrays), _forward_flops(built["peer"], arrays)
    flops = {"peer": peer_flops, **{v: ours_flops for v in BACKEND_OF}}
    peak = matmul_peak_flops(256 if profile.name == "smoke" else 1024)
    audio_seconds = sum(len(a) for a in arrays) / 16_000
    details = {
        "threads": threads,
        "clips": len(items),
        "audio_seconds": audio_seconds,
        "repetitions": repetitions,
        "matmul_peak_flop_per_s": peak,
        "flop_ratio_ours_over_peer": ours_flops / peer_flops,
        "throughput": throughput(times, wall, audio_seconds, flops, peak),
        "ratios": {
            "ours_torch/peer": ratio_stats(times["peer"], times["ours_torch"]),
            "ours_onnx/ours_torch": ratio_stats(times["ours_torch"], times["ours_onnx"]),
            "ours_int8/ours_torch": ratio_stats(times["ours_torch"], times["ours_int8"]),
            "ours_int8/ours_onnx": ratio_stats(times["ours_onnx"], times["ours_int8"]),
        },
        "label_agreement": {
            "onnx_fp32_vs_torch": label_agreement(outputs["ours_onnx"], outputs["ours_torch"]),
            "int8_vs_onnx_fp32": label_agreement(outputs["ours_int8"], outputs["ours_onnx"]),
        },
        "max_score_difference_onnx_fp32_vs_torch": max(
            abs(a[1][k] - b[1][k]) for a, b in zip(outputs["ours_onnx"], outputs["ours_torch"]) for k in a[1]
        ),
        "profile_split_ours_torch": profile_split(built["model"], paths, 1),
    }
    if profile.name != "smoke":
        details["memory_mib"] = {
            v: peak_memory(v, built["ours_dir"], built["peer_dir"], threads, paths) for v in VARIANTS
        }
    return details


def run(profile: Profile, context: dict) -> dict:
    threads = torch.get_num_threads()
    corpus, clips = pick_clips(max(2, profile.inference_clips // 3), min_seconds=profile.clip_seconds, seed=3)
    labels = sorted({clip["label"] for clip in clips}) if len({c["label"] for c in clips}) >= 2 else ["a", "b"]
    paths = [clip["path"] for clip in clips]
    items = [{"raw": load_audio(path), "sampling_rate": 16_000} for path in paths]
    seconds = [len(item["raw"]) / 16_000 for item in items]
    config_text = (
        f"{profile.name}: {len(items)} {corpus} clips ({min(seconds):.1f}–{max(seconds):.1f} s), one by one, "
        f"{threads} thread(s), random weights"
    )
    with quiet_transformers_logs(), tempfile.TemporaryDirectory() as folder:
        built = build(profile, Path(folder), labels)
        details = measure(profile, built, items, paths, threads)
        details.update(export_seconds=built["export_seconds"], onnx_mib=built["onnx_mib"])
    return {"config": profile.describe() | {"corpus": corpus}, **details, "results": _rows(details, config_text)}


def run_int8_agreement_benchmark(profile: Profile, context: dict) -> dict:
    """Benchmark 8: int8 vs fp32 label agreement on a trained run's checkpoints (`--demo-run`, default runs/demo,
    made by `make demo`) over all bundled clips. Not run in smoke mode or when that run does not exist."""
    demo_run = context.get("demo_run")
    if profile.name == "smoke" or not demo_run or not Path(demo_run).is_dir():
        return {"status": f"not run: no trained run at {demo_run} (make demo), or smoke mode", "results": []}
    with quiet_transformers_logs():
        demo = int8_agreement_on_run(Path(demo_run), torch.get_num_threads())
    if demo is None:
        return {"status": f"not run: {demo_run} has no fold*/stage*/best checkpoint", "results": []}
    return {**demo, "results": [agreement_row(demo)]}


def agreement_row(demo: dict) -> dict:
    folds = ", ".join(f"{name} {100 * fold['agreement']:.1f} %" for name, fold in demo["folds"].items())
    clips = next(iter(demo["folds"].values()))["clips"]
    return ratio_result(
        "int8 label agreement with fp32 (ONNX Runtime), trained checkpoints, all bundled clips",
        demo["agreement"],
        0.97,
        ">=",
        note=folds,
        config=f"{demo['run']}: {len(demo['folds'])} checkpoint(s) × {clips} polish3 clips",
    )


if __name__ == "__main__":
    sys.exit(_memory_main(sys.argv[1:]))
