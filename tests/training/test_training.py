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
import soundfile as sf
import torch
import yaml
from fake_corpora import TONE_LABELS, make_tone_corpus
from helpers import NEMO4, REPO
from runs import UNEQUAL_LOSS_WEIGHTS, write_config
from safetensors.torch import load_file
from transformers import TrainerCallback

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.data.checks import DatasetCheckError
from modeling.data.folds import make_folds, split_fold
from modeling.training.checkpoints import latest_checkpoint
from modeling.training.experiment import RunConfigMismatchError, load_run_dataset, run_experiment
from modeling.training.run_config import resolve_config


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
    config = resolve_config(write_config(tmp / "tiny.yaml", stage2=UNEQUAL_LOSS_WEIGHTS))
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
    assert results["mean"] == {
        "ua": fold["test"]["ua"],
        "wa": fold["test"]["wa"],
        "macro_f1": fold["test"]["macro_f1"],
    }
    assert results["std"] == {"ua": None, "wa": None, "macro_f1": None}  # one fold: undefined, not 0
    assert results["stage1"]["mean"] == {metric: fold["stage1"]["test"][metric] for metric in ("ua", "wa", "macro_f1")}
    assert results["labels"] == ["anger", "fear", "neutral"] and results["num_folds"] == 3
    assert json.loads((run_dir / "results.json").read_text()) == results
    assert json.loads((run_dir / "fold1" / "metrics.json").read_text()) == fold
    split = json.loads((run_dir / "fold1" / "split.json").read_text())
    assert split["test"]["class_counts"] == {"anger": 4, "fear": 4, "neutral": 4}
    for name in ("train", "validation", "test"):  # corpus-relative files (score.py knows a copy of the corpus by them)
        files = split[name]["files"]
        assert len(set(files)) == split[name]["num_examples"] and all(f.startswith("audio/") for f in files)
        assert {f.split("/")[1].split(".")[0] for f in files} == set(split[name]["speakers"])
    for stage in ("stage1", "stage2"):
        best = run_dir / "fold1" / stage / "best"
        names = {p.name for p in best.iterdir()}
        assert {
            "config.json",
            "model.safetensors",
            "configuration_frame_aligned.py",
            "modeling_frame_aligned.py",
            "preprocessor_config.json",
        } <= names
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
    assert (stage2["num_trainable_layers"], stage2["eal_weight"], stage2["fual_weight"]) == (1, 0.3, 0.7)
    for name in ("results.md", "confusion_matrix.png", "tsne.png"):
        assert (run_dir / name).stat().st_size > 0
    assert "| fold1 | m1 |" in (run_dir / "results.md").read_text()
    assert not list(run_dir.rglob(".*.tmp*"))


def test_finished_run_is_skipped_and_config_changes_are_refused(uninterrupted, tmp_path, caplog):
    config, run_dir, results = uninterrupted
    with caplog.at_level(logging.INFO, logger="modeling.training"):
        assert run_experiment(config, run_dir, folds="1") == results
    assert "fold1: finished earlier" in caplog.text
    changed = resolve_config(write_config(tmp_path / "changed.yaml", stage2={**UNEQUAL_LOSS_WEIGHTS, "epochs": 3}))
    with pytest.raises(RunConfigMismatchError, match=r"stage2.epochs: 2 → 3"):
        run_experiment(changed, run_dir, folds="1")


def test_stage1_reused_from_another_run(uninterrupted, tmp_path):
    """Table 3 rows share one stage 1: `stage1.from_run` copies it instead of training (here the +FUAL row)."""
    _, reference_dir, reference = uninterrupted
    config = resolve_config(
        write_config(
            tmp_path / "row.yaml",
            stage1={"from_run": str(reference_dir)},
            stage2={"eal_weight": 0.0, "fual_weight": 0.05},
        )
    )
    results = run_experiment(config, tmp_path / "run", folds="1")
    stage1 = tmp_path / "run" / "fold1" / "stage1"
    assert not list(stage1.glob("checkpoint-*"))
    source = reference_dir / "fold1" / "stage1" / "best" / "model.safetensors"
    assert (stage1 / "best" / "model.safetensors").read_bytes() == source.read_bytes()
    assert results["folds"]["1"]["stage1"] == reference["folds"]["1"]["stage1"]
    stage2 = json.loads((tmp_path / "run" / "fold1" / "stage2" / "best" / "config.json").read_text())
    assert (stage2["eal_weight"], stage2["fual_weight"]) == (0.0, 0.05)
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
    with (
        np.load(run_dir / "fold1" / "test_predictions.npz") as resumed,
        np.load(reference_dir / "fold1" / "test_predictions.npz") as straight,
    ):
        np.testing.assert_allclose(resumed["embeddings"], straight["embeddings"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_train_py_one_fold_one_epoch_on_real_speech(tmp_path):
    """The CLI end to end on nEMO (when ../shared/data has it; else the bundled corpus)."""
    if NEMO4 is not None:
        data = {
            "root": str(NEMO4),
            "loader_args": {"labels": ["neutral", "happy", "sad", "angry"]},
            "speakers": ["EB0", "IC0", "KS0", "MP0"],
            "max_per_speaker": 12,
            "folds": "gender_pairs",
        }
        test_speaker, test_size, labels = "EB0", 12, ["neutral", "happy", "sad", "angry"]
    else:
        data = {"speakers": None, "max_per_speaker": 6, "num_folds": 5}
        test_speaker, test_size, labels = "m1", 6, ["anger", "fear", "neutral"]
    config = write_config(tmp_path / "real.yaml", data=data)
    run_dir = tmp_path / "run"
    process = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--config",
            config,
            "--output-dir",
            str(run_dir),
            "--folds",
            "1",
            "--max-epochs",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    assert "Per-fold test UA/WA (%)" in process.stdout and f"| fold1 | {test_speaker} |" in process.stdout
    assert ", macro-F1 " in process.stdout.splitlines()[-1]
    results = json.loads((run_dir / "results.json").read_text())
    assert set(results) >= {"folds", "mean", "std", "config", "labels"}
    fold = results["folds"]["1"]
    assert set(fold["validation"]) == {"ua", "wa", "macro_f1"}
    assert {"ua", "wa", "confusion_matrix"} <= set(fold["test"])
    assert fold["speakers"]["test"] == [test_speaker] and results["labels"] == labels
    assert np.array(fold["test"]["confusion_matrix"]).sum() == fold["num_examples"]["test"] == test_size
    for value in (fold["validation"]["ua"], fold["validation"]["wa"], fold["test"]["ua"], fold["test"]["wa"]):
        assert 0.0 <= value <= 1.0
    assert results["config"]["stage1"]["epochs"] == results["config"]["stage2"]["epochs"] == 1
    assert (run_dir / fold["checkpoint"] / "model.safetensors").is_file()
    steps = -(-fold["num_examples"]["train"] // 4)  # one epoch of batches of 4
    assert latest_checkpoint(run_dir / "fold1" / "stage1", remove_incomplete=False).endswith(f"checkpoint-{steps}")
    for name in (
        "config.yaml",
        "results.md",
        "confusion_matrix.png",
        "tsne.png",
        "fold1/split.json",
        "fold1/metrics.json",
    ):
        assert (run_dir / name).is_file(), name


# ---------------------------------------------------------------------------------------------------------------
# A run that learns, so that choosing and scoring the best checkpoint can go wrong visibly
# ---------------------------------------------------------------------------------------------------------------
# The runs above do not learn (validation UA is the same every epoch, stage 2 predicts one class): "best on
# validation UA" and "reported UA = selected UA" hold there whatever the code does. The tone corpus below is learnt
# in a few epochs by the tiny group-norm backbone (no attention mask, like wav2vec2-base: padding changes outputs).
# Every test asserts its preconditions (UA moves between epochs, the best epoch is not the last, padding changes the
# UA), so a fixture that stops learning (e.g. after a change of the sampler or of torch) fails loudly instead of
# passing vacuously: then pick another TONE_CORPUS_SEED (3, 4 and 5 worked when this was written).

TONE_CORPUS_SEED = 4
TONE_MAX_LENGTH_SECONDS = 1.0  # the training crop; validation clips are 0.25 s to 3 s
TONE_EVAL_BATCH_SIZE = 6


class EvalBatchRecorder(TrainerCallback):
    """For every evaluation: the stage, the step and, per batch of the Trainer's eval dataloader, the real number of
    samples of each clip (attention mask) and the padded width."""

    def __init__(self):
        self.evaluations = []

    def on_evaluate(self, args, state, control, eval_dataloader=None, **kwargs):
        with torch.random.fork_rng(devices=[]):  # iterating again must not move the training's random stream
            batches = [
                (batch["attention_mask"].sum(-1).tolist(), batch["input_values"].shape[-1])
                for batch in eval_dataloader
            ]
        self.evaluations.append((Path(args.output_dir).name, state.global_step, batches))


@pytest.fixture(scope="module")
def learning_run(tmp_path_factory):
    """1 fold of the tone corpus: train m2, validation m1, test f1 (18 clips each), 4 + 5 epochs of 5 steps."""
    tmp = tmp_path_factory.mktemp("learning")
    corpus = make_tone_corpus(tmp / "tones", seed=TONE_CORPUS_SEED)
    stage = {"batch_size": 4, "eval_batch_size": TONE_EVAL_BATCH_SIZE, "max_length_seconds": TONE_MAX_LENGTH_SECONDS}
    config = resolve_config(
        write_config(
            tmp / "tones.yaml",
            data={
                "root": str(corpus),
                "loader_args": {"labels": list(TONE_LABELS)},
                "speakers": None,
                "max_per_speaker": None,
            },
            stage1={**stage, "epochs": 4, "classifier_learning_rate": 3e-3},
            stage2={
                **stage,
                **UNEQUAL_LOSS_WEIGHTS,
                "epochs": 5,
                "pooling_learning_rate": 3e-3,
                "classifier_learning_rate": 3e-3,
            },
        )
    )
    recorder = EvalBatchRecorder()
    run_dir = tmp / "run"
    results = run_experiment(config, run_dir, folds="1", callbacks=[recorder])
    dataset = load_run_dataset(config)
    fold = make_folds(dataset, config["data"]["folds"], config["data"]["num_folds"])[0]
    assert (fold.train, fold.validation, fold.test) == (("m2",), ("m1",), ("f1",))
    return {
        "config": config,
        "run_dir": run_dir,
        "results": results,
        "splits": split_fold(dataset, fold),
        "evaluations": recorder.evaluations,
    }


def final_trainer_state(run_dir: Path, stage: str) -> dict:
    return json.loads(
        (
            Path(latest_checkpoint(run_dir / "fold1" / stage, remove_incomplete=False)) / "trainer_state.json"
        ).read_text()
    )


def validation_uas(state: dict) -> dict[int, float]:
    """Validation UA of every epoch, by global step."""
    return {entry["step"]: entry["eval_ua"] for entry in state["log_history"] if "eval_ua" in entry}


def unweighted_accuracy(predictions, labels, num_labels: int) -> float:
    """UA by hand: the mean over classes of the share of the class's clips predicted as that class."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    return float(np.mean([np.mean(predictions[labels == c] == c) for c in range(num_labels)]))


def longest_first_by_hand(dataset) -> list[int]:
    durations = dataset["duration_s"]
    return sorted(range(len(durations)), key=lambda i: (-durations[i], i))


def batched_outputs(model_dir: Path, dataset, batch_size: int, order) -> tuple[np.ndarray, np.ndarray]:
    """Logits and utterance embeddings of every row (in row order) of `dataset`, batched as consecutive
    `batch_size` slices of `order` (whole clips)."""
    model = Wav2Vec2ForFrameAlignedClassification.from_pretrained(model_dir).eval()
    collator = AudioClassificationCollator(make_feature_extractor())
    order = list(order)
    logits, embeddings = [None] * len(order), [None] * len(order)
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = collator([dataset[i] for i in rows])
            batch.pop("labels")
            output = model(**batch)
            for j, row in enumerate(rows):
                logits[row], embeddings[row] = output.logits[j].numpy(), output.utterance_embedding[j].numpy()
    return np.stack(logits), np.stack(embeddings)


def test_best_model_is_the_checkpoint_selected_on_validation_ua(learning_run):
    """`<stage>/best` holds the checkpoint of the first epoch with the highest validation UA
    (`state.best_global_step`), not the last checkpoint."""
    run_dir = learning_run["run_dir"]
    for stage in ("stage1", "stage2"):
        state = final_trainer_state(run_dir, stage)
        uas = validation_uas(state)
        assert len(uas) == learning_run["config"][stage]["epochs"]
        # Preconditions: the run learns, and the checkpoint choice matters.
        assert len(set(uas.values())) > 1, f"{stage}: validation UA is the same at every epoch: {uas}"
        best_step = min(step for step, ua in uas.items() if ua == max(uas.values()))  # ties: the earlier epoch
        assert (state["best_global_step"], state["best_metric"]) == (best_step, max(uas.values()))
        assert best_step != state["global_step"], f"{stage}: the last epoch is the best one ({uas})"
        stage_dir = run_dir / "fold1" / stage
        best = load_file(stage_dir / "best" / "model.safetensors")
        selected = load_file(stage_dir / f"checkpoint-{best_step}" / "model.safetensors")
        last = load_file(stage_dir / f"checkpoint-{state['global_step']}" / "model.safetensors")
        assert best.keys() == selected.keys() == last.keys()
        for name in best:
            assert torch.equal(best[name], selected[name]), (
                f"{stage}: best/ differs from checkpoint-{best_step}: {name}"
            )
        assert not all(torch.equal(best[name], last[name]) for name in best)


def test_reported_validation_ua_is_the_one_the_checkpoint_was_selected_on(learning_run):
    """The final scores batch like the Trainer's evaluation: the reported validation UA is the UA the checkpoint was
    selected on, and the test predictions are each clip's own. This group-norm backbone sees padding, so both run
    one clip per batch (`evaluation_batch_size`): padded batches of `eval_batch_size` would make a clip's scores
    depend on its batch-mates (and a reported number the saved checkpoint does not give in the pipeline)."""
    config, run_dir, splits = learning_run["config"], learning_run["run_dir"], learning_run["splits"]
    fold = learning_run["results"]["folds"]["1"]
    validation = splits["validation"]
    labels = np.asarray(validation["label"])
    for stage, reported in (("stage1", fold["stage1"]["validation"]), ("stage2", fold["validation"])):
        state = final_trainer_state(run_dir, stage)
        best_dir = run_dir / "fold1" / stage / "best"
        assert config[stage]["eval_batch_size"] == TONE_EVAL_BATCH_SIZE > 1
        logits, _ = batched_outputs(best_dir, validation, 1, range(len(validation)))  # each clip alone
        # The Trainer's selection, reproduced by hand; then the reported numbers.
        assert unweighted_accuracy(logits.argmax(-1), labels, 3) == pytest.approx(state["best_metric"])
        assert reported["ua"] == pytest.approx(state["best_metric"])
        assert reported["wa"] == pytest.approx(np.mean(logits.argmax(-1) == labels))

    test = splits["test"]
    test_labels = np.asarray(test["label"])
    best_dir = run_dir / "fold1" / "stage2" / "best"
    logits, embeddings = batched_outputs(best_dir, test, 1, range(len(test)))
    _, padded_embeddings = batched_outputs(best_dir, test, TONE_EVAL_BATCH_SIZE, longest_first_by_hand(test))
    assert np.abs(padded_embeddings - embeddings).max() > 1e-2  # precondition: padding changes the embeddings
    with np.load(run_dir / "fold1" / "test_predictions.npz") as saved:
        np.testing.assert_array_equal(saved["labels"], test_labels)
        np.testing.assert_array_equal(saved["predictions"], logits.argmax(-1))
        np.testing.assert_allclose(saved["embeddings"], embeddings, rtol=1e-5, atol=1e-6)
        predictions = saved["predictions"]
    assert len(set(predictions.tolist())) > 1  # stage 2 does not predict one class for every clip
    matrix = np.zeros((3, 3), dtype=int)
    np.add.at(matrix, (test_labels, predictions), 1)
    assert fold["test"]["confusion_matrix"] == matrix.tolist()
    assert fold["test"]["ua"] == pytest.approx(unweighted_accuracy(predictions, test_labels, 3))
    assert fold["test"]["wa"] == pytest.approx(np.mean(predictions == test_labels))


def test_evaluation_sees_whole_clips_longest_first(learning_run):
    """Every validation pass of both stages gets whole clips (the training crop is not applied), longest first, one
    clip per batch (this group-norm backbone sees padding: `eval_batch_size` 6 is not used for it)."""
    validation = learning_run["splits"]["validation"]
    samples = [sf.info(path).frames for path in validation["audio"]]
    assert max(samples) > TONE_MAX_LENGTH_SECONDS * 16000  # precondition: a crop would show
    order = longest_first_by_hand(validation)
    expected = [[samples[i]] for i in order]
    for stage in ("stage1", "stage2"):
        evaluations = [(step, batches) for name, step, batches in learning_run["evaluations"] if name == stage]
        assert len(evaluations) == learning_run["config"][stage]["epochs"]
        for step, batches in evaluations:
            assert [lengths for lengths, _ in batches] == expected, f"{stage}, step {step}"
            assert [width for _, width in batches] == [max(lengths) for lengths in expected], f"{stage}, step {step}"


def test_loss_weights_reach_the_models_unswapped(learning_run):
    """λ_EAL = 0.3 and λ_FUAL = 0.7 of the YAML are the stage-2 model's, and the Trainer's loss weighs the terms it
    logs with them (a swap would make Table 3's +EAL and +FUAL rows trade places)."""
    run_dir = learning_run["run_dir"]
    state = final_trainer_state(run_dir, "stage2")
    logged = [entry for entry in state["log_history"] if "loss" in entry and "loss_eal" in entry]
    assert len(logged) == state["global_step"]  # logging_steps: 1
    for entry in logged:
        weighted = entry["loss_ce"] + 0.3 * entry["loss_eal"] + 0.7 * entry["loss_fual"]
        swapped = entry["loss_ce"] + 0.7 * entry["loss_eal"] + 0.3 * entry["loss_fual"]
        assert abs(weighted - swapped) > 1e-2, entry  # precondition: EAL and FUAL differ enough to tell
        assert entry["loss"] == pytest.approx(weighted, abs=1e-4), f"λ swapped? {entry}"
    for stage, weights in (("stage1", (0.0, 0.0)), ("stage2", (0.3, 0.7))):
        saved = json.loads((run_dir / "fold1" / stage / "best" / "config.json").read_text())
        assert (saved["eal_weight"], saved["fual_weight"]) == weights
