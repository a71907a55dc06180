"""Benchmark 5: can one data-loading worker feed a training step?

Decode (+ resample) with `modeling.audio.load_audio`, the path every collator call takes, on real clips stored two
ways: the 16 kHz FLAC originals (decode only) and 44.1 kHz FLAC copies made in a temporary folder (decode +
soxr resampling to 16 kHz). The rate is compared with what a stage-2 training step consumes (uncached: the
fastest consumer that reads audio; a stage-1 step back-propagates through all layers and is slower), measured in
seconds of audio per wall-clock second so that clip lengths cancel:

    ratio = (audio seconds loaded per second, one worker) / (audio seconds trained per second)

Target ≥ 1 with a single worker (`dataloader_num_workers=0`): loading is never the bottleneck.
"""

import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from modeling.audio import load_audio

from .common import Profile, pick_clips, ratio_result, time_call


def make_copies(paths: list[str], folder: Path, sampling_rate: int) -> list[str]:
    """FLAC copies of `paths` resampled to `sampling_rate` (16-bit, as the originals)."""
    copies = []
    for i, path in enumerate(paths):
        array, rate = sf.read(path, dtype="float32")
        resampled = soxr.resample(array, rate, sampling_rate, quality="HQ") if rate != sampling_rate else array
        target = folder / f"clip{i:04d}_{sampling_rate}.flac"
        sf.write(target, np.clip(resampled, -1.0, 1.0), sampling_rate, subtype="PCM_16")
        copies.append(str(target))
    return copies


def loading_rate(paths: list[str], repetitions: int) -> dict:
    """Clips/s and audio seconds/s of `load_audio` over `paths`, median over repetitions (a first pass warms the
    file cache)."""
    audio_seconds = sum(len(load_audio(path)) for path in paths) / 16_000

    def load_all():
        for path in paths:
            load_audio(path)

    seconds = float(np.median([time_call(load_all) for _ in range(repetitions)]))  # CPU time, see common.py
    return {"clips_per_second": len(paths) / seconds, "audio_seconds_per_second": audio_seconds / seconds}


def run(profile: Profile, context: dict) -> dict:
    corpus, clips = pick_clips(profile.loading_clips, seed=3)
    originals = [clip["path"] for clip in clips]
    step_seconds = context.get("stage2_step_seconds")
    with tempfile.TemporaryDirectory() as tmp:
        copies_44k = make_copies(originals, Path(tmp), 44_100)
        repetitions = max(2, profile.repetitions // 2)
        rates = {
            "16kHz_flac": loading_rate(originals, repetitions),
            "44.1kHz_flac": loading_rate(copies_44k, repetitions),
        }

    results = []
    consumption = None
    if step_seconds:
        consumption = {
            "clips_per_second": context["stage2_step_clips"] / step_seconds,
            "audio_seconds_per_second": context["stage2_step_audio_seconds"] / step_seconds,
            "step_seconds": step_seconds,
            "source": "benchmark 1, eal_fual step (forward + backward, stage-2 freezing)",
        }
        for name, rate in rates.items():
            ratio = rate["audio_seconds_per_second"] / consumption["audio_seconds_per_second"]
            results.append(
                ratio_result(
                    f"data loading ({name}, 1 worker) / training consumption",
                    ratio,
                    1.0,
                    ">=",
                    note=(
                        f"load_audio: {rate['clips_per_second']:.0f} clips/s = {rate['audio_seconds_per_second']:.0f} "
                        f"audio-s/s; a stage-2 step consumes {consumption['audio_seconds_per_second']:.2f} audio-s/s "
                        f"({consumption['clips_per_second']:.2f} clips/s)"
                    ),
                    config=f"{profile.name}: {len(originals)} {corpus} clips; step time from benchmark 1",
                )
            )
    return {
        "config": {"corpus": corpus, "clips": len(originals)},
        "loading": rates,
        "consumption": consumption,
        "results": results,
    }
