"""Can I trust its probabilities? Temperature scaling, expected calibration error, Brier score, reliability diagrams.

- Temperature scaling (Guo et al., "On Calibration of Modern Neural Networks", ICML 2017): one scalar T > 0 per
  model, p = softmax(z / T), fitted by minimising the negative log-likelihood of the validation split's labels
  (after checkpoint selection, so selection and calibration use the same held-out speakers but the checkpoint is
  fixed). The NLL is convex in 1/T; it is minimised over log T in [log 0.05, log 20] with
  `scipy.optimize.minimize_scalar` (bounded Brent). T < 1 sharpens, T > 1 softens; the argmax never changes.
- ECE (15 equal-width confidence bins, Guo et al. Eq. 3): Σ_b |B_b|/N · |acc(B_b) − conf(B_b)|, conf = the top
  probability, acc = whether the top class is the label; bins (i/15, (i+1)/15], the first also holds 0.
- Brier score (multi-class, Brier 1950): mean over utterances of Σ_c (p_c − 1[c = label])², in [0, 2].
- Reliability diagram: per bin, accuracy against mean confidence, before and after calibration (matplotlib).
"""

import math
import os

import numpy as np

from ..prediction_fields import softmax


ECE_BINS = 15
TEMPERATURE_BOUNDS = (0.05, 20.0)
# Below this many validation utterances train.py leaves T = 1: the NLL of a handful of clips is minimised at a bound
# (all right: T → 0.05, probabilities near 1) or by one confident error; on the bundled demo's 6-clip validation
# splits the fitted T was 0.13 and the test ECE rose. Guo et al. fit T on 5,000+ validation images.
MIN_CALIBRATION_UTTERANCES = 30


def negative_log_likelihood(logits, labels, temperature: float = 1.0) -> float:
    """Mean −log softmax(z / T)[label] (natural log). logits (N, C), labels (N,) class ids."""
    logits = np.asarray(logits, dtype=np.float64) / temperature
    labels = np.asarray(labels, dtype=np.int64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1))
    return float(np.mean(log_z - shifted[np.arange(len(labels)), labels]))


def fit_temperature(logits, labels) -> float:
    """The temperature T minimising the NLL of `labels` under softmax(logits / T).

    Args:
        logits: (N, C) utterance logits of one model (or an ensemble's log mean probabilities).
        labels: (N,) true class ids.
    Returns:
        T in `TEMPERATURE_BOUNDS` (a bound when the optimum lies beyond it, e.g. every prediction right: T → 0).
    Raises:
        ValueError: no utterances, or logits and labels of different lengths.
    """
    from scipy.optimize import minimize_scalar

    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if len(logits) == 0 or len(logits) != len(labels):
        raise ValueError(f"fit_temperature: {len(logits)} logits rows for {len(labels)} labels (need ≥ 1, equal).")
    low, high = (math.log(b) for b in TEMPERATURE_BOUNDS)
    result = minimize_scalar(
        lambda log_t: negative_log_likelihood(logits, labels, math.exp(log_t)),
        bounds=(low, high),
        method="bounded",
        options={"xatol": 1e-5},
    )
    return float(math.exp(result.x))


def _binned(probabilities, labels, bins: int):
    """(confidence (N,), correct (N,), bin index (N,)); bin i holds (i/bins, (i+1)/bins], bin 0 also 0."""
    probabilities, labels = np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    confidence, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == labels
    return confidence, correct, np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)


def expected_calibration_error(probabilities, labels, bins: int = ECE_BINS) -> float:
    """ECE with `bins` equal-width bins of the top probability (module docstring). probabilities (N, C)."""
    return float(
        sum(r["n"] * abs(r["accuracy"] - r["confidence"]) for r in reliability_bins(probabilities, labels, bins))
        / len(labels)
    )


def brier_score(probabilities, labels) -> float:
    """Mean over utterances of Σ_c (p_c − 1[c = label])². probabilities (N, C), labels (N,)."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    onehot = np.eye(probabilities.shape[1])[np.asarray(labels, dtype=np.int64)]
    return float(np.mean(((probabilities - onehot) ** 2).sum(axis=1)))


def calibration_scores(logits, labels, temperature: float) -> dict:
    """{"temperature", "n", "ece_before", "ece_after", "brier_before", "brier_after", "nll_before", "nll_after"} of
    one model's logits on one split (before: T = 1)."""
    before, after = softmax(logits), softmax(logits, temperature)
    return {
        "temperature": float(temperature),
        "n": int(len(labels)),
        "ece_before": expected_calibration_error(before, labels),
        "ece_after": expected_calibration_error(after, labels),
        "brier_before": brier_score(before, labels),
        "brier_after": brier_score(after, labels),
        "nll_before": negative_log_likelihood(logits, labels),
        "nll_after": negative_log_likelihood(logits, labels, temperature),
    }


def probability_scores(before, after, labels) -> dict:
    """ECE and Brier of probabilities before and after calibration (for an ensemble: mean probabilities)."""
    return {
        "n": int(len(labels)),
        "ece_before": expected_calibration_error(before, labels),
        "ece_after": expected_calibration_error(after, labels),
        "brier_before": brier_score(before, labels),
        "brier_after": brier_score(after, labels),
    }


def reliability_bins(probabilities, labels, bins: int = ECE_BINS) -> list[dict]:
    """Per non-empty bin: {"low", "high", "n", "confidence" (mean top probability), "accuracy"}."""
    confidence, correct, index = _binned(probabilities, labels, bins)
    return [
        {
            "low": b / bins,
            "high": (b + 1) / bins,
            "n": int((index == b).sum()),
            "confidence": float(confidence[index == b].mean()),
            "accuracy": float(correct[index == b].mean()),
        }
        for b in range(bins)
        if (index == b).any()
    ]


def plot_reliability(before, after, labels, path: str | os.PathLike, title: str = "Reliability") -> None:
    """The reliability diagram (accuracy against confidence per bin, the diagonal = perfect calibration), before and
    after calibration side by side, saved as a PNG at `path` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..rundir.atomic import atomic_file

    figure, axes = plt.subplots(1, 2, figsize=(8, 4), sharey=True)
    for axis, (name, probabilities) in zip(axes, (("uncalibrated", before), ("calibrated", after))):
        rows = reliability_bins(probabilities, labels)
        axis.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect")
        axis.bar(
            [r["low"] for r in rows],
            [r["accuracy"] for r in rows],
            width=1 / ECE_BINS,
            align="edge",
            edgecolor="black",
            alpha=0.7,
            label="accuracy",
        )
        axis.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], "o", color="C3", label="mean conf.")
        ece = expected_calibration_error(probabilities, labels)
        axis.set(title=f"{name} (ECE {100 * ece:.1f} %)", xlabel="confidence (top probability)", xlim=(0, 1))
        axis.set_ylim(0, 1)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left", fontsize=8)
    figure.suptitle(f"{title} (n = {len(labels)}, {ECE_BINS} bins)")
    figure.tight_layout()
    with atomic_file(path, "wb") as f:
        figure.savefig(f, format="png", dpi=100)
    plt.close(figure)


def store_temperature(checkpoint: str | os.PathLike, temperature: float) -> None:
    """Record `temperature` as `calibration_temperature` in the checkpoint folder's config.json, crash-safely: a new
    folder (weights hard-linked where possible, the new config.json, a new checksums.json) replaces the old one in
    one rename (`atomic_directory`), so a kill leaves either the old or the new checkpoint, never a config.json that
    its checksums.json contradicts."""
    import json
    import shutil
    from pathlib import Path

    from ..rundir.atomic import atomic_directory
    from ..rundir.integrity import MANIFEST, write_manifest

    checkpoint = Path(checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    if config.get("calibration_temperature") == temperature:
        return
    config["calibration_temperature"] = float(temperature)
    with atomic_directory(checkpoint) as tmp:
        for source in sorted(checkpoint.rglob("*")):
            target = tmp / source.relative_to(checkpoint)
            if source.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif source.name not in ("config.json", MANIFEST):
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(source, target)
                except OSError:
                    shutil.copy2(source, target)
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        write_manifest(tmp)


def calibration_table(per_fold: dict[str, dict]) -> str:
    """Markdown: per fold (and ensemble) T, ECE and Brier before → after (ECE in %)."""
    lines = [
        "| Model | n | T | ECE before (%) | ECE after (%) | Brier before | Brier after |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, c in per_fold.items():
        temperature = "–" if c.get("temperature") is None else f"{c['temperature']:.3f}"
        lines.append(
            f"| {name} | {c['n']} | {temperature} | {100 * c['ece_before']:.2f} | {100 * c['ece_after']:.2f} | "
            f"{c['brier_before']:.4f} | {c['brier_after']:.4f} |"
        )
    return "\n".join(lines)


__all__ = [
    "ECE_BINS",
    "brier_score",
    "calibration_scores",
    "calibration_table",
    "expected_calibration_error",
    "MIN_CALIBRATION_UTTERANCES",
    "fit_temperature",
    "negative_log_likelihood",
    "plot_reliability",
    "store_temperature",
    "probability_scores",
    "reliability_bins",
]
