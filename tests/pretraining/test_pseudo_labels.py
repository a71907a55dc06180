"""Stage 0's pseudo labels (modeling/pretraining/pseudo_labels.py): one layer's frame embeddings of real speech, and
their K-means assignment against scikit-learn's own."""

import numpy as np
import pytest
import torch
from helpers import POLISH3, polish3_clips, tiny_backbone_settings
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics import pairwise_distances_argmin
from transformers import HubertConfig, HubertModel

from modeling.audio import load_audio
from modeling.collator import make_feature_extractor
from modeling.pretraining.pseudo_labels import (
    ClusterModel,
    PseudoLabelError,
    PseudoLabels,
    fit_clusters,
    layer_embeddings,
    make_pseudo_labels,
)


pytestmark = pytest.mark.skipif(POLISH3 is None, reason="needs data/polish3")
FAST_CONV = {"conv_kernel": [10, 8, 8], "conv_stride": [5, 8, 8]}


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return HubertModel(HubertConfig(**tiny_backbone_settings("hubert", **FAST_CONV))).eval()


@pytest.fixture(scope="module")
def clips():
    return [path for path, _ in polish3_clips(6)]


def test_layer_embeddings_are_the_backbones_hidden_states_of_each_whole_clip(backbone, clips):
    embeddings = layer_embeddings(backbone, clips[:2], layer=1)
    for path, got in zip(clips[:2], embeddings):
        inputs = make_feature_extractor()(load_audio(path), sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            expected = backbone(inputs["input_values"], output_hidden_states=True).hidden_states[1][0]
        # hop 5·8·8 = 320 samples, receptive field 1 + 9·1 + 7·5 + 7·40 = 325 samples
        assert got.shape == ((len(load_audio(path)) - 325) // 320 + 1, 32)
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_kmeans_assignment_equals_scikit_learns_on_the_same_embeddings(backbone, clips):
    frames = np.concatenate(layer_embeddings(backbone, clips, layer=2))
    model = fit_clusters(frames, clusters=8, seed=5, batch_size=256)
    peer = MiniBatchKMeans(n_clusters=8, batch_size=256, n_init=3, random_state=5).fit(frames)
    np.testing.assert_allclose(model.centroids, peer.cluster_centers_, rtol=1e-5, atol=1e-6)
    ids = model.assign(frames)
    assert len(np.unique(ids)) > 1
    np.testing.assert_array_equal(ids, peer.predict(frames))
    np.testing.assert_array_equal(ids, pairwise_distances_argmin(frames, peer.cluster_centers_))


def test_cluster_model_and_pseudo_labels_round_trip_through_their_files(backbone, clips, tmp_path):
    clusters, labels = make_pseudo_labels(backbone, clips[:3], layer=1, clusters=5, seed=1)
    clusters.save(tmp_path / "clusters.safetensors")
    labels.save(tmp_path / "pseudo_labels.npz")
    loaded, read = (
        ClusterModel.load(tmp_path / "clusters.safetensors"),
        PseudoLabels.load(tmp_path / "pseudo_labels.npz"),
    )
    np.testing.assert_array_equal(loaded.centroids, clusters.centroids)
    assert (loaded.inertia, loaded.fitted_frames) == (clusters.inertia, clusters.fitted_frames)
    assert read.files == clips[:3] and [len(read.clip(i)) for i in range(3)] == [len(labels.clip(i)) for i in range(3)]
    np.testing.assert_array_equal(read.ids, labels.ids)


@pytest.mark.bad_input
def test_a_layer_outside_the_backbone_and_too_many_clusters_are_refused(backbone, clips):
    for layer in (-1, 3):
        with pytest.raises(PseudoLabelError, match=rf"stage0.layer = {layer}: the backbone has 2 transformer layers"):
            layer_embeddings(backbone, clips[:1], layer=layer)
    frames = np.concatenate(layer_embeddings(backbone, clips[:1], layer=1))
    with pytest.raises(PseudoLabelError, match=rf"stage0.clusters = 500: more clusters than the {len(frames)} "):
        fit_clusters(frames, clusters=500, seed=0)
