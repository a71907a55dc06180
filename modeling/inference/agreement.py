"""How much int8 changes the answers: label agreement of ONNX Runtime int8 with fp32 on a trained run's checkpoints."""

import os

from ..prediction_fields import PREDICTED
from ..rundir.reader import FinishedRun
from .onnx_backend import load_pipeline


def int8_label_agreement(checkpoint: str | os.PathLike, paths: list[str], num_threads: int | None = None) -> dict:
    """Top labels of `checkpoint` (fp32 ONNX vs dynamic int8 ONNX) over the audio files `paths` →
    {"agreement": share of files with the same label, "clips": len(paths), "disagreements": [(path, fp32, int8)]}.
    The ONNX files are created next to the checkpoint when absent."""
    labels = {}
    for backend in ("onnx", "onnx-int8"):
        pipe = load_pipeline(checkpoint, backend=backend, num_threads=num_threads)
        labels[backend] = [result[PREDICTED] for result in pipe(list(paths))]
    pairs = list(zip(paths, labels["onnx"], labels["onnx-int8"]))
    disagreements = [(path, a, b) for path, a, b in pairs if a != b]
    return {"agreement": 1 - len(disagreements) / len(pairs), "clips": len(pairs), "disagreements": disagreements}


def run_int8_agreement(run_dir: str | os.PathLike, paths: list[str], num_threads: int | None = None) -> dict | None:
    """`int8_label_agreement` for every best checkpoint of a training run (`fold<k>/stage{1,2}/best`, e.g. `make
    demo`'s runs/demo) → {"run", "folds": {"fold1/stage2": {...}, ...}, "agreement": mean over the checkpoints};
    None when the run has no such checkpoint."""
    checkpoints = FinishedRun(run_dir).all_best_models()
    if not checkpoints:
        return None
    folds = {name: int8_label_agreement(best, paths, num_threads) for name, best in checkpoints.items()}
    mean = sum(fold["agreement"] for fold in folds.values()) / len(folds)
    return {"run": str(run_dir), "folds": folds, "agreement": mean}
