"""Figures of a run: the confusion matrix and t-SNE maps of utterance embeddings (the paper's Figs. 2–3).

Headless (Agg backend); every figure is written to a temporary file and renamed, like every other output.
"""

from pathlib import Path

import matplotlib


matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..rundir.atomic import atomic_file  # noqa: E402


def save_figure(figure, path: str | Path, dpi: int = 150) -> None:
    """Write `figure` as PNG atomically and close it."""
    with atomic_file(path, "wb") as f:
        figure.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(figure)


def plot_confusion_matrix(matrix, label_names: list[str], path: str | Path, title: str = "Confusion matrix") -> None:
    """Rows = true class, columns = predicted; cells show the row percentage (colour) and the count.

    matrix: (num_labels, num_labels) counts.
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    support = matrix.sum(axis=1, keepdims=True)
    percent = np.divide(100.0 * matrix, support, out=np.zeros(matrix.shape), where=support > 0)
    size = 1.2 + 0.9 * len(label_names)
    figure, axis = plt.subplots(figsize=(size + 1.2, size))
    image = axis.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="% of true class")
    axis.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    axis.set_yticks(range(len(label_names)), label_names)
    axis.set_xlabel("Predicted")
    axis.set_ylabel("True")
    axis.set_title(title)
    for (row, column), count in np.ndenumerate(matrix):
        color = "white" if percent[row, column] > 60 else "black"
        axis.text(
            column, row, f"{percent[row, column]:.1f}%\n({count})", ha="center", va="center", color=color, fontsize=8
        )
    save_figure(figure, path)


def tsne_2d(embeddings: np.ndarray, seed: int = 0) -> np.ndarray:
    """(num_examples, hidden_size) → (num_examples, 2) t-SNE coordinates (perplexity adapted to small sets)."""
    from sklearn.manifold import TSNE

    perplexity = min(30.0, max(1.0, (len(embeddings) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(embeddings)


def plot_tsne(panels: list[tuple[str, np.ndarray, np.ndarray]], label_names: list[str], path: str | Path) -> None:
    """One t-SNE scatter per panel, coloured by true class.

    panels: (title, embeddings (N, hidden_size), labels (N,) int) per panel, e.g. one per fold's test set.
    """
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.0 * rows), squeeze=False)
    colors = plt.get_cmap("tab10")
    for axis, (title, embeddings, labels) in zip(axes.flat, panels):
        axis.set_title(title, fontsize=10)
        axis.set_xticks([])
        axis.set_yticks([])
        if len(embeddings) < 5:
            axis.text(0.5, 0.5, "too few examples", ha="center", va="center", transform=axis.transAxes)
            continue
        points = tsne_2d(np.asarray(embeddings, dtype=np.float32))
        for label, name in enumerate(label_names):
            chosen = np.asarray(labels) == label
            axis.scatter(points[chosen, 0], points[chosen, 1], s=9, alpha=0.8, color=colors(label % 10), label=name)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, names, loc="lower center", ncol=min(len(names), 8), frameon=False)
    figure.suptitle("t-SNE of utterance embeddings (test speakers)")
    figure.tight_layout(rect=(0, 0.06, 1, 0.97))
    save_figure(figure, path)


__all__ = ["plot_confusion_matrix", "plot_tsne", "save_figure", "tsne_2d"]
