"""What a batch prediction job is: the settings that decide its rows, recorded beside its output so that a re-run
resumes only the same job.

`<output stem>.job.json` (written atomically when the job first opens its outputs, before any row):

    {"model": "/abs/runs/demo/fold1/stage2/best",
     "model_files": {"config.json": [size, "<sha256>"], "model.safetensors": [size, "<sha256>"], ...},
     "backend": "onnx", "window_s": 20.0, "window_overlap_s": 4.0, "temperature": 1.3,
     "segments": null, "vad": false, "timeline": "/abs/runs/out.jsonl"}

A re-run with other settings is refused, naming each one old → new (`resume_problems`), before anything is written:
otherwise its rows would be appended to rows another model (or backend, window, ...) wrote, with exit status 0.
The timeline file is recorded too (null: none): added or moved on a resume, a timeline would miss the earlier files.
Settings that do not change a row are not recorded: the batch size (batched equals one by one), threads, the
device, the progress bar, `--files-per-write`, the engine (the Ray engine's rows are the local engine's:
docs/scaling.md, tests/inference/test_ray_engine.py) and the inputs (a re-run may add files). An output written
before the record existed is resumed with a warning that the settings of its earlier rows are unknown.
"""

import json
import os
import sys
from pathlib import Path

from ..data.problems import Problem
from ..rundir.atomic import atomic_write_json
from ..rundir.integrity import sha256_of


RECORD_SUFFIX = ".job.json"
# The checkpoint files that decide the numbers: the config (labels, geometry, calibration temperature), the feature
# extractor's, the weights (single or sharded, safetensors or .bin) and a LoRA adapter's. Not the model card, not
# training_args.bin, not onnx/ (exported from these weights).
FINGERPRINTED = ("config.json", "preprocessor_config.json", "adapter_config.json")
WEIGHT_SUFFIXES = (".safetensors", ".bin")
NOT_WEIGHTS = ("training_args.bin", "optimizer.bin", "scheduler.bin")
# What each recorded setting is called on predict.py's command line.
NAMES = {
    "model": "--model",
    "model_files": "--model's files (config/weights: retrained or replaced at the same path)",
    "backend": "--backend",
    "window_s": "--window",
    "window_overlap_s": "--window-overlap",
    "temperature": "calibration temperature (--no-calibration: 1)",
    "segments": "--segments",
    "vad": "--vad",
    "timeline": "--timeline",
}


def record_path(output: str | os.PathLike) -> Path:
    """`<output stem>.job.json` beside the predictions CSV."""
    output = Path(output)
    return output.with_name(output.stem + RECORD_SUFFIX)


def model_fingerprint(folder: Path) -> dict:
    """{file name: [bytes, sha256]} of a local checkpoint's config, feature extractor and weight files. Cost: one
    read of the weights (sha256 at about 1 GB/s on one core: ~0.4 s for a wav2vec2-base checkpoint of 380 MB,
    ~1.3 s for a large one), once per run of the job — small beside predicting, and it catches a checkpoint retrained
    or replaced at the same path, which a path or a modification time would not reliably."""
    names = sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.is_file()
        and (entry.name in FINGERPRINTED or (entry.name.endswith(WEIGHT_SUFFIXES) and entry.name not in NOT_WEIGHTS))
    )
    return {name: [(folder / name).stat().st_size, sha256_of(folder / name)] for name in names}


def _hub_commit(model: str) -> str | None:
    """The commit of a Hub model's cached config.json (`snapshots/<commit>/config.json`), when cached; else None."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
    except Exception:  # noqa: BLE001  (not a repository id: no commit to record)
        return None
    return Path(cached).parent.name if isinstance(cached, str) else None


def model_identity(model: str | os.PathLike) -> dict:
    """{"model": the absolute folder or the Hub id, "model_files": a local folder's `model_fingerprint`, or
    {"commit": the Hub revision of its cached files} (None when not cached)}."""
    path = Path(model).expanduser()
    if path.is_dir():
        return {"model": str(path.resolve()), "model_files": model_fingerprint(path)}
    return {"model": str(model), "model_files": {"commit": _hub_commit(str(model))}}


def _temperature(model, calibration: bool) -> float:
    """The temperature the pipeline divides the logits by (`prediction_fields.calibration_temperature`), from the
    checkpoint's config.json alone (already read by the model check: no weights)."""
    from transformers import PreTrainedConfig

    from ..prediction_fields import checked_temperature

    value = PreTrainedConfig.get_config_dict(str(model))[0].get("calibration_temperature") if calibration else None
    return 1.0 if value is None else checked_temperature(value)


def job_settings(
    model: str | os.PathLike,
    backend: str,
    window_s: float | None = None,
    window_overlap_s: float | None = None,
    calibration: bool = True,
    segments=None,
    temperature: float | None = None,
) -> dict:
    """The settings that decide a job's rows (the module docstring). `window_s`/`window_overlap_s`: None for the
    pipeline's defaults; `calibration`: False for `--no-calibration`, recorded as the temperature it leads to (a
    checkpoint without one gives T = 1 either way: the same rows), or `temperature` (a loaded pipeline's);
    `segments`: a `recordings.SegmentSource` or None (one row per file)."""
    from ..timeline_segments import WINDOW_LENGTH_S, WINDOW_OVERLAP_S

    folder = getattr(segments, "folder", None)
    return {
        **model_identity(model),
        "backend": backend,
        "window_s": float(WINDOW_LENGTH_S if window_s is None else window_s),
        "window_overlap_s": float(WINDOW_OVERLAP_S if window_overlap_s is None else window_overlap_s),
        "temperature": float(_temperature(model, calibration) if temperature is None else temperature),
        "segments": folder if folder in (None, "auto") else str(Path(folder).resolve()),
        "vad": bool(getattr(segments, "vad", False)),
    }


UNKNOWN_ROWS = (
    "warning: {output} holds rows written before job settings were recorded ({record}): the model and settings of "
    "those earlier rows are unknown; resuming with this command's"
)


def pipeline_settings(pipe, pipeline_kwargs: dict | None = None, segments=None) -> dict:
    """`job_settings` of a loaded `FrameAlignedEmotionPipeline` (what `batch.predict_files` records when its caller
    gives none): the checkpoint it was loaded from, its backend (the ONNX file it runs), its temperature."""
    from .onnx_export import FP32_NAME, INT8_NAME, INT8_STATIC_NAME

    onnx_file = getattr(pipe.model, "path", None)  # an `OnnxFrameAlignedModel`'s
    names = {FP32_NAME: "onnx", INT8_NAME: "onnx-int8", INT8_STATIC_NAME: "onnx-int8-static"}
    backend = "torch" if onnx_file is None else names.get(Path(onnx_file).name, str(onnx_file))
    windows = pipeline_kwargs or {}
    window_s, overlap_s = windows.get("window_length_s"), windows.get("window_overlap_s")
    model = pipe.model.name_or_path
    return job_settings(model, backend, window_s, overlap_s, segments=segments, temperature=pipe.temperature)


def _shown(key: str, value) -> str:
    return json.dumps(value)


def _change(key: str, old, new) -> str:
    """ "--backend: "torch" → "onnx"`; a checkpoint's files: only those that differ, by sha256 prefix."""
    if key == "model_files" and isinstance(old, dict) and isinstance(new, dict) and "commit" not in {*old, *new}:
        digest = lambda files, name: files[name][1][:12] if name in files else "absent"  # noqa: E731
        names = sorted(name for name in {*old, *new} if old.get(name) != new.get(name))
        return f"{NAMES[key]}: " + ", ".join(f"{name} {digest(old, name)} → {digest(new, name)}" for name in names)
    return f"{NAMES[key]}: {_shown(key, old)} → {_shown(key, new)}"


def _written_lines(paths) -> int:
    """Lines beyond the header in the outputs that exist (rows written by an earlier run)."""
    count = 0
    for path, header in paths:
        if path is not None and Path(path).is_file():
            with open(path, "rb") as f:
                count += max(0, sum(1 for _ in f) - header)
    return count


def with_timeline(settings: dict, timeline) -> dict:
    """`settings` and the job's timeline file (JSON lines, one per file, written with its CSV rows; absolute path, or
    None): a resume that adds `--timeline`, or names another file, would leave the earlier files out of it, so it is
    refused (`resume_problems`); one that drops it is not (it asks for no timeline; the record then says none, so
    adding it later is refused)."""
    return {**settings, "timeline": None if timeline is None else os.path.abspath(timeline)}


def resume_problems(output, settings: dict, errors=None, timeline=None) -> tuple[list[Problem], str | None]:
    """(problems, warning): each recorded setting of `output`'s job (`settings`, and whether `timeline` is written:
    `with_timeline`) that differs from this run's (one blocking problem naming them all, old → new, and what to do);
    a warning when earlier rows exist without a record. Outputs without rows (none yet, or deleted to start over) are
    a new job whatever a record says."""
    output = Path(output)
    settings = with_timeline(settings, timeline)
    record = record_path(output)
    errors = Path(errors) if errors else output.with_name(output.stem + ".errors.csv")
    parts = output.with_name(output.name + ".parts") / "manifest.jsonl"  # the Ray engine's blocks not yet merged
    if not _written_lines([(output, 1), (errors, 1), (timeline, 0), (parts, 0)]):
        return [], None  # nothing written yet (or the old files deleted): a record left there is replaced
    if not record.is_file():
        return [], UNKNOWN_ROWS.format(output=output, record=record.name)
    stored = json.loads(record.read_text(encoding="utf-8"))
    earlier = stored.get("settings", {})
    # a timeline dropped on a resume is no other job: this run writes none (the earlier one keeps what it holds)
    differ = [key for key in NAMES if earlier.get(key) != settings.get(key) and (key != "timeline" or settings[key])]
    if not differ:
        unknown = stored.get("earlier_rows_unknown")
        return [], UNKNOWN_ROWS.format(output=output, record=record.name) if unknown else None
    changes = "; ".join(_change(key, earlier.get(key), settings.get(key)) for key in differ)
    message = (
        f"{output}: written by another job ({record.name}): {changes}. Resuming would mix its rows with this job's: "
        "pass another --output, or delete the old files "
        f"({output.name}, {errors.name}{', ' + Path(timeline).name if timeline else ''}, {record.name}) to start over"
    )
    return [Problem(str(output), message, value=differ, cause="outputs written by another job")], None


def open_record(output, settings: dict, errors=None, timeline=None) -> list[Problem]:
    """The check of a job opening its outputs (`batch.JobOutputs.open`): the problems of `resume_problems` (nothing
    written then), else its warning printed (one line, stderr) and the record written (if absent or left by a job
    whose rows are gone), before any row.
    An output with earlier rows but no record gets a record marked `earlier_rows_unknown` (the warning stays)."""
    problems, warning = resume_problems(output, settings, errors, timeline)
    if problems:
        return problems
    if warning:
        print(warning, file=sys.stderr)
    settings = with_timeline(settings, timeline)
    record = record_path(output)
    if not record.is_file() or json.loads(record.read_text(encoding="utf-8")).get("settings") != settings:
        record.parent.mkdir(parents=True, exist_ok=True)  # (other settings here: a record without rows, replaced)
        atomic_write_json(record, {"settings": settings, "earlier_rows_unknown": warning is not None})
    return []
