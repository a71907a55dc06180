"""FLEA's frame-level pseudo-emotion labels: one transformer layer's frame embeddings, clustered with K-means.

Stage 0 (`modeling.training.stage0`) extracts the embeddings of layer `layer` (`hidden_states[layer]`: 0 is the input
of the first transformer layer, L the output of layer L) for every frame of every clip of a fold's training speakers,
fits scikit-learn's `MiniBatchKMeans`, and gives each frame the id of its nearest centroid. The centroids are saved
with the fold, the ids beside them (`rundir/layout.py`: `fold<k>/stage0/pseudo_labels/`), so a resumed stage 0
trains on the same targets. Li et al., "Frame-level emotional state alignment method for speech emotion recognition"
(FLEA; docs/flea.md), phase 1.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from sklearn.cluster import MiniBatchKMeans

from ..audio import load_audio
from ..collator import make_feature_extractor
from ..frames import frame_geometry, frames_for_samples


class PseudoLabelError(ValueError):
    """The pseudo labels cannot be made as configured (the message names the setting and the values)."""


def layer_problem(layer: int, num_hidden_layers: int, key: str = "stage0.layer") -> str | None:
    """Why `layer` is not a hidden state of a backbone with `num_hidden_layers` transformer layers (None: fine)."""
    if isinstance(layer, int) and 0 <= layer <= num_hidden_layers:
        return None
    return (
        f"{key} = {layer!r}: the backbone has {num_hidden_layers} transformer layers; the layer must be between 0 "
        f"(the input of the first layer) and {num_hidden_layers} (the last layer's output)."
    )


@torch.no_grad()
def layer_embeddings(backbone, audio_files: list[str], layer: int) -> list[np.ndarray]:
    """The frame embeddings of `hidden_states[layer]` of each clip, one clip at a time (no padding: a frame's
    embedding does not depend on the other clips of a batch).

    Args:
        backbone: a `*Model` (wav2vec 2.0, HuBERT, WavLM, data2vec-audio), e.g. a frame-aligned model's `base_model`.
        audio_files: clips (any input `load_audio` takes), decoded at 16 kHz.
        layer: 0 … `num_hidden_layers`.
    Returns:
        One float32 array (frames, hidden_size) per clip; frames = `frames_for_samples(len(audio))`.
    Raises:
        PseudoLabelError: `layer` outside the backbone.
    """
    problem = layer_problem(layer, backbone.config.num_hidden_layers)
    if problem:
        raise PseudoLabelError(problem)
    extractor, (_, receptive_field) = make_feature_extractor(), frame_geometry(backbone.config)
    was_training, device = backbone.training, next(backbone.parameters()).device
    backbone.eval()
    embeddings = []
    for audio in audio_files:
        array = load_audio(audio, min_samples=receptive_field)
        inputs = extractor(array, sampling_rate=16000, return_attention_mask=True, return_tensors="pt")
        outputs = backbone(
            inputs["input_values"].to(device),
            attention_mask=inputs["attention_mask"].to(device),
            output_hidden_states=True,
        )
        embeddings.append(outputs.hidden_states[layer][0].float().cpu().numpy())
    backbone.train(was_training)
    return embeddings


def clip_frames(durations_s, config) -> np.ndarray:
    """Frames each clip yields (from its duration in seconds and the backbone config's conv stack)."""
    hop, receptive_field = frame_geometry(config)
    samples = np.maximum(np.round(np.asarray(durations_s, dtype=np.float64) * 16000).astype(np.int64), receptive_field)
    return frames_for_samples(samples, hop, receptive_field)


def clusters_problem(clusters: int, frames: int, key: str = "stage0.clusters") -> str | None:
    """K-means needs at least as many frames as clusters (None: fine)."""
    if clusters <= frames:
        return None
    return f"{key} = {clusters}: more clusters than the {frames} training frames to cluster; lower {key}."


@dataclass
class ClusterModel:
    """K-means centroids and how they were fitted.

    Attributes:
        centroids: (clusters, hidden_size) float32.
        inertia: sum of squared distances of the fitted frames to their centroids.
        fitted_frames: frames the centroids were fitted on.
    """

    centroids: np.ndarray
    inertia: float
    fitted_frames: int

    def assign(self, frames: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """The nearest centroid's id (squared Euclidean distance, as `MiniBatchKMeans.predict`) of each frame:
        (frames, hidden_size) → (frames,) int64."""
        centroids = torch.from_numpy(np.ascontiguousarray(self.centroids, dtype=np.float32))
        ids = []
        for start in range(0, len(frames), chunk):
            block = torch.from_numpy(np.ascontiguousarray(frames[start : start + chunk], dtype=np.float32))
            distances = (block * block).sum(1, keepdim=True) - 2 * block @ centroids.T + (centroids**2).sum(1)
            ids.append(distances.argmin(1).numpy())
        return np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)

    def save(self, path: str | Path):
        save_file(
            {"centroids": self.centroids.astype(np.float32)},
            str(path),
            metadata={"inertia": repr(float(self.inertia)), "fitted_frames": str(int(self.fitted_frames))},
        )

    @classmethod
    def load(cls, path: str | Path) -> "ClusterModel":
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            metadata = f.metadata()
        return cls(load_file(str(path))["centroids"], float(metadata["inertia"]), int(metadata["fitted_frames"]))


def fit_clusters(
    frames: np.ndarray, clusters: int, seed: int, batch_size: int = 4096, max_frames: int | None = None
) -> ClusterModel:
    """Fit scikit-learn's `MiniBatchKMeans` (k-means++ initialisation, 3 inits) on `frames` (n, hidden_size).

    `max_frames`: fit on this many frames drawn without replacement (seeded), every frame is still assigned.
    Raises `PseudoLabelError` when there are fewer frames than clusters.
    """
    problem = clusters_problem(clusters, len(frames))
    if problem:
        raise PseudoLabelError(problem)
    rng = np.random.default_rng(seed)
    if max_frames is not None and len(frames) > max_frames:
        frames = frames[np.sort(rng.choice(len(frames), max_frames, replace=False))]
    kmeans = MiniBatchKMeans(n_clusters=clusters, batch_size=batch_size, n_init=3, random_state=seed)
    kmeans.fit(frames.astype(np.float32, copy=False))
    return ClusterModel(kmeans.cluster_centers_.astype(np.float32), float(kmeans.inertia_), len(frames))


@dataclass
class PseudoLabels:
    """The cluster id of every frame of every clip: `ids[offsets[i]:offsets[i + 1]]` are clip i's (`files[i]`)."""

    files: list[str]
    ids: np.ndarray
    offsets: np.ndarray

    @classmethod
    def from_clips(cls, files: list[str], per_clip: list[np.ndarray]) -> "PseudoLabels":
        lengths = [len(ids) for ids in per_clip]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        ids = np.concatenate(per_clip).astype(np.int16) if per_clip else np.zeros(0, np.int16)
        return cls(list(files), ids, offsets)

    def clip(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]].astype(np.int64)

    def save(self, path: str | Path):
        with open(path, "wb") as f:
            np.savez(f, files=np.asarray(self.files, dtype=str), ids=self.ids, offsets=self.offsets)

    @classmethod
    def load(cls, path: str | Path) -> "PseudoLabels":
        with np.load(path) as data:
            return cls([str(name) for name in data["files"]], data["ids"], data["offsets"])


def make_pseudo_labels(
    backbone, audio_files: list[str], layer: int, clusters: int, seed: int, batch_size: int = 4096, max_frames=None
) -> tuple[ClusterModel, PseudoLabels]:
    """Phase 1 of FLEA: layer embeddings of every clip → K-means → the cluster id of every frame."""
    per_clip = layer_embeddings(backbone, audio_files, layer)
    frames = np.concatenate(per_clip) if per_clip else np.zeros((0, backbone.config.hidden_size), np.float32)
    model = fit_clusters(frames, clusters, seed, batch_size, max_frames)
    return model, PseudoLabels.from_clips(audio_files, [model.assign(clip) for clip in per_clip])


__all__ = [
    "ClusterModel",
    "PseudoLabelError",
    "PseudoLabels",
    "clip_frames",
    "clusters_problem",
    "fit_clusters",
    "layer_embeddings",
    "layer_problem",
    "make_pseudo_labels",
]
