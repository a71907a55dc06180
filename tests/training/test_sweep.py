"""sweep.py: the paper's Tables 4 and 5 and the MSP-Podcast imbalance study as grids sharing one stage 1 per fold;
every run's config checked before training; the pivot table from finished runs."""

import json
from pathlib import Path

import pytest
import yaml
from helpers import REPO
from runs import write_config, write_run

from modeling.training.run_config import ConfigError
from modeling.training.sweep import planned_configs, read_sweep, run_sweep, sweep_markdown


SWEEPS = REPO / "sweeps"


def test_table4_is_the_nine_margin_and_eal_weight_runs_sharing_stage1():
    sweep = read_sweep(SWEEPS / "table4_margin_eal.yaml")
    pairs = [(run.overrides["stage2.eal_margin"], run.overrides["stage2.eal_weight"]) for run in sweep.runs]
    assert pairs == [(m, w) for m in (0.4, 0.6, 0.8) for w in (0.05, 0.10, 0.15)]
    assert all(run.overrides["stage2.fual_weight"] == 0.05 for run in sweep.runs) and sweep.shares_stage1
    assert sweep.runs[0].name == "eal_margin=0.4,eal_weight=0.05" and sweep.base == REPO / "configs" / "iemocap.yaml"


def test_table5_and_the_msp_imbalance_study():
    table5 = read_sweep(SWEEPS / "table5_fual.yaml")
    assert [run.overrides for run in table5.runs] == [
        {"stage2.eal_margin": 0.8, "stage2.eal_weight": 0.05, "stage2.fual_weight": w} for w in (0.05, 0.10, 0.15)
    ]
    msp = read_sweep(SWEEPS / "msp_podcast_imbalance.yaml")
    assert [run.name for run in msp.runs] == [
        "ce",
        "ce_eal_fual",
        "weighted",
        "weighted_eal_fual",
        "focal",
        "focal_eal_fual",
        "soft",
        "soft_eal_fual",
    ]
    assert msp.shares_stage1 and msp.runs[6].overrides["stage2.soft_labels"] is True


def tiny_sweep(tmp_path, runs: dict, grid: dict | None = None) -> Path:
    base = write_config(tmp_path / "base.yaml")
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": Path(base).name, "grid": grid or {}, "runs": runs}))
    return path


def test_later_runs_reuse_the_first_runs_stage1_and_every_config_resolves(tmp_path):
    sweep = read_sweep(tiny_sweep(tmp_path, {"focal": {"stage2.focal_gamma": 2.0}}, {"stage2.eal_weight": [0.1, 0.2]}))
    planned = planned_configs(sweep, tmp_path / "out")
    assert [run.name for run, _ in planned] == ["eal_weight=0.1", "eal_weight=0.2", "focal"]
    assert [config["stage1"]["from_run"] for _, config in planned] == [
        None,
        str(tmp_path / "out" / "eal_weight=0.1"),
        str(tmp_path / "out" / "eal_weight=0.1"),
    ]
    assert [config["stage2"]["eal_weight"] for _, config in planned[:2]] == [0.1, 0.2]
    assert planned[2][1]["stage2"]["focal_gamma"] == 2.0


def test_a_grid_over_stage1_trains_stage1_per_run_and_bad_runs_fail_first(tmp_path):
    sweep = read_sweep(tiny_sweep(tmp_path, {}, {"stage1.backbone_learning_rate": [1e-4, 1e-3]}))
    assert not sweep.shares_stage1
    assert all(config["stage1"]["from_run"] is None for _, config in planned_configs(sweep, tmp_path / "out"))
    bad_runs = {"a": {"stage2.focal_gamma": -1}, "b": {"stage2.metric_for_best_model": "f1"}}
    bad = read_sweep(tiny_sweep(tmp_path, bad_runs))
    with pytest.raises(ConfigError) as error:
        run_sweep(tmp_path / "sweep.yaml", tmp_path / "out")
    assert "run a:" in str(error.value) and "stage2.focal_gamma must be a number >= 0" in str(error.value)
    assert "run b:" in str(error.value) and "stage2.metric_for_best_model must be one of" in str(error.value)
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written
    assert bad.runs[0].name == "a"


def test_the_pivot_table_from_finished_runs(tmp_path):
    grid = {"stage2.eal_margin": [0.4, 0.8], "stage2.eal_weight": [0.05, 0.1]}
    path = tiny_sweep(tmp_path, {}, grid)
    content = yaml.safe_load(path.read_text())
    table = {"rows": "stage2.eal_weight", "columns": "stage2.eal_margin"}
    path.write_text(yaml.safe_dump({**content, "table": table}))
    sweep = read_sweep(path)
    for number, run in enumerate(sweep.runs[:3]):  # the last run has not finished
        run_dir = write_run(tmp_path / "out" / run.name)
        results = json.loads((run_dir / "results.json").read_text())
        results["mean"] = {"ua": 0.70 + number / 100, "wa": 0.60 + number / 100}
        (run_dir / "results.json").write_text(json.dumps(results))
    markdown = sweep_markdown(sweep, tmp_path / "out")
    assert "| stage2.eal_weight \\ stage2.eal_margin | 0.4 | 0.8 |" in markdown
    assert "| 0.05 | 70.00 / 60.00 | 72.00 / 62.00 |" in markdown
    assert "| 0.1 | 71.00 / 61.00 | — |" in markdown
    assert "Stage 1 is trained once per fold (run eal_margin=0.4,eal_weight=0.05) and shared by every run." in markdown


@pytest.mark.heavy  # two real two-stage trainings (~1-2 min on 2 loaded cores); the units above cover the planning
def test_a_two_run_sweep_trains_stage1_once_and_compares(tmp_path):
    path = tiny_sweep(tmp_path, {"focal": {"stage2.focal_gamma": 2.0, "stage2.metric_for_best_model": "macro_f1"}})
    content = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**content, "runs": {"plain": {}, **content["runs"]}}))
    run_sweep(path, tmp_path / "out", folds="1", max_epochs=1)
    first, second = tmp_path / "out" / "plain", tmp_path / "out" / "focal"
    weights = "fold1/stage1/best/model.safetensors"
    assert (first / weights).stat().st_ino == (second / weights).stat().st_ino  # linked, not retrained
    assert not (second / "fold1" / "stage1" / "checkpoint-1").exists()
    assert (tmp_path / "out" / "comparison.md").is_file() and (tmp_path / "out" / "sweep.md").is_file()
    assert json.loads((second / "results.json").read_text())["checkpoint_selection"]["stage2"] == "macro_f1"
