"""`python -m benchmarks [--quick] [--output benchmarks/results.json]`: run every benchmark, write JSON + Markdown.

Modes: default (full) uses a wav2vec2-base-shaped backbone (768 hidden, 12 layers); `--quick` a narrower, shallower
one (minutes on 2 CPU cores); `--smoke` a toy model with one or two repetitions (seconds; for the tests, its
numbers mean nothing). Every ratio is measured side by side in this one run; see `benchmarks/common.py`.
"""

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

from modeling.rundir.atomic import atomic_write_json, atomic_write_text

from . import (
    backbones,
    cpu_inference,
    data_loading,
    frozen_prefix,
    gpu,
    head_overhead,
    inference,
    lora,
    padding,
    ray_scaling,
    whisper,
)
from .common import PROFILES, machine_description
from .report import render_markdown


# Order matters: data_loading uses the step time measured by head_overhead.
BENCHMARKS = {
    "head_overhead": head_overhead.run,
    "backbones": backbones.run,
    "whisper": whisper.run,
    "padding": padding.run,
    "frozen_prefix": frozen_prefix.run,
    "inference": inference.run,
    "data_loading": data_loading.run,
    "cpu_inference": cpu_inference.run,
    "int8_agreement": cpu_inference.run_int8_agreement_benchmark,
    "gpu": gpu.run,
    "ray_scaling": ray_scaling.run,
    "lora": lora.run,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="smaller backbone: a few minutes on 2 CPU cores")
    mode.add_argument("--smoke", action="store_true", help="toy model, 1-2 repetitions: checks the harness only")
    parser.add_argument("--output", default="benchmarks/results.json", help="JSON path; the .md is written beside it")
    parser.add_argument("--only", default=None, help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument(
        "--demo-run", default="runs/demo", help="cpu_inference: int8 agreement on this trained run (if it exists)"
    )
    parser.add_argument("--device", default="cuda", help="device of the GPU section (skipped without CUDA)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for the CPU benchmarks (1: CPU time is robust "
        "to other jobs on the machine; see benchmarks/common.py)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    selected = list(BENCHMARKS) if args.only is None else [name.strip() for name in args.only.split(",")]
    unknown = sorted(set(selected) - set(BENCHMARKS))
    if unknown:
        print(f"Unknown benchmarks: {unknown}; choose from {list(BENCHMARKS)}", file=sys.stderr)
        return 2

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run_all(args, profile, selected)
    finally:
        torch.set_num_threads(previous_threads)


def run_all(args, profile, selected: list[str]) -> int:
    report = {
        "mode": profile.name,
        "clock": "process CPU time on the CPU (1 torch thread by default), wall time on CUDA",
        "machine": machine_description(),
        "benchmarks": {},
        "summary": [],
    }
    context: dict = {"demo_run": args.demo_run}
    started = time.perf_counter()
    for name in selected:
        print(f"[benchmarks] {name} ({profile.name}) ...", flush=True)
        start = time.perf_counter()
        try:
            kwargs = {"device": args.device} if name == "gpu" else {}
            outcome = BENCHMARKS[name](profile, context, **kwargs)
        except Exception as error:  # one broken benchmark must not lose the others' numbers
            traceback.print_exc()
            outcome = {"status": f"failed: {type(error).__name__}: {error}", "results": []}
        outcome["wall_seconds"] = round(time.perf_counter() - start, 1)
        report["benchmarks"][name] = outcome
        report["summary"].extend(dict(row, benchmark=name) for row in outcome.get("results", []))
        for row in outcome.get("results", []):
            met = {True: "met", False: "MISSED", None: "n/a"}[row["met"]]
            print(
                f"  {row['name']}: {row['measured']} (target {row['target_kind']} {row['target']}) {met}", flush=True
            )
    report["total_wall_seconds"] = round(time.perf_counter() - started, 1)

    output = Path(args.output)
    elapsed = report["total_wall_seconds"]
    report = merge_with_previous(report, output, selected)
    atomic_write_json(output, report)
    atomic_write_text(output.with_suffix(".md"), render_markdown(report))
    print(f"[benchmarks] wrote {output} and {output.with_suffix('.md')} in {elapsed} s")
    return 0


def merge_with_previous(report: dict, output: Path, selected: list[str]) -> dict:
    """With `--only`, keep the other benchmarks' sections of an earlier run of the same mode in `output` (their
    machine description stays at the top; the re-run ones carry their own under "machine")."""
    if set(selected) == set(BENCHMARKS) or not output.is_file():
        return report
    previous = json.loads(output.read_text())
    if previous.get("mode") != report["mode"]:
        return report
    for name in selected:
        report["benchmarks"][name]["machine"] = report["machine"]
    sections = {**previous["benchmarks"], **report["benchmarks"]}
    merged = {**previous, "benchmarks": {name: sections[name] for name in BENCHMARKS if name in sections}}
    merged["summary"] = [
        dict(row, benchmark=name)
        for name, outcome in merged["benchmarks"].items()
        for row in outcome.get("results", [])
    ]
    merged["rerun"] = sorted(set(previous.get("rerun", [])) | set(selected))
    return merged


if __name__ == "__main__":
    sys.exit(main())
