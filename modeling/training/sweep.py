"""Grids of train.py runs that share one stage 1 per fold: the paper's Tables 4 and 5, the imbalance study.

A sweep file (YAML, `sweeps/`) names a base config and the runs:

    base: ../iemocap.yaml            # relative to the sweep file
    set: {stage2.fual_weight: 0.05}  # overrides of every run
    grid:                            # the product of these values, one run each ...
      stage2.eal_margin: [0.4, 0.6, 0.8]
      stage2.eal_weight: [0.05, 0.10, 0.15]
    runs:                            # ... and/or named runs with their own overrides
      focal: {stage2.focal_gamma: 2.0}
    table: {rows: stage2.eal_weight, columns: stage2.eal_margin}   # optional: a pivot table of test UA / WA

Each run is an ordinary run directory `OUTPUT/<name>` (resumed like any run: finished folds and stages are
skipped). When no run changes anything outside `stage2.` (and `set:` may change anything), the first run trains
stage 1 and every other run reuses its `fold<k>/stage1/best` (`stage1.from_run`): one stage 1 per fold for the whole
grid. Every run's config is resolved and checked before anything trains. At the end `compare_runs` compares every
run with the first (OUTPUT/comparison.md, .json) and `sweep.md` holds the pivot table.
"""

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .run_config import ConfigError, config_origins


@dataclass
class SweepRun:
    """One run of a sweep: its directory name and its `--set` overrides (KEY=VALUE, YAML values)."""

    name: str
    overrides: dict = field(default_factory=dict)
    shared_from: Path | None = None  # the run whose stage 1 this run reuses (set by `planned_configs`)

    def set_arguments(self) -> list[str]:
        return [f"{key}={json.dumps(value)}" for key, value in self.overrides.items()]  # JSON is YAML


@dataclass
class Sweep:
    base: Path
    runs: list[SweepRun]
    shares_stage1: bool
    table: dict | None = None


def _value_name(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def read_sweep(path: str | Path) -> Sweep:
    """The runs of a sweep file (see the module docstring). Raises `ConfigError` naming the file and the key."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"{path}: sweep file does not exist.")
    content = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(content) - {"base", "set", "grid", "runs", "table"})
    problems = [f"unknown key(s) {unknown}; expected base, set, grid, runs, table."] if unknown else []
    if not content.get("base"):
        problems.append("base (the config every run extends) is required.")
    grid, named, common = content.get("grid") or {}, content.get("runs") or {}, content.get("set") or {}
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            problems.append(f"grid.{key} must be a non-empty list of values, got {values!r}.")
    if not grid and not named:
        problems.append("no runs: give grid: and/or runs:.")
    if problems:
        raise ConfigError(f"{path}: " + " ".join(problems))
    runs = []
    keys = list(grid)
    for values in itertools.product(*(grid[key] for key in keys)) if keys else []:
        name = ",".join(f"{key.rsplit('.', 1)[-1]}={_value_name(value)}" for key, value in zip(keys, values))
        runs.append(SweepRun(name, {**common, **dict(zip(keys, values))}))
    runs += [SweepRun(str(name), {**common, **(overrides or {})}) for name, overrides in named.items()]
    varied = set(keys) | {key for overrides in named.values() for key in (overrides or {})}
    shares = all(key.startswith("stage2.") for key in varied)
    return Sweep((path.parent / content["base"]).resolve(), runs, shares, content.get("table"))


def planned_configs(sweep: Sweep, output_dir: Path, data_dir=None, max_epochs=None) -> list[tuple[SweepRun, dict]]:
    """(run, resolved config) of every run, every problem of every run listed in one `ConfigError` before anything
    trains. With a shared stage 1, runs after the first get `stage1.from_run = OUTPUT/<first run>`."""
    from .config_checks import resolve_checked_config

    planned, problems = [], []
    first = output_dir / sweep.runs[0].name
    for index, run in enumerate(sweep.runs):
        overrides = run.set_arguments()
        if sweep.shares_stage1 and index > 0:
            overrides.append(f"stage1.from_run={first}")
            run.shared_from = first
        try:
            planned.append((run, resolve_checked_config(sweep.base, overrides, data_dir, max_epochs)))
        except ConfigError as error:
            problems.append(f"run {run.name}: {error}")
    if problems:
        raise ConfigError("\n".join(problems))
    return planned


def run_sweep(
    path: str | Path, output_dir: str | Path, data_dir=None, folds=None, max_epochs=None, skip_bad_audio=False
) -> dict:
    """Train every run of the sweep file in turn (resuming what exists), then compare them; returns the
    comparison report (`modeling.evaluation.compare.compare_runs`)."""
    from ..evaluation.compare import compare_runs, comparison_markdown
    from ..rundir.atomic import atomic_write_json, atomic_write_text
    from .experiment import run_experiment

    sweep, output_dir = read_sweep(path), Path(output_dir)
    planned = planned_configs(sweep, output_dir, data_dir, max_epochs)
    for run, config in planned:
        origins = config_origins(sweep.base, run.set_arguments(), data_dir=data_dir)
        run_experiment(config, output_dir / run.name, folds, skip_bad_audio, origins=origins)
    paths = [output_dir / run.name for run, _ in planned]
    report = compare_runs(paths) if len(paths) > 1 else {}
    if report:
        atomic_write_text(output_dir / "comparison.md", comparison_markdown(report))
        atomic_write_json(output_dir / "comparison.json", report)
    atomic_write_text(output_dir / "sweep.md", sweep_markdown(sweep, output_dir))
    return report


def sweep_markdown(sweep: Sweep, output_dir: Path) -> str:
    """`sweep.md`: every run's overrides and mean test UA / WA (%), and the pivot table when the sweep has one."""
    from ..rundir.reader import FinishedRun

    results = {}
    for run in sweep.runs:
        try:
            results[run.name] = FinishedRun(output_dir / run.name).results()
        except (OSError, ValueError):
            results[run.name] = None

    def cell(name) -> str:
        mean = (results.get(name) or {}).get("mean") or {}
        if mean.get("ua") is None:
            return "—"
        return f"{100 * mean['ua']:.2f} / {100 * mean['wa']:.2f}"

    lines = [f"# Sweep over {sweep.base.name}", ""]
    lines += ["Test UA / WA (%), mean over the folds of each run. " + _sharing(sweep), ""]
    lines += ["| run | overrides | UA / WA |", "|---|---|---|"]
    lines += [f"| {run.name} | {', '.join(run.set_arguments())} | {cell(run.name)} |" for run in sweep.runs]
    if sweep.table:
        lines += ["", *pivot_table(sweep, cell)]
    return "\n".join(lines) + "\n"


def _sharing(sweep: Sweep) -> str:
    if sweep.shares_stage1:
        return f"Stage 1 is trained once per fold (run {sweep.runs[0].name}) and shared by every run."
    return "Each run trains its own stage 1 (the sweep changes settings outside stage2)."


def pivot_table(sweep: Sweep, cell) -> list[str]:
    """Rows: the values of `table.rows`, columns: those of `table.columns` (the grid keys), cells from `cell`."""
    row_key, column_key = sweep.table["rows"], sweep.table["columns"]
    by_values = {(run.overrides.get(row_key), run.overrides.get(column_key)): run.name for run in sweep.runs}
    rows = list(dict.fromkeys(run.overrides.get(row_key) for run in sweep.runs))
    columns = list(dict.fromkeys(run.overrides.get(column_key) for run in sweep.runs))
    lines = [f"| {row_key} \\ {column_key} | " + " | ".join(_value_name(c) for c in columns) + " |"]
    lines.append("|---|" + "---|" * len(columns))
    for row in rows:
        cells = [cell(by_values[row, column]) if (row, column) in by_values else "" for column in columns]
        lines.append(f"| {_value_name(row)} | " + " | ".join(cells) + " |")
    return lines


__all__ = ["Sweep", "SweepRun", "planned_configs", "read_sweep", "run_sweep", "sweep_markdown"]
