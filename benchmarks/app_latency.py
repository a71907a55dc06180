"""Benchmark: the demo's request latency per CPU backend — PyTorch fp32, ONNX fp32, dynamic int8, static int8.

    python -m benchmarks.app_latency --quick            # a narrower backbone (minutes on 2 CPU cores)
    python -m benchmarks.app_latency                    # wav2vec2-base's shape (random weights)
    python -m benchmarks.app_latency --smoke            # toy model, 3 requests: checks the harness only

One request is what the page's Analyse button runs (`modeling.app.demo.run_request`: read the upload, the pipeline,
the timeline figure, the segments table) on a 5 s clip of real speech (polish3 clips joined), with 2 threads (a free
CPU Space has 2 vCPUs). The backends run interleaved, `--requests` times each (20; 1 warm-up), wall-clock; reported:
p50 and p95 latency, the p50 speed-up over PyTorch fp32. The model has the profile's shape and random weights (speed
does not depend on the weights); static int8 is calibrated on 20 real clips.

Label agreement needs trained weights: on the demo run (`--demo-run`, default runs/demo, when it exists) each best
checkpoint's int8 models are compared with fp32 ONNX on held-out real clips (`modeling.inference.backend_choice`).
Target (issue 26): ≥ 2× PyTorch fp32 at ≥ 97 % label agreement. Results: benchmarks/app_latency.json (+ .md).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.app.demo import DemoModel, run_request
from modeling.audio import load_audio
from modeling.collator import make_feature_extractor
from modeling.inference import load_pipeline
from modeling.inference.backend_choice import backend_choice, default_clips
from modeling.inference.onnx_backend import ensure_onnx
from modeling.inference.onnx_export import quantize_int8_static
from modeling.rundir.atomic import atomic_write_json, atomic_write_text
from modeling.rundir.reader import FinishedRun

from .common import PROFILES, REPO, machine_description


BACKENDS = ("torch", "onnx", "onnx-int8", "onnx-int8-static")
CLIP_SECONDS = 5.0
THREADS = 2
TARGET_SPEEDUP, TARGET_AGREEMENT = 2.0, 0.97


def five_second_clip(path: Path, clips: list[str]) -> Path:
    """Real speech clips joined until `CLIP_SECONDS` (16 kHz mono WAV)."""
    parts, total = [], 0
    for clip in clips:
        audio = load_audio(clip)
        parts.append(audio)
        total += len(audio)
        if total >= CLIP_SECONDS * 16000:
            break
    sf.write(path, np.concatenate(parts)[: int(CLIP_SECONDS * 16000)], 16000, subtype="PCM_16")
    return path


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q, method="linear"))


def latency(checkpoint: Path, clip: Path, requests: int, calibration: list[str]) -> dict:
    """{backend: {"p50_s", "p95_s", "requests", "speedup_p50"}} of `run_request` on `clip`, interleaved."""
    ensure_onnx(checkpoint, int8=True)
    quantize_int8_static(ensure_onnx(checkpoint), calibration)
    models = {b: DemoModel(b, load_pipeline(checkpoint, backend=b, num_threads=THREADS), b) for b in BACKENDS}
    torch.set_num_threads(THREADS)
    times = {b: [] for b in BACKENDS}
    for repetition in range(requests + 1):
        order = BACKENDS[repetition % 4 :] + BACKENDS[: repetition % 4]
        for backend in order:
            start = time.perf_counter()
            label, *_ = run_request(models, str(clip), backend)
            assert label is not None, f"{backend}: the request failed"
            if repetition:  # the first round warms up
                times[backend].append(time.perf_counter() - start)
    torch_p50 = statistics.median(times["torch"])
    return {
        backend: {
            "p50_s": round(percentile(values, 50), 4),
            "p95_s": round(percentile(values, 95), 4),
            "requests": len(values),
            "speedup_p50": round(torch_p50 / percentile(values, 50), 3),
        }
        for backend, values in times.items()
    }


def demo_agreement(run_dir: Path, clips: list[str]) -> dict | None:
    """Per best checkpoint of the demo run (`fold<k>/stage<s>`): int8 agreements with fp32 ONNX on held-out real
    clips and the chosen backend (backend_choice)."""
    checkpoints = FinishedRun(run_dir).all_best_models()
    if not checkpoints:
        return None
    out = {}
    for name, best in checkpoints.items():
        choice = backend_choice(best, clips)
        out[name] = {key: choice[key] for key in ("backend", "agreement", "agreement_clips", "reason")}
    return out


def verdict(latencies: dict, agreement: dict | None) -> str:
    """The target check: the fastest int8 model whose label agreement is ≥ TARGET_AGREEMENT on every demo checkpoint,
    and its p50 speed-up over PyTorch fp32."""
    int8 = ("onnx-int8-static", "onnx-int8")
    if agreement is None:
        best = max(int8, key=lambda b: latencies[b]["speedup_p50"])
        return f"{best}: {latencies[best]['speedup_p50']:.2f}× PyTorch fp32 (p50); agreement not measured"
    worst = {b: min(fold["agreement"][b] for fold in agreement.values()) for b in int8}
    measured = ", ".join(f"{b} {latencies[b]['speedup_p50']:.2f}× at ≥ {worst[b]:.0%}" for b in int8)
    keeping = [b for b in int8 if worst[b] >= TARGET_AGREEMENT]
    target = f"(≥ {TARGET_SPEEDUP:g}× at ≥ {TARGET_AGREEMENT:.0%} label agreement on every demo checkpoint)"
    if not keeping:
        return f"no int8 model keeps the labels ({measured}): target {target} NOT met"
    best = max(keeping, key=lambda b: latencies[b]["speedup_p50"])
    met = latencies[best]["speedup_p50"] >= TARGET_SPEEDUP
    return f"{best} ({measured}): target {target} {'met' if met else 'NOT met'}"


def render(results: dict) -> str:
    lines = [
        f"# Demo request latency ({results['profile']['profile']} profile, {CLIP_SECONDS:g} s clip, "
        f"{THREADS} threads)",
        "",
        "| backend | p50 (s) | p95 (s) | speed-up (p50) vs PyTorch fp32 |",
        "|---|---|---|---|",
    ]
    for backend, row in results["latency"].items():
        lines.append(f"| {backend} | {row['p50_s']:.3f} | {row['p95_s']:.3f} | {row['speedup_p50']:.2f}× |")
    if results["agreement"]:
        lines += ["", "| demo checkpoint | chosen backend | static int8 agreement | dynamic int8 agreement | clips |"]
        lines += ["|---|---|---|---|---|"]
        for fold, row in results["agreement"].items():
            a = row["agreement"]
            lines.append(
                f"| {fold} | {row['backend']} | {a['onnx-int8-static']:.1%} | {a['onnx-int8']:.1%} | "
                f"{row['agreement_clips']} |"
            )
    lines += ["", f"Verdict: {results['verdict']}", "", f"Machine: {results['machine']}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true")
    mode.add_argument("--smoke", action="store_true")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--demo-run", default=str(REPO / "runs" / "demo"))
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "app_latency.json"))
    parser.add_argument(
        "--agreement-only", action="store_true", help="keep --output's latencies, measure the demo run's agreement"
    )
    args = parser.parse_args(argv)
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    requests = 3 if args.smoke else args.requests
    clips = default_clips(40)
    if args.agreement_only:
        results = json.loads(Path(args.output).read_text())
        results["agreement"] = demo_agreement(Path(args.demo_run), clips)
        results["verdict"] = verdict(results["latency"], results["agreement"])
        return write(results, Path(args.output))
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = Path(scratch) / "model"
        torch.manual_seed(0)
        Wav2Vec2ForFrameAlignedClassification(profile.backbone_config()).eval().save_pretrained(checkpoint)
        make_feature_extractor().save_pretrained(checkpoint)
        clip = five_second_clip(Path(scratch) / "clip.wav", clips)
        latencies = latency(checkpoint, clip, requests, clips[0::2])
    agreement = demo_agreement(Path(args.demo_run), clips) if Path(args.demo_run).is_dir() else None
    results = {
        "profile": profile.describe(),
        "clip_seconds": CLIP_SECONDS,
        "threads": THREADS,
        "latency": latencies,
        "agreement": agreement,
        "verdict": verdict(latencies, agreement),
        "machine": machine_description(),
    }
    return write(results, Path(args.output))


def write(results: dict, output: Path) -> int:
    atomic_write_json(output, results)
    atomic_write_text(output.with_suffix(".md"), render(results))
    print(render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
