"""The two-stage, cross-validated loop: the run-directory contract, resume after an interrupted stage, and a
1-fold, 1-epoch `train.py` run on real speech. Real Trainers on real clips, tiny random backbones."""

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from transformers import TrainerCallback

from modeling.data.checks import DatasetCheckError
from modeling.training.run_config import resolve_config
from modeling.training.checkpoints import latest_checkpoint
from modeling.training.experiment import RunConfigMismatchError, run_experiment

from helpers import NEMO4, POLISH3, REPO


TINY_BACKBONE = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": [16, 16, 16],
    "conv_kernel": [10, 8, 8],
    "conv_stride": [5, 8, 8],
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "feat_extract_norm": "group",  # like wav2vec2-base: no attention mask, so padding changes the outputs
    "do_stable_layer_norm": False,
    "mask_time_prob": 0.0,
    "layerdrop": 0.0,
}


def write_config(path, **sections) -> str:
    config = {
        "seed": 7,
        "data": {
            "loader": "audio_folder",
            "root": str(POLISH3),
            "loader_args": {"labels": ["anger", "fear", "neutral"]},
            "speakers": ["m1", "m2", "m3"],
            "max_per_speaker": 12,
        },
        "model": {"random_init": TINY_BACKBONE},
        "training": {"full_determinism": True, "logging_steps": 1},
        "stage1": {"epochs": 3, "batch_size": 4, "backbone_learning_rate": 1e-3, "max_length_seconds": 1.0},
        "stage2": {"epochs": 2, "batch_size": 4, "num_trainable_layers": 1, "max_length_seconds": 1.0},
    }
    for name, values in sections.items():
        config[name] = {**config[name], **values} if isinstance(values, dict) else values
    path.write_text(yaml.safe_dump(config))
    return str(path)


class SimulatedCrash(Exception):
    pass


class CrashAfterSave(TrainerCallback):
    """Raise right after the Trainer saved its first checkpoint of `stage` (as a kill after that save would)."""

    def __init__(self, stage: str):
        self.stage = stage

    def on_save(self, args, state, control, **kwargs):
        if args.output_dir.endswith(self.stage):
            raise SimulatedCrash(f"{self.stage} interrupted at step {state.global_step}")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("uninterrupted")
    config = resolve_config(write_config(tmp / "tiny.yaml"))
    run_dir = tmp / "run"
    results = run_experiment(config, run_dir, folds="1")
    return config, run_dir, results


def test_run_directory_contract(uninterrupted):
    config, run_dir, results = uninterrupted
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == config
    fold = results["folds"]["1"]
    assert fold["checkpoint"] == "fold1/stage2/best" and fold["stage1"]["checkpoint"] == "fold1/stage1/best"
    assert fold["speakers"] == {"train": ["m3"], "validation": ["m2"], "test": ["m1"]}
    assert fold["num_examples"] == {"train": 12, "validation": 12, "test": 12}
    matrix = np.array(fold["test"]["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == 12 and list(matrix.sum(axis=1)) == [4, 4, 4]
    assert fold["test"]["wa"] == pytest.approx(np.trace(matrix) / 12)
    assert fold["test"]["ua"] == pytest.approx(np.mean(np.diag(matrix) / 4))
    assert results["mean"] == {"ua": fold["test"]["ua"], "wa": fold["test"]["wa"], "macro_f1": fold["test"]["macro_f1"]}
    assert results["std"] == {"ua": 0.0, "wa": 0.0, "macro_f1": 0.0}
    assert results["stage1"]["mean"] == {metric: fold["stage1"]["test"][metric] for metric in ("ua", "wa", "macro_f1")}
    assert results["labels"] == ["anger", "fear", "neutral"] and results["num_folds"] == 3
    assert json.loads((run_dir / "results.json").read_text()) == results
    assert json.loads((run_dir / "fold1" / "metrics.json").read_text()) == fold
    split = json.loads((run_dir / "fold1" / "split.json").read_text())
    assert split["test"]["class_counts"] == {"anger": 4, "fear": 4, "neutral": 4}
    for stage in ("stage1", "stage2"):
        best = run_dir / "fold1" / stage / "best"
        names = {p.name for p in best.iterdir()}
        assert {"config.json", "model.safetensors", "configuration_frame_aligned.py", "modeling_frame_aligned.py",
                "preprocessor_config.json"} <= names
        saved = json.loads((best / "config.json").read_text())
        assert saved["id2label"] == {"0": "anger", "1": "fear", "2": "neutral"} and "auto_map" in saved
        assert saved["pooling"] == ("attentive" if stage == "stage1" else "cls_attention")
        assert latest_checkpoint(run_dir / "fold1" / stage, remove_incomplete=False).endswith(
            "checkpoint-9" if stage == "stage1" else "checkpoint-6"
        )
    # The reported validation UA is the one the checkpoint was selected on (same batches, same model).
    for stage, reported in (("stage1", fold["stage1"]["validation"]["ua"]), ("stage2", fold["validation"]["ua"])):
        last = latest_checkpoint(run_dir / "fold1" / stage, remove_incomplete=False)
        assert json.loads((Path(last) / "trainer_state.json").read_text())["best_metric"] == pytest.approx(reported)
    stage2 = json.loads((run_dir / "fold1" / "stage2" / "best" / "config.json").read_text())
    assert (stage2["num_trainable_layers"], stage2["eal_weight"], stage2["fual_weight"]) == (1, 0.05, 0.05)
    for name in ("results.md", "confusion_matrix.png", "tsne.png"):
        assert (run_dir / name).stat().st_size > 0
    assert "| fold1 | m1 |" in (run_dir / "results.md").read_text()
    assert not list(run_dir.rglob(".*.tmp*"))


def test_finished_run_is_skipped_and_config_changes_are_refused(uninterrupted, tmp_path, caplog):
    config, run_dir, results = uninterrupted
    with caplog.at_level(logging.INFO, logger="modeling.training"):
        assert run_experiment(config, run_dir, folds="1") == results
    assert "Fold 1: finished earlier" in caplog.text
    changed = resolve_config(write_config(tmp_path / "changed.yaml", stage2={"epochs": 3}))
    with pytest.raises(RunConfigMismatchError, match=r"stage2.epochs: 2 → 3"):
        run_experiment(changed, run_dir, folds="1")


def test_stage1_reused_from_another_run(uninterrupted, tmp_path):
    """Table 3 rows share one stage 1: `stage1.from_run` copies it instead of training."""
    _, reference_dir, reference = uninterrupted
    config = resolve_config(
        write_config(tmp_path / "row.yaml", stage1={"from_run": str(reference_dir)}, stage2={"eal_weight": 0.0, "fual_weight": 0.0})
    )
    results = run_experiment(config, tmp_path / "run", folds="1")
    stage1 = tmp_path / "run" / "fold1" / "stage1"
    assert not list(stage1.glob("checkpoint-*"))
    source = reference_dir / "fold1" / "stage1" / "best" / "model.safetensors"
    assert (stage1 / "best" / "model.safetensors").read_bytes() == source.read_bytes()
    assert results["folds"]["1"]["stage1"] == reference["folds"]["1"]["stage1"]
    assert json.loads((tmp_path / "run" / "fold1" / "stage2" / "best" / "config.json").read_text())["eal_weight"] == 0.0
    missing = resolve_config(write_config(tmp_path / "missing.yaml", stage1={"from_run": str(tmp_path / "nowhere")}))
    with pytest.raises(DatasetCheckError, match=r"stage1.from_run: .*nowhere/fold1/stage1/best does not exist"):
        run_experiment(missing, tmp_path / "run2", folds="1")


def test_killed_after_training_before_best_was_saved_in_a_moved_directory(uninterrupted, tmp_path):
    """Training finished, the kill came before `best/`: the best checkpoint is found again, even after the run
    directory was moved (Trainer's stored best-checkpoint path is then stale)."""
    config, reference_dir, reference = uninterrupted
    first, moved = tmp_path / "first", tmp_path / "moved"
    shutil.copytree(reference_dir, first)
    shutil.rmtree(first / "fold1" / "stage2" / "best")
    (first / "fold1" / "metrics.json").unlink()
    first.rename(moved)
    results = run_experiment(config, moved, folds="1")
    assert results["folds"]["1"] == reference["folds"]["1"]


@pytest.mark.slow
def test_interrupted_stages_resume_to_the_same_results(uninterrupted, tmp_path, caplog):
    config, reference_dir, reference = uninterrupted
    run_dir = tmp_path / "run"
    with pytest.raises(SimulatedCrash, match="stage1 interrupted at step 3"):
        run_experiment(config, run_dir, folds="1", callbacks=[CrashAfterSave("stage1")])
    assert not (run_dir / "fold1" / "stage1" / "best").exists()
    # A checkpoint left half-written by a kill during a later save must be ignored and removed.
    (run_dir / "fold1" / "stage1" / "checkpoint-6").mkdir()
    with caplog.at_level(logging.INFO, logger="modeling.training"):
        with pytest.raises(SimulatedCrash, match="stage2 interrupted at step 3"):
            run_experiment(config, run_dir, folds="1", callbacks=[CrashAfterSave("stage2")])
        results = run_experiment(config, run_dir, folds="1")
    assert "resuming from " + str(run_dir / "fold1" / "stage1" / "checkpoint-3") in caplog.text
    assert "resuming from " + str(run_dir / "fold1" / "stage2" / "checkpoint-3") in caplog.text
    assert "Removing incomplete checkpoint" in caplog.text

    def numbers(fold):
        return {key: fold[key] for key in ("validation", "test", "stage1")}

    assert numbers(results["folds"]["1"]) == numbers(reference["folds"]["1"])
    with np.load(run_dir / "fold1" / "test_predictions.npz") as resumed, np.load(
        reference_dir / "fold1" / "test_predictions.npz"
    ) as straight:
        np.testing.assert_allclose(resumed["embeddings"], straight["embeddings"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_train_py_one_fold_one_epoch_on_real_speech(tmp_path):
    """The CLI end to end on nEMO (when ../shared/data has it; else the bundled corpus)."""
    if NEMO4 is not None:
        data = {"root": str(NEMO4), "loader_args": {"labels": ["neutral", "happy", "sad", "angry"]},
                "speakers": ["EB0", "IC0", "KS0", "MP0"], "max_per_speaker": 12, "folds": "gender_pairs"}
        test_speaker, test_size, labels = "EB0", 12, ["neutral", "happy", "sad", "angry"]
    else:
        data = {"speakers": None, "max_per_speaker": 6, "num_folds": 5}
        test_speaker, test_size, labels = "m1", 6, ["anger", "fear", "neutral"]
    config = write_config(tmp_path / "real.yaml", data=data)
    run_dir = tmp_path / "run"
    process = subprocess.run(
        [sys.executable, "train.py", "--config", config, "--output-dir", str(run_dir), "--folds", "1", "--max-epochs", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "Per-fold test UA/WA (%)" in process.stdout and f"| fold1 | {test_speaker} |" in process.stdout
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results) >= {"folds", "mean", "std", "config", "labels"}
    fold = results["folds"]["1"]
    assert set(fold["validation"]) == {"ua", "wa"}
    assert {"ua", "wa", "confusion_matrix"} <= set(fold["test"])
    assert fold["speakers"]["test"] == [test_speaker] and results["labels"] == labels
    assert np.array(fold["test"]["confusion_matrix"]).sum() == fold["num_examples"]["test"] == test_size
    for value in (fold["validation"]["ua"], fold["validation"]["wa"], fold["test"]["ua"], fold["test"]["wa"]):
        assert 0.0 <= value <= 1.0
    assert results["config"]["stage1"]["epochs"] == results["config"]["stage2"]["epochs"] == 1
    assert (run_dir / fold["checkpoint"] / "model.safetensors").is_file()
    steps = -(-fold["num_examples"]["train"] // 4)  # one epoch of batches of 4
    assert latest_checkpoint(run_dir / "fold1" / "stage1", remove_incomplete=False).endswith(f"checkpoint-{steps}")
    for name in ("config.yaml", "results.md", "confusion_matrix.png", "tsne.png", "fold1/split.json", "fold1/metrics.json"):
        assert (run_dir / name).is_file(), name
