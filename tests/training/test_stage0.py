"""Stage 0 (FLEA, modeling/training/stage0.py) of a fold: only the training speakers' frames are read, the stored
pseudo labels are scikit-learn's K-means of the initial backbone's frames, stage 1 starts from the stage-0
backbone, a kill -9 resumes to the same weights, and bad settings are reported before anything trains."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import POLISH3, REPO
from safetensors.torch import load_file
from sklearn.cluster import MiniBatchKMeans
from stage0_runs import fold_splits, run_stage0, save_backbone, stage0_config
from transformers import HubertModel

import modeling.pretraining.masked_prediction as masked_prediction
import modeling.pretraining.pseudo_labels as pseudo_labels
from modeling import AutoModelForFrameAlignedClassification
from modeling.data.problems import CheckError
from modeling.pretraining.pseudo_labels import PseudoLabels, layer_embeddings
from modeling.rundir.atomic import read_json
from modeling.rundir.faults import FAULT_ENV, FAULT_LOG_ENV, FaultInjected
from modeling.rundir.layout import RunDir
from modeling.training.stage0 import stage0_seed


pytestmark = pytest.mark.skipif(POLISH3 is None, reason="needs data/polish3")


@pytest.fixture(scope="module")
def stage0_run(tmp_path_factory):
    """One uninterrupted stage 0 of fold 1, every audio file it decoded recorded (the real `load_audio`, called
    through)."""
    folder = tmp_path_factory.mktemp("stage0")
    backbone = save_backbone(folder / "backbone")
    decoded = []

    def recording(load):
        def load_audio(source, *args, **kwargs):
            decoded.append(str(source))
            return load(source, *args, **kwargs)

        return load_audio

    with pytest.MonkeyPatch.context() as patch:
        for module in (pseudo_labels, masked_prediction):
            patch.setattr(module, "load_audio", recording(module.load_audio))
        best = run_stage0(folder / "run", backbone)
    config = stage0_config(backbone)
    fold, splits, _ = fold_splits(config)
    return dict(run=RunDir(folder / "run"), backbone=backbone, best=best, decoded=decoded, fold=fold, splits=splits)


def test_stage0_reads_no_frame_of_a_validation_or_test_speaker(stage0_run):
    fold, splits = stage0_run["fold"], stage0_run["splits"]
    train = set(splits["train"]["audio"])
    held_out = set(splits["validation"]["audio"]) | set(splits["test"]["audio"])
    assert len(train) == 4 and len(held_out) == 8 and set(fold.train).isdisjoint(fold.validation + fold.test)
    decoded = set(stage0_run["decoded"])
    assert decoded == train and not decoded & held_out  # extraction and both training epochs
    labels = PseudoLabels.load(stage0_run["run"].pseudo_labels(1) / "pseudo_labels.npz")
    assert labels.files == list(splits["train"]["audio"])
    summary = read_json(stage0_run["run"].pseudo_labels(1) / "pseudo_labels.json")
    assert summary["speakers"] == list(fold.train) and summary["clips"] == 4


def test_stored_pseudo_labels_are_scikit_learns_kmeans_of_the_initial_backbones_frames(stage0_run):
    backbone = HubertModel.from_pretrained(stage0_run["backbone"])
    per_clip = layer_embeddings(backbone, list(stage0_run["splits"]["train"]["audio"]), layer=1)
    frames = np.concatenate(per_clip)
    peer = MiniBatchKMeans(n_clusters=4, batch_size=4096, n_init=3, random_state=stage0_seed(3, 1)).fit(frames)
    labels = PseudoLabels.load(stage0_run["run"].pseudo_labels(1) / "pseudo_labels.npz")
    np.testing.assert_array_equal(labels.ids, peer.predict(frames))
    assert [len(labels.clip(i)) for i in range(4)] == [len(clip) for clip in per_clip]


def test_stage1_starts_from_the_stage0_backbone_which_records_the_stage(stage0_run):
    run = stage0_run["run"]
    trained = load_file(run.checkpoint(1, "stage0", 4) / "model.safetensors")
    stage1 = AutoModelForFrameAlignedClassification.from_pretrained(str(stage0_run["best"]), start_new_head=True)
    initial = HubertModel.from_pretrained(stage0_run["backbone"])
    for name, tensor in stage1.base_model.state_dict().items():
        torch.testing.assert_close(tensor, trained[f"backbone.{name}"], rtol=0, atol=0)
    changed = [
        name
        for name, tensor in initial.state_dict().items()
        if not torch.equal(tensor, stage1.base_model.state_dict()[name])
    ]
    assert changed and not any(name.startswith("feature_extractor.") for name in changed)  # the CNN stays frozen
    record = stage1.config.continued_pretraining
    assert (record["layer"], record["clusters"], record["mask_time_prob"]) == (1, 4, 0.3)
    assert stage1.config.mask_time_prob == 0.0  # stage 0's SpecAugment is not passed on to stage 1


def assert_same_weights(best, uninterrupted_best):
    resumed, uninterrupted = load_file(best / "model.safetensors"), load_file(uninterrupted_best / "model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    for name in resumed:
        torch.testing.assert_close(resumed[name], uninterrupted[name], rtol=0, atol=0)


@pytest.mark.bad_input
def test_a_stage0_stopped_in_its_second_epoch_resumes_to_the_same_weights(stage0_run, tmp_path, monkeypatch):
    """Stopped at training step 3 (epoch 2; checkpoint-2 saved) by an exception in this process (the kill -9 of a
    process is the heavy test below), the same call resumes from checkpoint-2, with its RNG states (the same spans
    drawn), and ends with the uninterrupted run's weights."""
    monkeypatch.setenv(FAULT_ENV, "stage0:step3:raise")
    with pytest.raises(FaultInjected, match="fault point stage0:step3: raise"):
        run_stage0(tmp_path / "run", stage0_run["backbone"])
    monkeypatch.delenv(FAULT_ENV)
    run = RunDir(tmp_path / "run")
    assert [path.name for path in run.checkpoints(1, "stage0")] == ["checkpoint-2"]
    assert_same_weights(run_stage0(tmp_path / "run", stage0_run["backbone"]), stage0_run["best"])


# heavy: a subprocess importing transformers and scikit-learn (about 40 s on 2 busy cores); the test above checks
# the same resume in this process.
@pytest.mark.heavy
@pytest.mark.bad_input
def test_kill_9_during_stage0_resumes_to_the_same_weights(stage0_run, tmp_path):
    """Killed (SIGKILL) at training step 3 (epoch 2; checkpoint-2 saved), the same call resumes from checkpoint-2 and
    ends with the uninterrupted run's weights."""
    run_dir, log = tmp_path / "run", tmp_path / "faults.log"
    env = {**os.environ, FAULT_ENV: "stage0:step3:kill", FAULT_LOG_ENV: str(log), "PYTHONPATH": str(REPO)}
    command = [sys.executable, str(REPO / "tests" / "training" / "stage0_runs.py"), str(run_dir)]
    process = subprocess.run(
        command + [str(stage0_run["backbone"])], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-3000:]
    assert log.read_text().startswith("fault point stage0:step3: kill (hit 1")
    run = RunDir(run_dir)
    assert [path.name for path in run.checkpoints(1, "stage0")] == ["checkpoint-2"]
    assert not run.best(1, "stage0").exists()
    assert_same_weights(run_stage0(run_dir, stage0_run["backbone"]), stage0_run["best"])


@pytest.mark.bad_input
def test_bad_stage0_settings_are_all_reported_before_anything_trains(stage0_run, tmp_path):
    from modeling.training.config_checks import resolve_checked_config
    from modeling.training.experiment import run_experiment

    stage0_config(stage0_run["backbone"])  # writes the config file beside the backbone
    path = stage0_run["backbone"].parent / "stage0.yaml"
    overrides = ["stage0.layer=3", "stage0.num_trainable_layers=0"]
    with pytest.raises(CheckError) as caught:
        resolve_checked_config(path, overrides)
    keys = {problem.key for problem in caught.value.problems}
    assert {"stage0.layer", "stage0.num_trainable_layers"} <= keys, str(caught.value)
    assert "stage0.layer = 3: the backbone has 2 transformer layers" in str(caught.value)
    config = stage0_config(stage0_run["backbone"], clusters=1000, mask_time_length=200)
    with pytest.raises(CheckError) as caught:
        run_experiment(config, tmp_path / "run", folds="1")
    message = str(caught.value)
    assert "fold1: stage0.clusters = 1000: more clusters than the" in message, message
    assert "training clip(s) yield fewer frames than stage0.mask_time_length = 200" in message, message
    assert not (tmp_path / "run").exists()


def test_model_cards_say_whether_a_checkpoint_went_through_stage0(stage0_run, tmp_path):
    from runs import write_run

    from modeling.publishing.model_card import render_fold_card
    from modeling.publishing.run import load_run
    from modeling.rundir.atomic import atomic_write_json
    from modeling.rundir.integrity import write_manifest

    run_dir = write_run(tmp_path / "run")
    best = RunDir(run_dir).best(1)
    record = read_json(stage0_run["best"] / "config.json")["continued_pretraining"]  # what stage 0 left
    atomic_write_json(best / "config.json", {**read_json(best / "config.json"), "continued_pretraining": record})
    if (best / "checksums.json").exists():
        write_manifest(best)
    results = read_json(RunDir(run_dir).results_json)  # the config train.py recorded, with stage 0 on
    results["config"] = {**(results.get("config") or {}), "stage0": {"enabled": True, "layer": 1}}
    atomic_write_json(RunDir(run_dir).results_json, results)
    run = load_run(run_dir)
    card = render_fold_card(run, run.folds["1"], "org/ser-fold1")
    assert (
        "Stage 0 (continued pre-training): before stage 1, the backbone was pre-trained further on this fold's "
        "training speakers only (FLEA, Li et al.): the frames of transformer layer 1 were clustered with K-means "
        "into 4 pseudo labels" in " ".join(card.split())
    )
    assert "| stage0.enabled | `True` |" in card and "| stage0.layer | `1` |" in card
    other = render_fold_card(run, run.folds["2"], "org/ser-fold2")
    assert "Stage 0 (continued pre-training): none: stage 1 started from the pre-trained backbone." in other


def test_a_run_recorded_before_stage0_existed_resumes_and_enabling_it_is_refused(stage0_run, tmp_path):
    import yaml

    from modeling.training.experiment import RunConfigMismatchError, check_run_dir
    from modeling.training.schema import defaults

    config = {**stage0_config(stage0_run["backbone"]), "stage0": defaults()["stage0"]}  # stage 0 off
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.config.write_text(yaml.safe_dump({key: value for key, value in config.items() if key != "stage0"}))
    check_run_dir(config, run)  # no stage0: section recorded = its defaults (disabled)
    with pytest.raises(RunConfigMismatchError, match=r"stage0.enabled: False → True"):
        check_run_dir({**config, "stage0": {**config["stage0"], "enabled": True}}, run)


def test_a_run_recorded_before_an_option_existed_resumes(stage0_run, tmp_path):
    """The same for an option added to an existing section (stage1.fual_detach_target, say, arriving in an upgrade):
    the recorded run ran with its default, so the same command resumes; another value is still refused."""
    import yaml

    from modeling.training.experiment import RunConfigMismatchError, check_run_dir
    from modeling.training.schema import defaults

    config = {**stage0_config(stage0_run["backbone"]), "stage0": defaults()["stage0"]}
    assert config["stage1"]["fual_detach_target"] is False  # a default that is not null
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    older = {k: v for k, v in config["stage1"].items() if k != "fual_detach_target"}
    run.config.write_text(yaml.safe_dump({**config, "stage1": older}))
    check_run_dir(config, run)
    with pytest.raises(RunConfigMismatchError, match=r"stage1.fual_detach_target: False → True"):
        check_run_dir({**config, "stage1": {**config["stage1"], "fual_detach_target": True}}, run)
