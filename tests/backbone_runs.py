"""One finished tiny `train.py` run per backbone, shared by every test that needs one (the backbone × entry-point
matrix, the training checks per backbone) through the session fixture `backbone_run` in conftest.py.

Each run: a plain checkpoint saved with transformers' own `*Model` class (what a Hub backbone repo holds), 1 fold,
1 epoch per stage on 12 polish3 clips (3 speakers × 4: 4 train, 4 validation, 4 test), through the real `train.py`.
HuBERT's stage 2 trains from the frozen-prefix cache and WavLM's pools SUPERB's weighted layer sum, so those
features are exercised on the way.
"""

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from helpers import POLISH3, REPO, save_plain_backbone


# A real frame rate (320 samples per frame, like the base models) on a tiny backbone: fast on 1 s clips.
FAST_CONV = {"conv_kernel": [10, 8, 8], "conv_stride": [5, 8, 8]}
SECTIONS = {
    "wav2vec2": {},
    "hubert": {"stage2": {"cache_frozen_prefix": True}},  # the frozen-prefix cache on HuBERT
    "wavlm": {"model": {"config_overrides": {"use_weighted_layer_sum": True}}},  # SUPERB's weighted sum
    "data2vec-audio": {},
    "whisper": {},  # Whisper's encoder on each clip's own frames (its tiny config: helpers.TINY_WHISPER)
}


def tiny_run_config(backbone, *overrides: dict) -> dict:
    """A tiny run's config (the one data section of `write_config` and stage0_runs.py): seed 3, 12 polish3 clips
    (3 speakers × 4; fold 1: 4 train, 4 validation, 4 test), `backbone`, losses logged every step; then each of
    `overrides` ({section: values}) in turn, its values merged into the section's."""
    config = dict(
        seed=3,
        data=dict(
            loader="audio_folder",
            root=str(POLISH3),
            loader_args={"labels": ["anger", "fear", "neutral"]},
            speakers=["m1", "m2", "m3"],
            max_per_speaker=4,
        ),
        model={"name_or_path": str(backbone)},
        training={"logging_steps": 1},
    )
    for sections in overrides:
        for name, values in sections.items():
            config[name] = {**config.get(name, {}), **values}
    return config


def write_config(path, backbone, **sections) -> str:
    """1 epoch per stage on `tiny_run_config`'s 12 clips, no warm-up; `sections` merged into it."""
    stage = dict(epochs=1, batch_size=4, max_length_seconds=1.0, warmup_ratio=0.0)
    stages = dict(stage1=stage, stage2=dict(stage, num_trainable_layers=1))
    path.write_text(yaml.safe_dump(tiny_run_config(backbone, stages, sections)))
    return str(path)


def per_backbone(model_types) -> list:
    """`parametrize` values for tests that use `backbone_run`: under pytest-xdist (`make test`: `-n 2 --dist
    loadgroup`) every test of one backbone runs in the same worker, so each backbone's run is trained once."""
    return [
        pytest.param(model_type, marks=pytest.mark.xdist_group(f"backbone-{model_type}")) for model_type in model_types
    ]


@dataclass
class BackboneRun:
    model_type: str
    path: Path  # the run directory
    backbone: Path  # the plain checkpoint it started from
    config: dict  # the config file's content

    @property
    def best(self) -> Path:
        return self.path / "fold1" / "stage2" / "best"


def train_backbone_run(model_type: str, folder: Path) -> BackboneRun:
    """`train.py --folds 1` from a plain `model_type` checkpoint (a subprocess: the real command)."""
    save_plain_backbone(model_type, folder / "backbone", **FAST_CONV)
    config = write_config(folder / "run.yaml", folder / "backbone", **SECTIONS[model_type])
    run_dir = folder / "run"
    process = subprocess.run(
        [sys.executable, "train.py", "--config", config, "--output-dir", str(run_dir), "--folds", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return BackboneRun(model_type, run_dir, folder / "backbone", yaml.safe_load(Path(config).read_text()))
