"""The checks every inference entry point runs before it writes anything (predict.py, the timeline, score.py, the
app): the model argument, the inputs, the outputs.

Problems are `modeling.data.problems.Problem`s, raised together as one `CheckError` grouped by cause, in train.py's
format ("N problem(s) in ... (nothing written):"). A model that is not a checkpoint is reported with what was given
and what is expected, and what was probably meant: a run directory's fold models (read through
`modeling.rundir.reader`), or a name close to a mistyped one.

Exit codes of the batch entry points (predict.py, the timeline): `modeling.data.problems.BATCH_EXIT_CODES`.
"""

import difflib
import os
from pathlib import Path

from ..auto_frame_aligned import CheckpointNotFoundError, checkpoint_model_type
from ..data.problems import BATCH_EXIT_CODES, CheckError, Problem, report
from ..rundir.reader import FinishedRun, fold_name
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
    parent = path.parent
    if path.exists() or not parent.is_dir():
        return ""
    close = difflib.get_close_matches(path.name, sorted(os.listdir(parent)), n=2, cutoff=0.6)
    return f"Did you mean {' or '.join(str(parent / name) for name in close)}?" if close else ""


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


def raise_on_problems(problems: list[Problem], source: str, hint: str = "") -> None:
    """One `CheckError` listing every problem (grouped by cause) when any blocks."""
    if any(problem.blocking for problem in problems):
        raise CheckError(problems, source=source, hint=hint, outcome="nothing written")


def warnings_report(problems: list[Problem], source: str) -> str:
    """The grouped listing of problems that stop nothing (e.g. unreadable files a batch goes on without)."""
    return report(problems, source, outcome="")


__all__ = [
    "BATCH_EXIT_CODES",
    "audio_problems",
    "load_checked",
    "model_hint",
    "model_problem",
    "model_problems",
    "raise_on_problems",
    "warnings_report",
]
