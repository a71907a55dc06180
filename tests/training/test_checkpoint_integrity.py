"""Checkpoint integrity: sizes and SHA-256 recorded with every checkpoint, verified before resume and scoring; a
truncated or bit-flipped `model.safetensors` in `best/` or `checkpoint-N/` is discarded (logged) and the run falls
back to the previous good checkpoint, ending with the results of an uninterrupted run; a full disk during a save
leaves the previous state intact and names the path and the cause."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datasets import Dataset
from helpers import REPO, polish3_clips, tiny_config
from runs import write_config
from test_crash_safety import assert_close, kill_at, no_fault_environment, numbers, run_to_completion, write_checkpoint

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.rundir.atomic import atomic_directory
from modeling.rundir.faults import FAULT_ENV
from modeling.rundir.integrity import MANIFEST, checkpoint_problems, safetensors_problem, write_manifest
from modeling.trainer.trainer import FrameAlignedTrainer, FrameAlignedTrainingArguments
from modeling.training.checkpoints import checkpoint_state, latest_checkpoint, usable_best


pytestmark = pytest.mark.bad_input


def truncate(path: Path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def flip_bit(path: Path, offset_from_end: int = 9):
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0x10
    path.write_bytes(bytes(data))


DAMAGE = {"truncated": truncate, "bit-flipped": flip_bit}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_checkpoint_is_removed_and_the_previous_one_resumed(tmp_path, damage, caplog):
    stage_dir = tmp_path / "stage1"
    good, bad = write_checkpoint(stage_dir, 3), write_checkpoint(stage_dir, 6)
    for folder in (good, bad):
        write_manifest(folder)
    size = (bad / "model.safetensors").stat().st_size
    DAMAGE[damage](bad / "model.safetensors")
    expected = {
        "truncated": f"model.safetensors: {size // 2} bytes, {size} recorded (truncated?)",
        "bit-flipped": "model.safetensors: SHA-256 differs from the recorded one (corrupted)",
    }[damage]
    assert checkpoint_state(bad).message == f"corrupt: {expected}" and checkpoint_state(bad).cause == "corrupt"
    assert latest_checkpoint(stage_dir, remove_incomplete=True) == str(good)
    assert f"Removing corrupt checkpoint {bad} (corrupt: {expected})." in caplog.text
    assert not bad.exists() and checkpoint_state(good) is None


def test_without_a_manifest_the_safetensors_header_and_length_are_checked(tmp_path):
    folder = write_checkpoint(tmp_path, 3)
    path = folder / "model.safetensors"
    assert safetensors_problem(path) is None and checkpoint_problems(folder) == []
    size = path.stat().st_size
    truncate(path, keep=(size - 4) / size)
    assert (
        safetensors_problem(path) == f"model.safetensors: {size - 4} bytes, its header describes {size} "
        "(truncated or padded)"
    )
    path.write_bytes(b"\x10\x00")
    assert "unreadable safetensors header" in safetensors_problem(path)
    path.write_bytes((10**6).to_bytes(8, "little") + b"{}")
    assert safetensors_problem(path) == "model.safetensors: header of 1000000 bytes in a file of 10 bytes (truncated)"


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_best_model_is_discarded(tmp_path, damage, caplog):
    best = tmp_path / "fold1" / "stage2" / "best"
    Wav2Vec2ForFrameAlignedClassification(tiny_config()).save_pretrained(best)
    write_manifest(best)
    assert usable_best(best, remove_corrupt=True)
    DAMAGE[damage](best / "model.safetensors")
    assert not usable_best(best, remove_corrupt=True)
    assert f"Discarding corrupt best model {best} (model.safetensors: " in caplog.text and not best.exists()


def test_a_full_disk_while_writing_best_leaves_the_previous_one(tmp_path, monkeypatch):
    best = tmp_path / "fold1" / "stage1" / "best"
    best.mkdir(parents=True)
    (best / "model.safetensors").write_bytes(b"previous")
    monkeypatch.setenv(FAULT_ENV, "atomic-directory:before-rename:stage1/best:enospc")
    with pytest.raises(
        OSError,
        match=rf"^\[Errno {errno.ENOSPC}\] Writing {best} failed: No space left on device "
        r"\(injected\) \(atomic-directory:before-rename:stage1/best\); best keeps its previous content",
    ):
        with atomic_directory(best) as tmp:
            (tmp / "model.safetensors").write_bytes(b"new")
    assert (best / "model.safetensors").read_bytes() == b"previous"
    assert [p.name for p in best.parent.iterdir()] == ["best"]  # no temporary leftovers


def checkpointing_trainer(stage_dir, num_clips: int, max_steps: int) -> FrameAlignedTrainer:
    """A tiny model's Trainer on real clips that saves a checkpoint at every step into `stage_dir`."""
    clips = polish3_clips(num_clips)
    dataset = Dataset.from_dict({"audio": [path for path, _ in clips], "label": [label for _, label in clips]})
    args = FrameAlignedTrainingArguments(
        output_dir=str(stage_dir),
        per_device_train_batch_size=2,
        max_steps=max_steps,
        save_steps=1,
        save_strategy="steps",
        report_to="none",
        remove_unused_columns=False,
        use_cpu=True,
    )
    collator = AudioClassificationCollator(make_feature_extractor(), max_length_seconds=0.5)
    return FrameAlignedTrainer(
        model=Wav2Vec2ForFrameAlignedClassification(tiny_config()),
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        eval_data_collator=collator,
    )


def test_a_full_disk_during_a_trainer_checkpoint_names_it_and_keeps_the_previous_one(tmp_path, monkeypatch):
    stage_dir = tmp_path / "run" / "fold1" / "stage1"
    trainer = checkpointing_trainer(stage_dir, num_clips=4, max_steps=4)
    monkeypatch.setenv(FAULT_ENV, "checkpoint:before-optimizer:stage1:enospc@2")
    with pytest.raises(
        OSError,
        match=rf"^\[Errno {errno.ENOSPC}\] Saving the checkpoint {stage_dir}/checkpoint-2 "
        r"failed: No space left on device \(injected\)",
    ):
        trainer.train()
    first, second = stage_dir / "checkpoint-1", stage_dir / "checkpoint-2"
    assert checkpoint_state(first) is None and (first / MANIFEST).is_file()
    assert checkpoint_state(second).cause == "incomplete"
    assert latest_checkpoint(stage_dir, remove_incomplete=True) == str(first) and not second.exists()


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_trainer_checkpoints_follow_the_umask_like_any_other_file(tmp_path, umask):
    """Issue 20: transformers 5.24 writes a Trainer checkpoint's model.safetensors 0600 (best/ was fixed by
    atomic_directory): a colleague could not read a run's checkpoint-* folders. Every file and folder of one now has
    the mode open()/mkdir() give under the umask."""
    stage_dir = tmp_path / "run" / "fold1" / "stage1"
    trainer = checkpointing_trainer(stage_dir, num_clips=2, max_steps=1)
    previous = os.umask(umask)
    try:
        trainer.train()
    finally:
        os.umask(previous)
    checkpoint = stage_dir / "checkpoint-1"
    paths = [checkpoint, *checkpoint.rglob("*")]
    modes = {p.relative_to(stage_dir).as_posix(): p.stat().st_mode & 0o777 for p in paths}
    assert "checkpoint-1/model.safetensors" in modes and "checkpoint-1/optimizer.pt" in modes
    expected = {name: (0o777 if (stage_dir / name).is_dir() else 0o666) & ~umask for name in modes}
    assert modes == expected


@pytest.mark.slow
# heavy: a killed run, three damaged files and two full runs (59 s)
@pytest.mark.heavy
def test_damaged_checkpoints_mid_run_are_recovered_with_the_uninterrupted_results(tmp_path):
    """Killed after scoring (both best models and all checkpoints written); then stage 1's best is bit-flipped,
    stage 2's best truncated and its last checkpoint bit-flipped: the re-run discards the three, re-makes stage 1's
    best from its last checkpoint, resumes stage 2 from the checkpoint before, and ends as the uninterrupted run."""
    config = write_config(
        tmp_path / "tiny.yaml", data={"max_per_speaker": 6}, stage1={"epochs": 2}, stage2={"epochs": 2}
    )
    reference = run_to_completion(config, tmp_path / "reference")
    run_dir = tmp_path / "run"
    kill_at(config, run_dir, "scoring:after-predictions:fold1")
    stage1, stage2 = run_dir / "fold1" / "stage1", run_dir / "fold1" / "stage2"
    flip_bit(stage1 / "best" / "model.safetensors")
    truncate(stage2 / "best" / "model.safetensors")
    last = Path(latest_checkpoint(stage2, remove_incomplete=False))
    flip_bit(last / "model.safetensors")
    process = subprocess.run(
        [sys.executable, "train.py", "--config", config, "--output-dir", str(run_dir), "--folds", "1"],
        cwd=REPO,
        env=no_fault_environment(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    log = process.stderr
    assert f"Discarding corrupt best model {stage1 / 'best'} (model.safetensors: SHA-256 differs" in log
    assert f"Discarding corrupt best model {stage2 / 'best'} (model.safetensors: " in log
    assert f"Removing corrupt checkpoint {last} (corrupt: model.safetensors: SHA-256 differs" in log
    resumed = json.loads((run_dir / "results.json").read_text())
    assert_close(numbers(resumed), numbers(reference))
    for best in (stage1 / "best", stage2 / "best"):
        assert checkpoint_problems(best) == [] and (best / MANIFEST).is_file()


def test_scoring_refuses_a_damaged_best_model(tmp_path):
    from modeling.training.scoring import score_checkpoint

    best = tmp_path / "fold1" / "stage2" / "best"
    Wav2Vec2ForFrameAlignedClassification(tiny_config()).save_pretrained(best)
    write_manifest(best)
    flip_bit(best / "model.safetensors")
    with pytest.raises(
        ValueError,
        match=rf"^{best} is corrupt \(model\.safetensors: SHA-256 differs .*\); run the "
        "same command again",
    ):
        score_checkpoint(best, splits={}, batch_size=2)
