"""The run directory's layout is named in one place, which imports nothing heavy."""

import ast
import os
import sys
from pathlib import Path

from helpers import REPO

from modeling.rundir.layout import RunDir, checkpoint_dir, checkpoint_dirs


def test_layout(tmp_path):
    run = RunDir(tmp_path)
    assert Path(run) == tmp_path and os.fspath(run) == str(tmp_path)
    assert run.config == tmp_path / "config.yaml"
    assert run.pretrained == tmp_path / "pretrained"
    assert run.skipped_audio == tmp_path / "skipped_audio.json"
    assert (run.results_json, run.results_md) == (tmp_path / "results.json", tmp_path / "results.md")
    assert (run.confusion_matrix, run.tsne) == (tmp_path / "confusion_matrix.png", tmp_path / "tsne.png")
    assert run.fold(2) == run.fold("2") == tmp_path / "fold2"
    assert run.split(1) == tmp_path / "fold1" / "split.json"
    assert run.metrics(1) == tmp_path / "fold1" / "metrics.json"
    assert run.test_predictions(1) == tmp_path / "fold1" / "test_predictions.npz"
    assert run.fold_confusion_matrix(1) == tmp_path / "fold1" / "confusion_matrix.png"
    assert run.stage(1, "stage1") == tmp_path / "fold1" / "stage1"
    assert run.best(1, "stage1") == tmp_path / "fold1" / "stage1" / "best"
    assert run.best(3) == tmp_path / "fold3" / "stage2" / "best"
    assert run.checkpoint(1, "stage2", 6) == tmp_path / "fold1" / "stage2" / "checkpoint-6"
    assert run.prefix_cache(1, "stage2", "train") == tmp_path / "fold1" / "stage2" / "prefix_cache" / "train"
    assert run.relative(run.best(1)) == "fold1/stage2/best"


def test_finished_folds_and_checkpoints(tmp_path):
    run = RunDir(tmp_path)
    assert not run.is_finished(1) and run.checkpoints(1, "stage1") == []
    run.fold(1).mkdir()
    run.metrics(1).write_text("{}")
    assert run.is_finished(1)
    for name in ("checkpoint-10", "checkpoint-9", "checkpoint-x", "checkpoint-11.tmp"):
        (run.stage(1, "stage1") / name).mkdir(parents=True)
    (run.stage(1, "stage1") / "checkpoint-12").write_text("a file, not a checkpoint")
    assert run.checkpoints(1, "stage1") == [checkpoint_dir(run.stage(1, "stage1"), step) for step in (9, 10)]
    assert checkpoint_dirs(run.stage(1, "stage1")) == run.checkpoints(1, "stage1")


def test_checkpoint_prefix_is_the_trainers():
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    from modeling.rundir.layout import CHECKPOINT_PREFIX

    assert CHECKPOINT_PREFIX == PREFIX_CHECKPOINT_DIR


def test_the_rundir_room_imports_only_the_standard_library():
    """Every wing may use `modeling.rundir` (publishing without torch among them): its modules import the standard
    library and each other, nothing else. `import modeling` brings torch in when installed, so the modules' own
    imports are checked."""
    for path in sorted((REPO / "modeling" / "rundir").glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        # a sibling (`from .atomic import ...`) is fine; a relative import that leaves the room is recorded as ".."
        imported |= {
            (".." if node.level > 1 else "rundir") if node.level else node.module
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
        }
        outside = {name.split(".")[0] for name in imported} - set(sys.stdlib_module_names) - {"rundir"}
        assert not outside, f"{path.name} imports {sorted(outside)}"
