"""Which CPU backend a checkpoint should run on: the fastest that keeps the labels.

`backend_choice(checkpoint, clips)` exports the checkpoint to ONNX, quantises it to static (calibrated QDQ) and
dynamic int8, measures each int8 model's label agreement with the fp32 ONNX model on real speech, and picks, in
this order, static int8, dynamic int8 (the faster first: benchmarks/app_latency.py), else fp32 ONNX — an int8 model
only when its agreement is at least `min_agreement`. The choice and its measurements are written to
`<checkpoint>/onnx/backend.json` (published with the checkpoint; the Space reads it) and reused while the clips and
the threshold are the same:

    {"backend": "onnx-int8-static", "file": "onnx/model_int8_static.onnx", "min_agreement": 0.97,
     "calibration_clips": 20, "agreement_clips": 20, "clips_digest": "<sha1 of the clips' names and sizes>",
     "agreement": {"onnx-int8-static": 1.0, "onnx-int8": 0.95}, "reason": "static int8: 100 % label agreement ..."}

Calibration and agreement use disjoint clips (even / odd positions of `clips`), so the agreement is not measured on
the data the activation ranges were fitted to.
"""

import hashlib
import json
import os
from pathlib import Path

from ..prediction_fields import PREDICTED
from ..rundir.atomic import atomic_write_json
from .onnx_backend import ensure_onnx, load_pipeline
from .onnx_export import BACKEND_FILE, ONNX_DIR, onnx_path, quantize_int8_static


MIN_AGREEMENT = 0.97
INT8_PREFERENCE = ("onnx-int8-static", "onnx-int8")
NAMES = {"onnx-int8-static": "static int8", "onnx-int8": "dynamic int8", "onnx": "fp32 ONNX"}


def choice_path(checkpoint: str | os.PathLike) -> Path:
    return Path(checkpoint) / ONNX_DIR / BACKEND_FILE


def _file_of(checkpoint: Path, backend: str) -> str:
    path = onnx_path(checkpoint, int8=backend == "onnx-int8", static=backend == "onnx-int8-static")
    return path.relative_to(checkpoint).as_posix()


def backend_choice(
    checkpoint: str | os.PathLike,
    clips: list,
    min_agreement: float = MIN_AGREEMENT,
    num_threads: int | None = None,
) -> dict:
    """The measured backend choice of `checkpoint` (see the module docstring); computed once, then read back.

    Args:
        checkpoint: a local checkpoint folder (`save_pretrained`).
        clips: real speech (audio file paths), at least 2: even positions calibrate, odd ones measure agreement.
        min_agreement: the least label agreement (share of clips) an int8 model needs to be chosen.
    Raises:
        ValueError: fewer than 2 clips.
    """
    checkpoint = Path(checkpoint)
    clips = [os.fspath(clip) for clip in clips]
    if len(clips) < 2:
        raise ValueError(
            f"backend_choice needs at least 2 real speech clips (calibration + agreement), got {len(clips)}"
        )
    calibration, held_out = clips[0::2], clips[1::2]
    stored = choice_path(checkpoint)
    if stored.is_file():
        choice = json.loads(stored.read_text())
        same = (choice.get("clips_digest"), choice.get("min_agreement")) == (clips_digest(clips), min_agreement)
        if same and (checkpoint / choice["file"]).is_file():
            return choice
    fp32 = ensure_onnx(checkpoint)
    ensure_onnx(checkpoint, int8=True)
    quantize_int8_static(fp32, calibration, feature_extractor=load_pipeline(checkpoint, "onnx").feature_extractor)
    labels = {}
    for backend in ("onnx", *INT8_PREFERENCE):
        pipe = load_pipeline(checkpoint, backend=backend, num_threads=num_threads)
        labels[backend] = [result[PREDICTED] for result in pipe(held_out)]
    agreement = {
        backend: sum(a == b for a, b in zip(labels["onnx"], labels[backend])) / len(held_out)
        for backend in INT8_PREFERENCE
    }
    chosen, reason = choose(agreement, min_agreement, len(held_out))
    choice = {
        "backend": chosen,
        "file": _file_of(checkpoint, chosen),
        "min_agreement": min_agreement,
        "calibration_clips": len(calibration),
        "agreement_clips": len(held_out),
        "clips_digest": clips_digest(clips),
        "agreement": agreement,
        "reason": reason,
    }
    atomic_write_json(stored, choice)
    return choice


def clips_digest(clips: list[str]) -> str:
    """sha1 of the clips' file names and sizes, in order: the stored choice is reused only for the same clips (names,
    not paths: nothing of this machine's folders is published)."""
    digest = hashlib.sha1()
    for clip in clips:
        digest.update(f"{os.path.basename(clip)}:{os.path.getsize(clip)};".encode())
    return digest.hexdigest()


def choose(agreement: dict[str, float], min_agreement: float, clips: int) -> tuple[str, str]:
    """(backend, reason) from the measured agreements {"onnx-int8-static": a, "onnx-int8": b}: the first int8 model
    of `INT8_PREFERENCE` whose agreement is at least `min_agreement`, else fp32 ONNX."""
    chosen = next((b for b in INT8_PREFERENCE if agreement[b] >= min_agreement), "onnx")
    measured = ", ".join(f"{NAMES[b]} {agreement[b]:.0%}" for b in INT8_PREFERENCE)
    if chosen == "onnx":
        return chosen, (
            f"fp32 ONNX: no int8 model reaches {min_agreement:.0%} label agreement ({measured} of {clips} clips)"
        )
    return chosen, f"{NAMES[chosen]}: {agreement[chosen]:.0%} label agreement with fp32 on {clips} clips ({measured})"


def default_clips(count: int = 40) -> list[str]:
    """`count` clips of the bundled demo corpus (data/polish3, real speech, CC BY 4.0) spread over its speakers and
    classes, when the repository's data folder is present; else []."""
    root = Path(__file__).resolve().parents[2] / "data" / "polish3" / "audio"
    files = sorted(root.glob("*.flac")) if root.is_dir() else []
    step = max(1, len(files) // count)
    return [str(path) for path in files[::step][:count]]
