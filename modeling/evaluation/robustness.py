"""`score.py --perturb`: every fold model and the ensemble on perturbed copies of the scored utterances; ΔUA and
Δmacro-F1 against the clean scores, per perturbation (effects: `modeling.evaluation.perturbations`).

Each perturbed copy is written once as 32-bit float WAV (16 kHz mono, same length) into a temporary folder and
scored exactly like the clean audio (same batching, same models, same calibration); the folder is removed afterwards.
"""

import os
import tempfile
from pathlib import Path

import numpy as np
from datasets import Dataset

from ..audio import load_audio
from ..metrics import compute_ser_metrics
from ..metrics.over_folds import format_signed
from .perturbations import CODECS, Perturbation, encoded_bitrate_kbps, snr_db


def perturbed_copy(rows: Dataset, perturbation: Perturbation, seed: int, folder: str | os.PathLike) -> tuple:
    """(rows whose `audio` are the perturbed WAV files in `folder`, {"snr_db" or "bitrate_kbps": mean measured})."""
    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths, measured = [], []
    for i, audio in enumerate(rows["audio"]):
        name = audio.get("path") if isinstance(audio, dict) else str(audio)
        clean = load_audio(audio)
        noisy = perturbation.apply(clean, seed, f"{name}")
        path = folder / f"{i:06d}.wav"
        sf.write(path, noisy, 16_000, subtype="FLOAT")
        paths.append(str(path))
        if perturbation.name == "noise":
            measured.append(snr_db(clean, noisy))
        elif perturbation.name in CODECS:
            measured.append(encoded_bitrate_kbps(clean, perturbation.name, perturbation.params["compression_level"]))
    key = "snr_db" if perturbation.name == "noise" else "bitrate_kbps"
    summary = {f"mean_{key}": float(np.mean(measured))} if measured else {}
    return rows.remove_columns("audio").add_column("audio", paths), summary


def delta_scores(clean: dict, predicted: np.ndarray, labels: np.ndarray, num_labels: int) -> dict:
    """{"ua", "macro_f1", "delta_ua", "delta_macro_f1"} of perturbed predictions against `clean`'s UA / macro-F1."""
    metrics = compute_ser_metrics(predicted, labels, num_labels)
    return {
        "ua": metrics["ua"],
        "macro_f1": metrics["macro_f1"],
        "delta_ua": metrics["ua"] - clean["ua"],
        "delta_macro_f1": metrics["macro_f1"] - clean["macro_f1"],
    }


def robustness_markdown(perturbations: dict, names: list[str]) -> str:
    """Markdown: one row per perturbation, ΔUA / Δmacro-F1 (percentage points) per fold model and the ensemble."""
    header = "| Perturbation | measured | " + " | ".join(f"{n} ΔUA / ΔF1" for n in names) + " |"
    lines = [header, "|---|---|" + "---:|" * len(names)]
    for spec, entry in perturbations.items():
        # round(v, 2) + 0.0: a value a hair below 0 (an SNR of -0.0004 dB for a 0 dB target) reads 0.00, not -0.00
        measured = ", ".join(f"{k} {round(v, 2) + 0.0:.2f}" for k, v in entry["measured"].items()) or "–"
        cells = [
            f"{format_signed(entry['models'][n]['delta_ua'])} / {format_signed(entry['models'][n]['delta_macro_f1'])}"
            for n in names
        ]
        lines.append(f"| `{spec}` | {measured} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def temporary_folder(output_dir: str | os.PathLike):
    """A temporary folder beside the outputs for the perturbed copies (removed on exit)."""
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=output_dir, prefix=".perturbed-")


__all__ = ["delta_scores", "perturbed_copy", "robustness_markdown", "temporary_folder"]
