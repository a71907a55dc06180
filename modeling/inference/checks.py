"""The checks every inference entry point runs before it writes anything (predict.py, the timeline, score.py, the
app): the model argument, the inputs, the outputs.

Problems are `modeling.data.problems.Problem`s, raised together as one `CheckError` grouped by cause, in train.py's
format ("N problem(s) in ... (nothing written):"). A model that is not a checkpoint is reported with what was given
and what is expected, and what was probably meant: a run directory's fold models (read through
`modeling.rundir.reader`), or a name close to a mistyped one.

Exit codes of the batch entry points (predict.py, the timeline): `modeling.data.problems.BATCH_EXIT_CODES`.
"""

from pathlib import Path
from types import SimpleNamespace

from ..auto_frame_aligned import CheckpointNotFoundError, checkpoint_model_type
from ..data.problems import BATCH_EXIT_CODES, CheckError, Problem, report
from ..frames import frame_geometry
from ..rundir.reader import FinishedRun, close_names_hint, fold_name
from ..timeline_segments import WINDOW_LENGTH_S, WINDOW_OVERLAP_S, window_problems
from .batch import header_durations


SUGGESTED_FOLDS = 3


def run_models_hint(path: Path) -> str:
    """ "It is a train.py run: pass one fold's best model, e.g. RUN/fold1/stage2/best, ..." for a run directory
    (its folds' stage-2 best models, read through `FinishedRun`), else ""."""
    run = FinishedRun(path)
    models = run.best_models("stage2")
    if models:
        shown = ", ".join(str(best) for best in list(models.values())[:SUGGESTED_FOLDS])
        more = f" ({len(models)} folds)" if len(models) > SUGGESTED_FOLDS else ""
        return f"It is a train.py run: pass one fold's best model, e.g. {shown}{more}."
    unfinished = run.unfinished_folds()
    if unfinished:
        folds = "; ".join(f"{fold_name(k)}: {why}" for k, why in unfinished.items())
        return f"It looks like a train.py run without a stage-2 best model ({folds})."
    return ""


def model_hint(model: str) -> str:
    """What `model` probably meant: a run directory's fold models, or existing names close to a mistyped path."""
    path = Path(model).expanduser()
    if path.is_dir():
        return run_models_hint(path)
    return close_names_hint(path)


def model_problem(model, error: Exception, key: str = "--model") -> Problem:
    """A `Problem` for a model that could not be opened (`error`), with `model_hint`'s suggestion."""
    hint = model_hint(str(model))
    return Problem(key, f"{key}: {error}" + (f" {hint}" if hint else ""), value=model, cause=None)


def model_problems(model, key: str = "--model", **hub_kwargs) -> list[Problem]:
    """Whether `model` opens as a checkpoint (its config.json: no weights are read), as a list of problems."""
    try:
        checkpoint_model_type(model, **hub_kwargs)
    except CheckpointNotFoundError as error:
        return [model_problem(model, error, key)]
    return []


def load_checked(load, model, problems: list[Problem], key: str = "--model"):
    """`load()` (what opens `model`: a pipeline, a model), or None with the reason appended to `problems` (a model
    that is not a checkpoint, an incomplete one, one without ONNX files on the Hub...)."""
    try:
        return load()
    except (ValueError, OSError) as error:  # CheckpointNotFoundError, Backbone/HeadWeightsError, ONNX, Hub errors
        problems.append(model_problem(model, error, key))
        return None


def audio_problems(paths: list[str]) -> tuple[list[tuple[str, float]], list[Problem]]:
    """([(path, seconds)] of the files whose header reads, [non-blocking problem per file that does not]): found
    before anything runs; a batch goes on with the others."""
    good, bad = header_durations(paths)
    return good, [Problem(path, f"{path}: {why}", blocking=False, cause=why.split(" (")[0]) for path, why in bad]


WINDOW_FLAGS = ("--window", "--window-overlap")  # the window options of predict.py and the timeline


def add_window_arguments(parser, *overlap_aliases: str) -> None:
    """`--window` and `--window-overlap` (seconds; the pipeline's defaults), as `args.window` and
    `args.window_overlap`; `overlap_aliases`: older names of the overlap flag (the timeline's `--overlap`)."""
    parser.add_argument(
        WINDOW_FLAGS[0],
        type=float,
        default=WINDOW_LENGTH_S,
        help=f"longer inputs run in windows of this many s (default {WINDOW_LENGTH_S:g}; 0: every input whole, in "
        "one pass: memory grows with its length)",
    )
    parser.add_argument(
        WINDOW_FLAGS[1],
        *overlap_aliases,
        dest="window_overlap",
        type=float,
        default=WINDOW_OVERLAP_S,
        help=f"overlap of consecutive windows in s (default {WINDOW_OVERLAP_S:g}); must be shorter than --window",
    )


def window_flag_problems(window, overlap, pipe=None, geometry: dict | None = None) -> list[Problem]:
    """The `--window`/`--window-overlap` values (seconds) checked by the pipeline's own rule
    (`pipeline_frame_aligned.window_problems`): without a pipeline, with the default geometry (before any model or
    file is read); with one, against its sampling rate and receptive field; with `geometry`
    (`checkpoint_window_geometry`: an engine whose workers load the model, not this process), against those."""
    if pipe is not None:
        geometry = dict(sampling_rate=pipe.sampling_rate, receptive_field=pipe.receptive_field)
    found = window_problems(window, overlap, names=WINDOW_FLAGS, **(geometry or {}))
    return [Problem("--window", message, value=(window, overlap)) for message in found]


def checkpoint_window_geometry(model, **hub_kwargs) -> dict | None:
    """{"sampling_rate": Hz, "receptive_field": samples} of a checkpoint, read from its config.json and
    preprocessor_config.json alone (no weights), as the pipeline has them once loaded; None when the feature
    extractor's file cannot be read (loading the pipeline then reports it)."""
    from transformers import PreTrainedConfig
    from transformers.feature_extraction_utils import FeatureExtractionMixin

    try:
        config, _ = PreTrainedConfig.get_config_dict(str(model), **hub_kwargs)
        extractor, _ = FeatureExtractionMixin.get_feature_extractor_dict(str(model), **hub_kwargs)
    except (OSError, ValueError):
        return None
    receptive_field = frame_geometry(SimpleNamespace(**config)).receptive_field
    return {"sampling_rate": extractor["sampling_rate"], "receptive_field": receptive_field}


def raise_on_problems(problems: list[Problem], source: str, hint: str = "") -> None:
    """One `CheckError` listing every problem (grouped by cause) when any blocks."""
    if any(problem.blocking for problem in problems):
        raise CheckError(problems, source=source, hint=hint, outcome="nothing written")


def warnings_report(problems: list[Problem], source: str) -> str:
    """The grouped listing of problems that stop nothing (e.g. unreadable files a batch goes on without)."""
    return report(problems, source, outcome="")


__all__ = [
    "BATCH_EXIT_CODES",
    "WINDOW_FLAGS",
    "add_window_arguments",
    "audio_problems",
    "checkpoint_window_geometry",
    "load_checked",
    "model_hint",
    "model_problem",
    "model_problems",
    "raise_on_problems",
    "warnings_report",
    "window_flag_problems",
]
