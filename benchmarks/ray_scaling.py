"""Benchmark 9: scaling out — `predict.py`'s local engine vs the Ray engine with 1 and 2 actors, side by side.

A stage-2 model of the profile's shape (random weights; full mode: wav2vec2-base) labels the same real clips (nEMO
when ../shared has it, else polish3) with, in this order: the local engine (`batch.predict_files`, 1 torch thread),
the Ray engine with 1 actor and with 2 actors (`ray_engine.predict_files_on_ray`, 1 thread per actor, 16 files per
block) on a local Ray of 2 CPUs started beforehand (a cluster is up before a job; its start is not counted). Then
the local engine and the Ray engine with 1 actor on one 0.1 s clip: their fixed costs (model loads, actor start).

Clocks: wall-clock seconds of each job, and the CPU seconds of every process involved (this process and all its
descendants: Ray's raylet, GCS and workers; `TreeCpuMeter` samples them every 0.2 s so that workers that exit are
counted too). "Audio seconds per core-second" = audio seconds ÷ those CPU seconds: the Ray engine is charged for all
of Ray, idle or not. Ray's extra CPU is split (`scaling_figures`) into a fixed cost per job (the difference of the
1-clip jobs), its daemons' (their idle CPU per wall second, measured first, × the job's wall time) and the engine's
cost per file (the rest).

Targets (issue #27): Ray with 1 actor ≥ 0.9× the local engine's audio s per core-s; 2 actors ≥ 1.7× 1 actor's
wall-clock throughput on a quiet 2-core machine — the machine's load average is recorded before every job, and the
2-actor speed-up in CPU terms is reported beside it, so a miss can be told apart: the load (CPU ratio fine, wall
ratio low) or the engine. `estimate_archive` turns the figures into cores and hours for 100,000 hours of audio.
"""

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf
import torch

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.collator import make_feature_extractor

from .common import Profile, pick_clips, ratio_result


CLIPS = {"full": 192, "quick": 96, "smoke": 4}
IDLE_SECONDS = {"full": 30, "quick": 20, "smoke": 2}  # to measure the CPU of Ray's own processes while idle
ARCHIVE_HOURS = 100_000
FILES_PER_BLOCK = 16


class TreeCpuMeter:
    """CPU seconds (user + system) used by this process and all its descendants between `start` and `stop`.

    Processes are sampled every `interval` s (keyed by pid and start time); one that exits between two samples
    loses at most its last interval. Processes alive at `start` are counted from their value then."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.seen, self.base = interval, {}, {}
        self._stop = threading.Event()
        self._thread = None

    def _sample(self) -> dict:
        root = psutil.Process()
        found = {}
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
                found[(process.pid, process.create_time())] = times.user + times.system
            except psutil.Error:
                continue
        return found

    def _run(self):
        while not self._stop.wait(self.interval):
            self.seen.update(self._sample())

    def start(self) -> "TreeCpuMeter":
        self.base = self._sample()
        self.seen = dict(self.base)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.seen.update(self._sample())
        return sum(value - self.base.get(key, 0.0) for key, value in self.seen.items())


def timed_job(job) -> dict:
    """Run `job()` (→ BatchSummary); its wall and tree-CPU seconds, audio seconds and the 1-minute load before."""
    load = os.getloadavg()[0]
    meter = TreeCpuMeter().start()
    started = time.perf_counter()
    summary = job()
    wall = time.perf_counter() - started
    cpu = meter.stop()
    assert summary.failed == 0, summary.describe()
    return {
        "files": summary.predicted,
        "audio_seconds": summary.audio_seconds,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "audio_s_per_core_s": summary.audio_seconds / cpu,
        "audio_s_per_wall_s": summary.audio_seconds / wall,
        "load_average_before": round(load, 2),
    }


def scaling_figures(jobs: dict, idle_cpu_per_wall_s: float) -> dict:
    """The ratios and Ray's overhead from the jobs' measurements and the CPU Ray's own processes use per wall second
    while idle (timing-free arithmetic, tested).

    Ray's extra CPU over the local engine (1 actor) = a fixed cost per job (the 1-clip jobs' difference: the actor's
    process start, its model load) + its daemons (raylet, GCS, monitors: `idle_cpu_per_wall_s` × the job's extra
    wall time) + the engine's cost per file (the rest). "Marginal" leaves out the fixed cost: what a job of an
    archive's size sees."""
    local, one, two = jobs["local"], jobs["ray_1_actor"], jobs["ray_2_actors"]
    fixed = jobs["ray_1_actor_1_clip"]["cpu_seconds"] - jobs["local_1_clip"]["cpu_seconds"]
    daemons = idle_cpu_per_wall_s * (one["wall_seconds"] - jobs["ray_1_actor_1_clip"]["wall_seconds"])
    marginal = one["audio_seconds"] / (one["cpu_seconds"] - fixed)
    return {
        "ray1_over_local_audio_s_per_core_s": one["audio_s_per_core_s"] / local["audio_s_per_core_s"],
        "ray1_marginal_audio_s_per_core_s": marginal,
        "ray1_marginal_over_local_audio_s_per_core_s": marginal / local["audio_s_per_core_s"],
        "ray2_over_ray1_wall_throughput": two["audio_s_per_wall_s"] / one["audio_s_per_wall_s"],
        "ray2_over_ray1_audio_s_per_core_s": two["audio_s_per_core_s"] / one["audio_s_per_core_s"],
        "ray_fixed_cpu_seconds_over_local": fixed,
        "ray_daemons_cpu_per_wall_s": idle_cpu_per_wall_s,
        "ray_daemons_cpu_seconds": daemons,
        "ray_engine_cpu_ms_per_file": 1000
        * (one["cpu_seconds"] - local["cpu_seconds"] - fixed - daemons)
        / one["files"],
    }


def estimate_archive(audio_s_per_core_s: float, efficiency: float, hours: float = ARCHIVE_HOURS) -> dict:
    """Core-hours for `hours` of audio at `audio_s_per_core_s`, and wall-clock hours on clusters of a few sizes if
    every added core keeps `efficiency` of one core's throughput (the 2-actor figure, assumed to hold across nodes)."""
    core_hours = hours / audio_s_per_core_s
    return {
        "audio_hours": hours,
        "core_hours": core_hours,
        "efficiency": efficiency,
        "wall_hours": {cores: core_hours / (cores * efficiency) for cores in (64, 256, 1024)},
    }


def save_model(profile: Profile, folder: Path) -> Path:
    labels = ["anger", "fear", "neutral", "sadness"]
    config = profile.backbone_config(
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)}
    )
    torch.manual_seed(0)
    Wav2Vec2ForFrameAlignedClassification(config).eval().save_pretrained(folder)
    make_feature_extractor().save_pretrained(folder)
    return folder


def run(profile: Profile, context: dict) -> dict:
    import ray

    from modeling.inference import load_pipeline
    from modeling.inference.batch import predict_files
    from modeling.inference.ray_engine import predict_files_on_ray

    corpus, clips = pick_clips(CLIPS[profile.name], seed=9)
    paths = [clip["path"] for clip in clips]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        model = save_model(profile, folder / "model")
        short = folder / "short.wav"
        sf.write(short, np.zeros(1600, np.float32) + 0.01, 16_000)

        def local(files):
            output = folder / f"local-{len(files)}-{time.monotonic_ns()}.csv"
            return lambda: predict_files(load_pipeline(model, num_threads=1), files, output, progress=False)

        def on_ray(files, actors):
            output = folder / f"ray-{actors}-{len(files)}-{time.monotonic_ns()}.csv"
            return lambda: predict_files_on_ray(
                model, files, output, actors=actors, threads=1, files_per_block=FILES_PER_BLOCK, progress=False
            )

        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
        try:
            time.sleep(IDLE_SECONDS[profile.name])  # Ray's start-up settles
            meter = TreeCpuMeter().start()
            time.sleep(IDLE_SECONDS[profile.name])
            idle_cpu_per_wall_s = meter.stop() / IDLE_SECONDS[profile.name]
            jobs = {
                "local": timed_job(local(paths)),
                "ray_1_actor": timed_job(on_ray(paths, 1)),
                "ray_2_actors": timed_job(on_ray(paths, 2)),
                "local_1_clip": timed_job(local([str(short)])),
                "ray_1_actor_1_clip": timed_job(on_ray([str(short)], 1)),
            }
        finally:
            ray.shutdown()
            shutil.rmtree(folder, ignore_errors=True)
    figures = scaling_figures(jobs, idle_cpu_per_wall_s)
    estimate = estimate_archive(
        figures["ray1_marginal_audio_s_per_core_s"], min(1.0, figures["ray2_over_ray1_audio_s_per_core_s"])
    )
    config = (
        f"{profile.name}: {len(paths)} {corpus} clips ({jobs['local']['audio_seconds']:.0f} s of audio), "
        f"1 thread per engine/actor, {FILES_PER_BLOCK} files per block, local Ray with 2 CPUs, random weights"
    )
    details = {"jobs": jobs, "figures": figures, "estimate_100k_hours": estimate}
    return {"config": profile.describe() | {"corpus": corpus}, **details, "results": rows(details, config)}


def rows(details: dict, config: str) -> list[dict]:
    jobs, figures, estimate = details["jobs"], details["figures"], details["estimate_100k_hours"]
    loads = ", ".join(f"{name} {job['load_average_before']}" for name, job in jobs.items())

    def speed(name):
        job = jobs[name]
        return f"{job['audio_s_per_core_s']:.2f} audio s per core-s, {job['audio_s_per_wall_s']:.2f} per wall s"

    overhead = (
        f"Ray's extra CPU: {figures['ray_fixed_cpu_seconds_over_local']:.1f} s per job (actor start, model load) + "
        f"its daemons {figures['ray_daemons_cpu_per_wall_s']:.3f} core ({figures['ray_daemons_cpu_seconds']:.1f} s "
        f"here) + {figures['ray_engine_cpu_ms_per_file']:.1f} ms per file"
    )
    return [
        ratio_result(
            "Ray engine, 1 actor / local engine (audio s per core-s, whole job, all of Ray's processes counted)",
            figures["ray1_over_local_audio_s_per_core_s"],
            0.9,
            ">=",
            note=f"local {speed('local')}; Ray 1 actor {speed('ray_1_actor')}; {overhead}; load average before "
            f"each job: {loads}",
            config=config,
        ),
        ratio_result(
            "Ray engine, 1 actor / local engine, marginal (without the per-job fixed cost: an archive-size job)",
            figures["ray1_marginal_over_local_audio_s_per_core_s"],
            0.9,
            ">=",
            note=f"Ray 1 actor {figures['ray1_marginal_audio_s_per_core_s']:.2f} audio s per core-s; {overhead}",
            config=config,
        ),
        ratio_result(
            "Ray engine, 2 actors / 1 actor (wall-clock throughput; quiet 2-core machine)",
            figures["ray2_over_ray1_wall_throughput"],
            1.7,
            ">=",
            note=f"2 actors {speed('ray_2_actors')}; in CPU terms 2 actors / 1 actor = "
            f"{figures['ray2_over_ray1_audio_s_per_core_s']:.2f} (1.0: no loss per core); load average before "
            f"each job: {loads}; 100,000 h of audio ≈ {estimate['core_hours']:,.0f} core-hours "
            f"(≈ {estimate['wall_hours'][256]:,.0f} h on 256 cores)",
            config=config,
        ),
    ]
