"""The timing-free parts of `benchmarks/ray_scaling.py`: the scaling figures (Ray's overhead split into fixed,
Ray's processes and per file) and the 100,000-hour estimate from given measurements (hand-computed), and `TreeCpuMeter`
charging the CPU of a child process that has exited."""

import subprocess
import sys

import pytest

from benchmarks.ray_scaling import TreeCpuMeter, estimate_archive, scaling_figures


def job(files, audio, wall, cpu, engine=None):
    return {
        "files": files,
        "audio_seconds": audio,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "engine_cpu_seconds": cpu if engine is None else engine,
        "audio_s_per_core_s": audio / cpu,
        "audio_s_per_wall_s": audio / wall,
    }


def test_scaling_figures_from_given_measurements():
    jobs = {
        "local": job(100, 400.0, 80.0, 80.0),  # 5 audio s per core-s
        "ray_1_actor": job(100, 400.0, 100.0, 90.0, engine=85.0),  # 400 / 90 = 4.444; Ray's processes 5 s
        "ray_2_actors": job(100, 400.0, 50.0, 92.0),
        "local_1_clip": job(1, 0.1, 2.0, 2.0),
        "ray_1_actor_1_clip": job(1, 0.1, 9.0, 8.0),
        "toy_local": job(100, 400.0, 3.0, 3.0),
        "toy_ray_1_actor": job(100, 400.0, 12.0, 12.0, engine=10.0),
        "toy_local_1_clip": job(1, 0.1, 0.5, 0.5),
        "toy_ray_1_actor_1_clip": job(1, 0.1, 8.0, 6.0, engine=5.5),
    }
    figures = scaling_figures(jobs)
    assert figures["ray1_over_local_audio_s_per_core_s"] == pytest.approx(80 / 90)
    assert figures["ray2_over_ray1_wall_throughput"] == pytest.approx(100 / 50)
    assert figures["ray2_over_ray1_audio_s_per_core_s"] == pytest.approx(90 / 92)
    assert figures["ray_fixed_cpu_seconds_over_local"] == pytest.approx(6.0)  # 8 − 2
    assert figures["ray_processes_cpu_per_wall_s"] == pytest.approx(5 / 100)
    assert figures["ray1_marginal_audio_s_per_core_s"] == pytest.approx(400 / 84)  # without the fixed 6 s
    assert figures["ray1_marginal_over_local_audio_s_per_core_s"] == pytest.approx(80 / 84)
    # the engine per file, with the toy model: ((10 − 3) − (5.5 − 0.5)) / 99 files
    assert figures["ray_engine_cpu_ms_per_file"] == pytest.approx(1000 * 2 / 99)
    assert figures["ray_engine_cpu_ms_per_file_at_most"] == pytest.approx(1000 * 7 / 100)  # (10 − 3) / 100 files
    assert figures["toy_local_cpu_ms_per_file"] == pytest.approx(30)


def test_archive_estimate():
    estimate = estimate_archive(5.0, 0.95)
    assert estimate["core_hours"] == pytest.approx(20_000)  # 100,000 h of audio at 5 audio s per core-s
    assert estimate["wall_hours"][256] == pytest.approx(20_000 / (256 * 0.95))
    assert set(estimate["wall_hours"]) == {64, 256, 1024}


BURN = """
import os, time
end = time.process_time() + 1.5
while time.process_time() < end:
    pass
times = os.times()
print(times.user + times.system)
"""


def test_tree_cpu_meter_counts_a_child_that_has_exited():
    meter = TreeCpuMeter(interval=0.05).start()
    child = float(subprocess.run([sys.executable, "-c", BURN], capture_output=True, text=True, check=True).stdout)
    measured = meter.stop()
    assert child >= 1.5
    assert child - 0.3 <= measured <= child + 1.0  # at most its last interval lost; plus this process's own work
    kinds = meter.by_kind()
    assert kinds["ray"] >= child - 0.3 and kinds["actor"] == 0  # a child that is not a Ray Data actor
    assert sum(kinds.values()) == pytest.approx(measured)
