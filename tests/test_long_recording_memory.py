"""Memory does not grow with a recording's length (issue 22): a fresh process labels a 4-minute and a 16-minute
recording of real speech (polish3 words with silences, written to disk block by block) segment by segment with a tiny
model, and the peak resident memory labelling adds (VmHWM after − before the first segment) is the same for both.

Without `timeline_recording.release_free_heap` (glibc's `malloc_trim` after each batch of segments) the 16-minute
recording's peak grows further than the 4-minute one's: every segment has its own length, the tensors of every
forward pass a new size, and glibc's heap fragments (see the function's docstring for the measured numbers).
Measured with this model (143 and 564 segments): growth 22.1 and 38.6 MB with the trim (+16.5 MB), 23.9 and 61.4 MB
without it (+37.5 MB). What remains with the trim is oneDNN's primitive cache (kernels kept per input shape, a
bounded LRU: 1024 entries by default): with `torch.backends.mkldnn.enabled = False` it is 0.6 and 2.2 MB. The bound
below sits between the two.
Heavy: 20 minutes of audio through the model in two fresh processes (≈ 30 s on an idle core, minutes on a loaded one).
"""

import csv
import json
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import POLISH3, REPO, layer_norm_overrides, tiny_config

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.audio import load_audio
from modeling.collator import make_feature_extractor


SR = 16_000
WAV2VEC2_CONV = dict(conv_dim=(32,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2))
ALLOWED_GROWTH_MB = 27  # 16 vs 4 minutes, measured: +16.5 MB with the trim, +37.5 MB without it

MEASURE = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import pipeline
    import modeling, modeling.timeline_recording as recording

    def peak_mb():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))

    model, path, segments, trim = sys.argv[1], sys.argv[2], json.load(open(sys.argv[3])), sys.argv[4] == "trim"
    if not trim:
        recording._MALLOC_TRIM = None
    torch.set_num_threads(1)
    emotion = pipeline("frame-aligned-emotion", model=model, device="cpu")
    for _ in emotion.iter_segments(path, segments[:20]):  # first forward passes: one-time allocations
        pass
    before = peak_mb()
    count = sum(1 for _ in emotion.iter_segments(path, segments))
    print(json.dumps({"segments": count, "growth_mb": peak_mb() - before}))
    """
)


def write_recording(path, minutes: float, seed: int = 0) -> list[tuple[float, float]]:
    """polish3 words with 0.2–1.5 s silences, `minutes` long, written block by block; returns the words' spans."""
    with open(POLISH3 / "metadata.csv") as f:
        files = [row["file"] for row in csv.DictReader(f)]
    rng, decoded, spans, written, total = random.Random(seed), {}, [], 0, int(minutes * 60 * SR)
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as out:
        while written < total:
            name = rng.choice(files)
            clip = decoded.setdefault(name, load_audio(POLISH3 / name))
            piece = np.concatenate([clip, np.zeros(int(rng.uniform(0.2, 1.5) * SR), np.float32)])[: total - written]
            if len(piece) > len(clip):
                spans.append((written / SR, (written + len(clip)) / SR))
            out.write(piece)
            written += len(piece)
    return spans


def growth(tmp_path, model, minutes: float, trim: str = "trim") -> dict:
    audio, segments = tmp_path / f"{minutes:g}min.wav", tmp_path / f"{minutes:g}min.json"
    segments.write_text(json.dumps(write_recording(audio, minutes)))
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(model), str(audio), str(segments), trim],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    audio.unlink()
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.heavy  # 20 minutes of audio through a tiny model in two fresh processes (see the module docstring)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the peak RSS from /proc")
def test_peak_memory_does_not_grow_with_the_recordings_length(tmp_path):
    model = tmp_path / "model"
    torch.manual_seed(0)
    Wav2Vec2ForFrameAlignedClassification(tiny_config(**WAV2VEC2_CONV, **layer_norm_overrides())).save_pretrained(
        model
    )
    make_feature_extractor().save_pretrained(model)
    short, long = growth(tmp_path, model, 4), growth(tmp_path, model, 16)
    assert long["segments"] > 3.5 * short["segments"] > 3.5 * 100
    assert long["growth_mb"] - short["growth_mb"] < ALLOWED_GROWTH_MB, (short, long)
