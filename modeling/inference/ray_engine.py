"""`predict.py --engine ray`: the batch prediction job of `batch.py` on Ray Data, from a laptop to a cluster.

```python
from modeling.inference.batch import collect_inputs
from modeling.inference.ray_engine import predict_files_on_ray
summary = predict_files_on_ray("runs/demo/fold1/stage2/best", collect_inputs(["archive/"]), "predictions.csv")
```

The same inputs, outputs, columns, backends and resume as the local engine (`batch.predict_files`), and the same
pieces: `collect_inputs`, `header_durations`, `JobOutputs`, `_predict_group` (a failing group is retried file by
file), the row and timeline formats. What differs is who runs the model:

- the driver (this process) lists the files, reads their durations from the headers, sorts them longest first and
  cuts them into blocks of `files_per_block` (block k holds files k·n … k·n + n − 1 of that order);
- a Ray Data `map_batches` over the blocks, with an actor pool (`ActorPoolStrategy(size=actors)`): each actor loads
  the model once (`load_pipeline`, the local engine's loader) and predicts one block per call. Execution streams:
  Ray Data keeps a bounded number of blocks in flight, so memory does not grow with the number of files;
- each block's result comes back to the driver, which writes it as part files in `<output>.parts/`
  (`part-<k>.csv`, `part-<k>.errors.csv`, `part-<k>.jsonl` with `timeline_path`, each atomic) and then a line of
  `manifest.jsonl`; the blocks done in sequence are merged into the final CSV (so it is in the local engine's
  longest-first order) and their parts removed. Only the driver writes: workers need to read the audio and the
  model, not the output folder.

Faults: a worker process that dies (killed, out of memory) is restarted by Ray and its block retried
(`max_restarts=-1`, `max_task_retries=max_retries`); a block whose worker died more than `max_retries` times is
skipped by Ray Data (`max_errored_blocks=-1`) and its files are run again one per block, so a file that kills its
worker costs only that file (listed as an error). A killed driver leaves the final CSV, the manifest and finished
parts: the next run merges the recorded parts first (a file is never written twice: `JobOutputs.append` drops rows
already written) and predicts only the rest. A bad file inside a block is listed with its reason, as locally.

Ray is an optional extra (`pip install -e ".[ray]"`); without it `predict_files_on_ray` raises `RayNotInstalled`.
"""

import contextlib
import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..rundir.atomic import atomic_write_text
from ..rundir.faults import FAULT_ENV, FAULT_LOG_ENV, fault_point
from .batch import (
    ERROR_COLUMNS,
    BatchJobError,
    BatchSummary,
    JobOutputs,
    _predict_group,
    _read_rows,
    _row,
    _timeline_line,
    header_durations,
    progress_bar,
    window_settings,
)
from .job_record import job_settings
from .output_files import append_bytes, csv_text, repair_partial_line


INSTALL_HINT = 'the Ray engine needs Ray Data: pip install -e ".[ray]"  (or: pip install "ray[data]")'


class RayNotInstalled(BatchJobError):
    """`--engine ray` without Ray installed; the message says how to install it."""


def import_ray():
    """`ray` with `ray.data`, or `RayNotInstalled` naming the extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (the engine's API)
    except ImportError as error:
        raise RayNotInstalled(f"{INSTALL_HINT} ({error})") from None
    return ray


# ----------------------------------------------------------------------------------------------------------------
# The actors
# ----------------------------------------------------------------------------------------------------------------


RESULT_COLUMNS = ("block", "predicted", "failed", "audio_seconds", "rows", "errors", "timeline")


class BlockPredictor:
    """One actor of the pool: loads the model once, then predicts one block of files per call.

    A call gets a batch {"block": (1,) int, "paths": (1,) list of paths} and returns {"block", "predicted",
    "failed", "audio_seconds", "rows", "errors", "timeline"}: the block's prediction rows, error rows and timeline
    lines as text, formatted exactly as the local engine writes them.
    """

    def __init__(self, model, backend, threads, batch_size, pipeline_kwargs, labels, with_timeline, cwd):
        from .onnx_backend import load_pipeline

        if os.path.isdir(cwd):  # relative paths (of files and model) mean what they mean to the driver
            os.chdir(cwd)
        self.pipe = load_pipeline(model, backend=backend, num_threads=threads)
        if list(self.pipe.classes) != list(labels):
            raise BatchJobError(f"{model}: labels {self.pipe.classes} on this node, {labels} on the driver")
        self.labels, self.batch_size, self.with_timeline = list(labels), batch_size, with_timeline
        self.pipeline_kwargs = pipeline_kwargs

    def __call__(self, batch: dict) -> dict:
        columns = {name: [] for name in RESULT_COLUMNS}
        for block, paths in zip(batch["block"], batch["paths"]):
            paths = [str(path) for path in paths]
            for path in paths:
                fault_point(f"predict:ray:file:{os.path.basename(path)}")
            results, failures = _predict_group(self.pipe, paths, self.batch_size, self.pipeline_kwargs)
            fault_point(f"predict:ray:block{int(block)}:predicted")
            columns["block"].append(int(block))
            columns["predicted"].append(len(results))
            columns["failed"].append(len(failures))
            columns["audio_seconds"].append(float(sum(result["duration_s"] for _, result in results)))
            columns["rows"].append(csv_text([_row(f, r, self.labels) for f, r in results]).decode("utf-8"))
            columns["errors"].append(csv_text([list(failure) for failure in failures]).decode("utf-8"))
            lines = [_timeline_line(f, r) for f, r in results] if self.with_timeline else []
            columns["timeline"].append("".join(lines))
        return {name: np.asarray(values) for name, values in columns.items()}


# ----------------------------------------------------------------------------------------------------------------
# Part files and their manifest (written by the driver only)
# ----------------------------------------------------------------------------------------------------------------


def parts_folder(output: str | os.PathLike) -> Path:
    """`<output>.parts/`: the part files and `manifest.jsonl` of an unfinished Ray job writing `output`."""
    output = Path(output)
    return output.with_name(output.name + ".parts")


class PartFiles:
    """The blocks a Ray job has received but not yet merged into the final outputs.

    `manifest.jsonl` gets one line per block, appended (fsynced) after the block's part files are in place: a
    block is recorded by its line and only then; part files without a line (the driver died in between) are
    ignored and the block is predicted again.
    """

    def __init__(self, output, outputs: JobOutputs):
        self.folder = parts_folder(output)
        self.outputs = outputs
        self.manifest = self.folder / "manifest.jsonl"
        self.recorded: dict[int, dict] = {}
        self.skipped: set[int] = set()
        self.next_block = 0

    def _paths(self, block: int) -> tuple[Path, Path, Path]:
        stem = self.folder / f"part-{block:06d}"
        return stem.with_suffix(".csv"), stem.with_suffix(".errors.csv"), stem.with_suffix(".jsonl")

    def merge_leftovers(self) -> int:
        """Merge the blocks recorded by an interrupted run (in block order), then start an empty folder. Returns the
        number of files they held."""
        files = 0
        if self.manifest.is_file():
            repair_partial_line(self.manifest)
            entries = [json.loads(line) for line in self.manifest.read_text(encoding="utf-8").splitlines()]
            for entry in sorted(entries, key=lambda entry: entry["block"]):
                files += self._merge(entry["block"])
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        return files

    def record(self, result: dict) -> bool:
        """Write one block's parts, then its manifest line; merge the blocks now complete in sequence. Returns False
        for a block already recorded (never written twice)."""
        block = int(result["block"])
        if block in self.recorded:
            return False
        rows, errors, timeline = self._paths(block)
        atomic_write_text(rows, csv_text([], self.outputs.header).decode("utf-8") + result["rows"])
        atomic_write_text(errors, csv_text([], ERROR_COLUMNS).decode("utf-8") + result["errors"])
        if self.outputs.timeline is not None:
            atomic_write_text(timeline, result["timeline"])
        entry = {key: result[key] for key in ("block", "predicted", "failed", "audio_seconds")}
        append_bytes(self.manifest, (json.dumps(entry) + "\n").encode("utf-8"), "manifest")
        self.recorded[block] = entry
        fault_point(f"predict:ray:part-recorded:block{block}")
        self._merge_ready()
        return True

    def skip(self, blocks) -> None:
        """Blocks that will never be recorded (Ray dropped them): the merge goes on past them."""
        self.skipped.update(blocks)
        self._merge_ready()

    def _merge_ready(self) -> None:
        while self.next_block in self.recorded or self.next_block in self.skipped:
            if self.next_block in self.recorded:
                self._merge(self.next_block)
            self.next_block += 1

    def _merge(self, block: int) -> int:
        """Append one recorded block's parts to the final outputs (rows already there dropped); remove them."""
        rows_path, errors_path, timeline_path = self._paths(block)
        rows = [list(row.values()) for row in _read_rows(rows_path, self.outputs.header)]
        errors = [list(row.values()) for row in _read_rows(errors_path, ERROR_COLUMNS)]
        lines = timeline_path.read_text(encoding="utf-8").splitlines(keepends=True) if timeline_path.is_file() else []
        self.outputs.append(rows, errors, lines)
        for path in (rows_path, errors_path, timeline_path):
            path.unlink(missing_ok=True)
        return len(rows) + len(errors)

    def finish(self) -> None:
        """Every block merged: remove the folder."""
        shutil.rmtree(self.folder, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------
# The driver
# ----------------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None):
    """The Ray session the job runs in: the current one if `ray.init` was called already (tests, notebooks), the
    cluster at `address` (`ray://host:10001`, `host:6379` or `auto`), or a new local Ray (`num_cpus`: default all
    cores) that is shut down afterwards."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()


def _fault_env() -> dict:
    """The crash tests' fault specification, passed on to the actors (a no-op in normal runs)."""
    return {name: os.environ[name] for name in (FAULT_ENV, FAULT_LOG_ENV) if os.environ.get(name)}


def _run_blocks(ray, blocks: list[list[str]], first_block: int, actor_args: dict, settings: dict):
    """Stream the results of `blocks` (numbered from `first_block`) from an actor pool, as dicts, as they finish."""
    import ray.data

    context = ray.data.DataContext.get_current()
    saved = (context.max_errored_blocks, context.enable_progress_bars, context.print_on_execution_start)
    context.max_errored_blocks = -1  # a block whose worker died max_retries + 1 times is dropped (see the caller)
    context.enable_progress_bars = context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    items = [{"block": first_block + k, "paths": paths} for k, paths in enumerate(blocks)]
    # Ray Data's default is max_task_retries=-1 (forever): a file that kills its worker would loop. Ray 2.60
    # deprecates passing actor options as keyword arguments (named parameters exist only for scheduling) but still
    # applies them; the warning is silenced here, and tests/inference/test_ray_engine.py checks they are applied.
    retries = {"max_restarts": -1, "max_task_retries": settings["max_retries"]}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*ray_remote_args.* is deprecated")
        dataset = ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            BlockPredictor,
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=settings["actors"]),
            fn_constructor_kwargs=actor_args,
            num_cpus=settings["cpus_per_actor"],
            runtime_env={"env_vars": _fault_env()} if _fault_env() else None,
            **retries,
        )
    try:
        yield from dataset.iter_rows()
    finally:
        context.max_errored_blocks, context.enable_progress_bars, context.print_on_execution_start = saved


def predict_files_on_ray(
    model: str | os.PathLike,
    paths: list[str],
    output: str | os.PathLike,
    *,
    backend: str = "torch",
    threads: int | None = None,
    address: str | None = None,
    actors: int | None = None,
    cpus_per_actor: float = 1,
    num_cpus: int | None = None,
    errors_path: str | os.PathLike | None = None,
    timeline_path: str | os.PathLike | None = None,
    batch_size: int = 1,
    files_per_block: int = 16,
    max_retries: int = 3,
    retry_errors: bool = False,
    progress: bool | None = None,
    pipeline_kwargs: dict | None = None,
    settings: dict | None = None,
) -> BatchSummary:
    """Predict every file of `paths` with the checkpoint `model` into `output`, on Ray (see the module docstring).

    Args:
        model: checkpoint folder or Hub id, readable at the same path on every node.
        backend: "torch", "onnx" or "onnx-int8" (the ONNX files are created once, by the driver, before the actors
            start).
        threads: intra-op threads per actor (default: `cpus_per_actor`).
        address: a Ray cluster to join; None starts a local Ray with `num_cpus` CPUs (default: all).
        actors: actors in the pool (default: the cluster's CPUs ÷ `cpus_per_actor`).
        files_per_block: files per block: the unit of scheduling, retry, part file and merge.
        max_retries: times a block is retried after its worker process died, before its files run one by one.
        settings: the job's `job_record.job_settings` (default: computed from `model`, `backend`, the window).
        The other arguments are `batch.predict_files`'s.

    Raises:
        RayNotInstalled: Ray Data is not installed.
        BatchJobError: the output was written by a model with other labels, or by a job with other settings
            (`job_record`: the model and its files, the backend, the window; the driver records them).
        ValueError: `pipeline_kwargs`' window settings do not suit the model (before any file is read).
    """
    import_ray()
    started = time.perf_counter()
    labels = _checked_labels(model, backend, pipeline_kwargs)
    settings = settings or _job_settings(model, backend, pipeline_kwargs)
    outputs = JobOutputs.open(output, labels, errors_path, timeline_path, retry_errors, settings=settings)
    parts = PartFiles(output, outputs)
    parts.merge_leftovers()
    pending = [path for path in paths if path not in outputs.done and path not in outputs.failed]
    blocks, seconds = _blocks(outputs, pending, files_per_block)
    actor_args = {
        "model": str(model),
        "backend": backend,
        "threads": threads or max(1, int(cpus_per_actor)),
        "batch_size": batch_size,
        "pipeline_kwargs": pipeline_kwargs or {},
        "labels": labels,
        "with_timeline": outputs.timeline is not None,
        "cwd": os.getcwd(),
    }
    bar = progress_bar(sum(seconds.values()) / 3600, progress)
    with ray_session(address, num_cpus) as ray:
        if actors is None:
            actors = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_actor))
        settings = {"actors": min(actors, max(1, len(blocks))), "cpus_per_actor": cpus_per_actor}
        settings["max_retries"] = max_retries
        _run_all(_Stream(ray, parts, actor_args, settings, bar, seconds), blocks)
    bar.close()
    parts.finish()
    entries = parts.recorded.values()
    return BatchSummary(
        total=len(paths),
        skipped=len(paths) - len(pending),
        predicted=sum(entry["predicted"] for entry in entries),
        failed=sum(path in outputs.failed for path in pending),
        audio_seconds=sum(entry["audio_seconds"] for entry in entries),
        wall_seconds=time.perf_counter() - started,
        repaired=outputs.repaired,
    )


def _checked_labels(model, backend: str, pipeline_kwargs: dict | None) -> list[str]:
    """The one loader, once on the driver: the label order of the columns, the window settings checked against the
    model (`ValueError` before any file is read), and the ONNX files in place before any actor starts (two actors
    never export at once)."""
    from .onnx_backend import load_pipeline

    pipe = load_pipeline(model, backend=backend)
    pipe.window_and_step(**window_settings(pipeline_kwargs))
    return list(pipe.classes)


def _job_settings(model, backend: str, pipeline_kwargs: dict | None) -> dict:
    """The job's settings recorded beside its output (`job_record`; the actors use the checkpoint's calibration)."""
    windows = window_settings(pipeline_kwargs)
    return job_settings(model, backend, windows.get("window_length_s"), windows.get("window_overlap_s"))


def _blocks(outputs: JobOutputs, pending: list[str], files_per_block: int):
    """The files' durations from their headers (unreadable files listed as errors now), longest first, cut into
    blocks of `files_per_block`: (blocks of paths, {path: seconds})."""
    timed, unreadable = header_durations(pending)
    timed.sort(key=lambda item: -item[1])
    outputs.append([], [list(failure) for failure in unreadable], [])
    size = max(1, files_per_block)
    blocks = [[path for path, _ in timed[start : start + size]] for start in range(0, len(timed), size)]
    return blocks, dict(timed)


def _run_all(stream: "_Stream", blocks: list[list[str]]) -> None:
    """Run every block; the files of blocks Ray dropped (their worker kept dying) run again one per block, so a
    file that kills its worker costs only that file, listed as an error."""
    lost = stream(blocks, 0)
    if lost:
        singles = [[path] for block in lost for path in blocks[block]]
        lost = stream(singles, len(blocks))
        retries = stream.settings["max_retries"]
        times = "once" if retries == 0 else f"{retries + 1} times"
        reason = f"the worker process died {times} on this file (out of memory? a crash?)"
        stream.parts.outputs.append([], [[singles[block][0], reason] for block in lost], [])


@dataclass
class _Stream:
    """One pass of the job over some blocks: results recorded as they come, the progress bar advanced."""

    ray: object
    parts: PartFiles
    actor_args: dict
    settings: dict
    bar: object
    seconds: dict[str, float]

    def __call__(self, blocks: list[list[str]], first_block: int) -> list[int]:
        """Run `blocks` (numbered from `first_block`); returns the (relative) numbers of the blocks Ray dropped,
        which the merge then goes past."""
        received = set()
        if blocks:
            for result in _run_blocks(self.ray, blocks, first_block, self.actor_args, self.settings):
                if self.parts.record(result):
                    block = int(result["block"]) - first_block
                    received.add(block)
                    hours = sum(self.seconds[path] for path in blocks[block]) / 3600
                    self.bar.update(min(self.bar.n + hours, self.bar.total) - self.bar.n)
        lost = [block for block in range(len(blocks)) if block not in received]
        self.parts.skip(first_block + block for block in lost)
        return lost
