"""Runs the tests share: a tiny train.py config (`write_config`) and a finished run directory with known numbers
(`write_run`), used by the training, evaluation, publishing and inference tests alike."""

import struct
import zlib
from pathlib import Path

import torch
import yaml
from helpers import POLISH3, POLISH3_LABELS, tiny_config

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.collator import make_feature_extractor
from modeling.publishing.remote_code import hub_pipeline_files
from modeling.rundir.atomic import atomic_write_json


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


# λ_EAL ≠ λ_FUAL in every run below: with equal values a swap between the YAML and the model would not show.
UNEQUAL_LOSS_WEIGHTS = {"eal_weight": 0.3, "fual_weight": 0.7}


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


FOLDS = {"1": ("m2", "m1"), "2": ("m3", "m2")}  # fold → (validation speaker, test speaker), as leave_speakers_out


SPEAKERS = ["m1", "m2", "m3", "m4", "m5"]


FOLD_RESULTS = {
    "1": {
        "validation": {"ua": 0.4, "wa": 0.41},
        "test": {
            "ua": 0.52345,
            "wa": 0.5,
            "per_class_recall": [0.5555, 0.6667, 0.2778],
            "confusion_matrix": [[10, 5, 3], [4, 12, 2], [6, 7, 5]],
        },
    },
    "2": {
        "validation": {"ua": 0.38, "wa": 0.39},
        "test": {
            "ua": 0.44,
            "wa": 0.45,
            "per_class_recall": [0.4444, 0.5, 0.3889],
            "confusion_matrix": [[8, 6, 4], [5, 9, 4], [3, 8, 7]],
        },
    },
}


# The resolved config train.py records (modeling/run_config.py), shortened.
TRAIN_CONFIG = {
    "seed": 42,
    "data": {
        "loader": "audio_folder",
        "root": "data/polish3",
        "loader_args": {"labels": POLISH3_LABELS},
        "folds": "leave_speakers_out",
    },
    "model": {
        "name_or_path": None,
        "random_init": {"hidden_size": 32, "num_hidden_layers": 2},
        "config_overrides": {},
    },
    "training": {"full_determinism": True, "logging_steps": 10},
    "stage1": {
        "pooling": "attentive",
        "epochs": 1,
        "batch_size": 4,
        "backbone_learning_rate": 1e-4,
        "num_trainable_layers": None,
        "eal_weight": 0.0,
        "fual_weight": 0.0,
    },
    "stage2": {
        "pooling": "cls_attention",
        "epochs": 1,
        "batch_size": 4,
        "backbone_learning_rate": 1e-5,
        "num_trainable_layers": 1,
        "eal_weight": 0.05,
        "fual_weight": 0.05,
    },
}


TINY_TRAIN_ARGS = [  # one fold of configs/demo.yaml on 6 clips per speaker, one epoch per stage: ~20 s on one core
    "--config",
    "configs/demo.yaml",
    "--folds",
    "1",
    "--max-epochs",
    "1",
    "--set",
    "data.max_per_speaker=6",
    "--set",
    "stage1.batch_size=6",
    "--set",
    "stage2.batch_size=6",
]


# ----------------------------------------------------------------------------------------------------------------
# Fixtures: a finished run, the loopback Hub
# ----------------------------------------------------------------------------------------------------------------
def tiny_png(width: int = 2, height: int = 2) -> bytes:
    """A valid grey PNG (stands in for train.py's confusion-matrix plot)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes([128]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def write_run(run_dir: Path, folds=FOLDS) -> Path:
    """A run in train.py's layout (modeling/training.py, modeling/results.py) with known numbers: folds 1 and 2 of
    5 finished, tiny random stage-2 checkpoints."""
    entries = {}
    for seed, (name, (validation, test)) in enumerate(folds.items()):
        fold_dir = run_dir / f"fold{name}"
        best = fold_dir / "stage2" / "best"
        torch.manual_seed(seed)
        Wav2Vec2ForFrameAlignedClassification(tiny_config()).save_pretrained(best)
        make_feature_extractor().save_pretrained(best)
        speakers = {
            "train": [s for s in SPEAKERS if s not in (validation, test)],
            "validation": [validation],
            "test": [test],
        }
        split = {"fold": int(name)}
        split.update(
            {
                k: {"speakers": v, "sessions": [], "num_examples": 90 * len(v), "class_counts": {}}
                for k, v in speakers.items()
            }
        )
        atomic_write_json(fold_dir / "split.json", split)
        entries[name] = {
            **FOLD_RESULTS[name],
            "checkpoint": f"fold{name}/stage2/best",
            "speakers": speakers,
            "num_examples": {k: 90 * len(v) for k, v in speakers.items()},
            "stage1": {
                "validation": {"ua": 0.3, "wa": 0.3},
                "test": {"ua": 0.35, "wa": 0.36},
                "checkpoint": f"fold{name}/stage1/best",
            },
        }
        atomic_write_json(fold_dir / "metrics.json", entries[name])
    results = {
        "folds": entries,
        "mean": {"ua": 0.481725, "wa": 0.475},
        "std": {"ua": 0.041725, "wa": 0.025},
        "labels": POLISH3_LABELS,
        "num_folds": 5,
        "folds_evaluated": [int(name) for name in folds],
        "metric_scale": "fraction",
        "config": TRAIN_CONFIG,
    }
    atomic_write_json(run_dir / "results.json", results)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(TRAIN_CONFIG, sort_keys=False))
    (run_dir / "results.md").write_text("# Results\n")
    (run_dir / "confusion_matrix.png").write_bytes(tiny_png())
    (run_dir / "tsne.png").write_bytes(tiny_png(3, 3))
    return run_dir


def save_published(folder):
    """A tiny checkpoint with exactly the files a fold's Hub repository gets (weights, config with auto_map and
    custom_pipelines, feature extractor, remote code)."""
    torch.manual_seed(0)
    Wav2Vec2ForFrameAlignedClassification(tiny_config()).save_pretrained(folder)
    make_feature_extractor().save_pretrained(folder)
    for name, content in hub_pipeline_files(folder).items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.read_bytes())
    return folder
