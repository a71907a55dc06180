"""What score.py checks before it scores or writes anything: the run (a finished train.py run: every fold folder
finished), the corpus configs, the label map, the perturbations and the output folder. Every problem is a
`modeling.data.problems.Problem`, raised together as one `CheckError` (grouped by cause, "nothing written"), as
train.py, predict.py and the timeline do."""

import os
from pathlib import Path

from ..data import CorpusError
from ..data.problems import Problem
from ..inference.checks import raise_on_problems
from ..inference.output_files import output_problems
from ..rundir.reader import FinishedRun, RunReadError, fold_name
from ..training.run_config import ConfigError
from .cross_corpus import corpus_config, parse_label_map
from .perturbations import parse_perturbation


def run_problems(run_dir) -> list[Problem]:
    """A `--run-dir` that is not a finished train.py run: no such folder, a checkpoint instead of a run, no fold
    model, folds that are not finished (which, and why: the ensemble and the table would silently miss them)."""
    expected = "expected a train.py run directory (its fold<k>/stage2/best models)"
    run = FinishedRun(run_dir)
    why = run.not_a_run()  # the reader's words: no such directory (and the closest names), a checkpoint, ...
    if why:
        checkpoint = " (predict.py takes one checkpoint)" if (run.path / "config.json").is_file() else ""
        return [Problem("--run-dir", f"--run-dir {run_dir}: {why}{checkpoint}")]
    problems = [
        Problem(
            "--run-dir",
            f"--run-dir {run_dir}: {fold_name(k)} is unfinished: {why}. Finish the run first (the same train.py "
            "command resumes it): an ensemble of the other folds would not be the run's.",
            cause="unfinished folds",
        )
        for k, why in run.unfinished_folds().items()
    ]
    if not run.best_models("stage2") and not problems:
        problems.append(Problem("--run-dir", f"--run-dir {run_dir}: no fold<k>/stage2/best model; {expected}."))
    try:
        run.labels()
    except RunReadError as error:
        problems.append(Problem("--run-dir", f"--run-dir {run_dir}: {error}"))
    return problems


def score_problems(args) -> tuple[list, dict]:
    """(parsed perturbations, label map) of score.py's arguments. Raises `CheckError` listing every problem."""
    problems, perturbations, label_map = [], [], {}
    for spec in args.perturb:
        try:
            perturbations.append(parse_perturbation(spec))
        except ValueError as error:
            problems.append(Problem("--perturb", str(error), value=spec, cause="bad --perturb"))
    try:
        label_map = parse_label_map(args.label_map)
    except CorpusError as error:
        problems.append(Problem("--label-map", str(error)))
    problems += run_problems(args.run_dir)
    configs = {"--config": (args.config, args.data_dir), "--ensemble-calibration": (args.ensemble_calibration, None)}
    for option, (config, data_dir) in configs.items():
        if config is None:
            continue
        if not os.path.isfile(config):
            problems.append(Problem(option, f"{option} {config}: no such file; expected a YAML corpus config."))
            continue
        try:
            corpus_config(config, data_dir)
        except (ConfigError, CorpusError, OSError) as error:
            problems.append(Problem(option, f"{option}: {error}"))
    problems += output_problems({"--output-dir": Path(args.output_dir) / "scores.json"})
    raise_on_problems(problems, source="score.py's arguments")
    return perturbations, label_map


__all__ = ["run_problems", "score_problems"]
