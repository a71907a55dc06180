"""Benchmark 9: scaling out — `predict.py`'s local engine vs the Ray engine with 1 and 2 actors, side by side.

A stage-2 model of the profile's shape (random weights; full mode: wav2vec2-base) labels the same real clips (nEMO
when ../shared has it, else polish3) with, in this order: the local engine (`batch.predict_files`, 1 torch thread),
the Ray engine with 1 actor and with 2 actors (`ray_engine.predict_files_on_ray`, 1 thread per actor, 16 files per
block) on a local Ray of 2 CPUs started beforehand (a cluster is up before a job; its start is not counted). Then
the local engine and the Ray engine with 1 actor on one 0.1 s clip: their fixed costs (model loads, actor start);
and the four jobs local / Ray 1 actor × all clips / one clip again with a toy model, whose forward pass costs
almost nothing, so that the engine's cost per file shows.

Clocks: wall-clock seconds of each job, and the CPU seconds of every process involved (this process and all its
descendants: Ray's raylet, GCS and workers; `TreeCpuMeter` samples them every 0.2 s so that workers that exit are
counted too). "Audio seconds per core-second" = audio seconds ÷ those CPU seconds: the Ray engine is charged for all
of Ray, idle or not. The meter also tells the driver's and the actors' CPU from that of Ray's own processes
(raylet, GCS, monitors); `scaling_figures` splits Ray's extra CPU into a fixed cost per job, Ray's own processes and
the engine's cost per file.

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

from .common import PROFILES, Profile, pick_clips, ratio_result


CLIPS = {"full": 192, "quick": 96, "smoke": 4}
ARCHIVE_HOURS = 100_000
FILES_PER_BLOCK = 16


class TreeCpuMeter:
    """CPU seconds (user + system) used by this process and all its descendants between `start` and `stop`.

    Processes are sampled every `interval` s (keyed by pid and start time); one that exits between two samples
    loses at most its last interval. Processes alive at `start` are counted from their value then."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.seen, self.base, self.kinds = interval, {}, {}, {}
        self._stop = threading.Event()
        self._thread = None

    def _sample(self) -> dict:
        root = psutil.Process()
        found = {}
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
                key = (process.pid, process.create_time())
                title = " ".join(process.cmdline())
            except psutil.Error:  # it exited meanwhile
                continue
            found[key] = times.user + times.system
            kind = "driver" if process.pid == root.pid else "actor" if title.startswith("ray::MapWorker") else "ray"
            self.kinds[key] = kind if self.kinds.get(key) != "actor" else "actor"  # an idle worker becomes an actor
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
        return sum(self.by_kind().values())

    def by_kind(self) -> dict[str, float]:
        """CPU seconds of this process ("driver"), of Ray Data's actors ("actor") and of the rest ("ray": raylet, GCS,
        monitors, agents, idle workers)."""
        totals = {"driver": 0.0, "actor": 0.0, "ray": 0.0}
        for key, value in self.seen.items():
            totals[self.kinds[key]] += value - self.base.get(key, 0.0)
        return totals


def timed_job(job) -> dict:
    """Run `job()` (→ BatchSummary); its wall and tree-CPU seconds, audio seconds and the 1-minute load before."""
    load = os.getloadavg()[0]
    meter = TreeCpuMeter().start()
    started = time.perf_counter()
    summary = job()
    wall = time.perf_counter() - started
    cpu = meter.stop()
    kinds = meter.by_kind()
    assert summary.failed == 0, summary.describe()
    return {
        "files": summary.predicted,
        "audio_seconds": summary.audio_seconds,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "engine_cpu_seconds": kinds["driver"] + kinds["actor"],  # without Ray's own processes
        "audio_s_per_core_s": summary.audio_seconds / cpu,
        "audio_s_per_wall_s": summary.audio_seconds / wall,
        "load_average_before": round(load, 2),
    }


def scaling_figures(jobs: dict) -> dict:
    """The ratios and Ray's overhead from the jobs' measurements (timing-free arithmetic, tested).

    Ray's extra CPU over the local engine (1 actor) = a fixed cost per job (the 1-clip jobs' difference: the actor's
    process start, its model load) + Ray's own processes (raylet, GCS, monitors; measured in the 1-actor job) + the
    engine's cost per file, measured with a toy model (so that it is not lost in the model's time): the 1-actor job's
    driver and actor CPU minus the local engine's, less the same difference for 1 clip, per further file.
    "Marginal" leaves out the fixed cost: what a job of an archive's size sees."""
    local, one, two = jobs["local"], jobs["ray_1_actor"], jobs["ray_2_actors"]
    fixed = jobs["ray_1_actor_1_clip"]["cpu_seconds"] - jobs["local_1_clip"]["cpu_seconds"]
    marginal = one["audio_seconds"] / (one["cpu_seconds"] - fixed)
    toy_extra = jobs["toy_ray_1_actor"]["engine_cpu_seconds"] - jobs["toy_local"]["cpu_seconds"]
    toy_fixed = jobs["toy_ray_1_actor_1_clip"]["engine_cpu_seconds"] - jobs["toy_local_1_clip"]["cpu_seconds"]
    return {
        "ray1_over_local_audio_s_per_core_s": one["audio_s_per_core_s"] / local["audio_s_per_core_s"],
        "ray1_marginal_audio_s_per_core_s": marginal,
        "ray1_marginal_over_local_audio_s_per_core_s": marginal / local["audio_s_per_core_s"],
        "ray2_over_ray1_wall_throughput": two["audio_s_per_wall_s"] / one["audio_s_per_wall_s"],
        "ray2_over_ray1_audio_s_per_core_s": two["audio_s_per_core_s"] / one["audio_s_per_core_s"],
        "ray_fixed_cpu_seconds_over_local": fixed,
        "ray_processes_cpu_per_wall_s": (one["cpu_seconds"] - one["engine_cpu_seconds"]) / one["wall_seconds"],
        "ray_engine_cpu_ms_per_file": 1000 * (toy_extra - toy_fixed) / (jobs["toy_ray_1_actor"]["files"] - 1),
        # all of the toy job's extra CPU, its actor's start included: a bound that does not lean on the 1-clip jobs
        "ray_engine_cpu_ms_per_file_at_most": 1000 * toy_extra / jobs["toy_ray_1_actor"]["files"],
        "toy_local_cpu_ms_per_file": 1000 * jobs["toy_local"]["cpu_seconds"] / jobs["toy_local"]["files"],
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

        toy = save_model(PROFILES["smoke"], folder / "toy")  # a model that costs ~nothing: the engine's overhead

        def local(model, files):
            output = folder / f"local-{len(files)}-{time.monotonic_ns()}.csv"
            return lambda: predict_files(load_pipeline(model, num_threads=1), files, output, progress=False)

        def on_ray(model, files, actors):
            output = folder / f"ray-{actors}-{len(files)}-{time.monotonic_ns()}.csv"
            return lambda: predict_files_on_ray(
                model, files, output, actors=actors, threads=1, files_per_block=FILES_PER_BLOCK, progress=False
            )

        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
        try:
            jobs = {
                "local": timed_job(local(model, paths)),
                "ray_1_actor": timed_job(on_ray(model, paths, 1)),
                "ray_2_actors": timed_job(on_ray(model, paths, 2)),
                "local_1_clip": timed_job(local(model, [str(short)])),
                "ray_1_actor_1_clip": timed_job(on_ray(model, [str(short)], 1)),
                "toy_local": timed_job(local(toy, paths)),
                "toy_ray_1_actor": timed_job(on_ray(toy, paths, 1)),
                "toy_local_1_clip": timed_job(local(toy, [str(short)])),
                "toy_ray_1_actor_1_clip": timed_job(on_ray(toy, [str(short)], 1)),
            }
        finally:
            ray.shutdown()
            shutil.rmtree(folder, ignore_errors=True)
    figures = scaling_figures(jobs)
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
        f"Ray's own processes {figures['ray_processes_cpu_per_wall_s']:.3f} core + the engine "
        f"{figures['ray_engine_cpu_ms_per_file']:.1f} ms per file, at most "
        f"{figures['ray_engine_cpu_ms_per_file_at_most']:.1f} (toy model: local "
        f"{figures['toy_local_cpu_ms_per_file']:.1f} ms per file)"
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
