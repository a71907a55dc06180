"""Stage 0 (FLEA) of fold 1 on 12 polish3 clips (3 speakers × 4: 4 train, 4 validation, 4 test) from a tiny HuBERT
saved with transformers' own `HubertModel`: in this process (`run_stage0`) or as a subprocess a crash test can kill
(`python tests/training/stage0_runs.py RUN_DIR BACKBONE_DIR`)."""

import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (helpers) when run as a script

import yaml  # noqa: E402
from backbone_runs import FAST_CONV, tiny_run_config  # noqa: E402


# 2 epochs of 2 steps (4 clips, batch 2): checkpoint-2 after epoch 1, the crash test kills at step 3.
STAGE0 = dict(enabled=True, layer=1, clusters=4, mask_time_prob=0.3, mask_time_length=2, epochs=2, batch_size=2)


def stage0_config(backbone: str | Path, **stage0) -> dict:
    from modeling.training.run_config import resolve_config

    stage2 = {"num_trainable_layers": 1}  # of the tiny backbone's 2
    config = tiny_run_config(backbone, {"stage0": {**STAGE0, **stage0}, "stage2": stage2})
    path = Path(backbone).parent / "stage0.yaml"
    path.write_text(yaml.safe_dump(config))
    return resolve_config(path)


def save_backbone(directory: Path) -> Path:
    from helpers import save_plain_backbone

    save_plain_backbone("hubert", directory, **FAST_CONV)
    return directory


def fold_splits(config: dict):
    """(fold 1, its splits, label names) of the config's corpus."""
    from modeling.data.folds import make_folds, split_fold
    from modeling.training.experiment import load_run_dataset

    dataset = load_run_dataset(config)
    fold = make_folds(dataset, config["data"]["folds"], config["data"]["num_folds"])[0]
    return fold, split_fold(dataset, fold), dataset.features["label"].names


def run_stage0(run_dir: str | Path, backbone: str | Path) -> Path:
    """`train_stage0` of fold 1 (resuming what `run_dir` holds); returns `fold1/stage0/best`."""
    from accelerate import PartialState

    from modeling.rundir.layout import RunDir
    from modeling.training.stage0 import train_stage0

    config = stage0_config(backbone)
    fold, splits, label_names = fold_splits(config)
    return train_stage0(fold, splits, str(backbone), config, RunDir(run_dir), label_names, PartialState(cpu=True))


if __name__ == "__main__":
    run_stage0(sys.argv[1], sys.argv[2])
