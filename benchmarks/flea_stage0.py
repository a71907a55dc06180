"""Stage 0 (FLEA) on real speech: does the masked-prediction objective learn? And scikit-learn's MiniBatchKMeans
against its full KMeans on the same embeddings.

`python -m benchmarks.flea_stage0 [--epochs 8] [--output benchmarks/flea_stage0.json]`

nEMO's 4-class subset (../shared/data/nemo4, CC BY-NC-SA: read from there, never copied). Stage 0 runs through
the real `train_stage0` on one fold: training speakers EB0, TP0, SM0 (`--clips` clips each), validation KD0 and
test KS0 (never read by stage 0); held-out frames for the check come from the test speaker. The backbone is a
small randomly initialised HuBERT (the seed fixes it): its layer-2 frames are clustered into `--clusters` pseudo
labels, spans of `--span` frames are masked (mask_time_prob 0.2).
Reported: the training loss of the first and the last epoch; on the held-out speaker's clips, the accuracy of the
predicted cluster on masked frames (spans drawn as in training) against chance (1 / clusters) and against always
predicting the most frequent cluster; K-means fit time and inertia of MiniBatchKMeans vs KMeans. A short CPU run
of a small model from scratch: it shows that the objective learns, it says nothing of FLEA's accuracy.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from safetensors.torch import load_file
from sklearn.cluster import KMeans
from transformers import HubertConfig, HubertModel

from benchmarks.common import SMALL_CPU_BACKBONE
from modeling.data.folds import Fold, split_fold
from modeling.pretraining.masked_prediction import MaskedPseudoLabelModel, span_mask
from modeling.pretraining.pseudo_labels import ClusterModel, fit_clusters, layer_embeddings
from modeling.rundir.atomic import atomic_write_json, read_json
from modeling.rundir.layout import RunDir
from modeling.training.experiment import load_run_dataset
from modeling.training.run_config import resolve_config
from modeling.training.stage0 import train_stage0


NEMO4 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nemo4"
FOLD = Fold(1, train=("EB0", "SM0", "TP0"), validation=("KD0",), test=("KS0",))
LAYER = 2
BACKBONE = {**SMALL_CPU_BACKBONE, "num_hidden_layers": 3}  # layer 2 of 3 clustered, as HuBERT-base's 9 of 12


def make_config(folder: Path, args) -> dict:
    clips, epochs, seed = args.clips, args.epochs, args.seed
    torch.manual_seed(seed)
    HubertModel(HubertConfig(**BACKBONE)).save_pretrained(folder / "backbone")
    config = dict(
        seed=seed,
        data=dict(loader="audio_folder", root=str(NEMO4), loader_args={"labels": ["neutral", "happy", "sad", "angry"]},
                  speakers=[*FOLD.train, *FOLD.validation, *FOLD.test], max_per_speaker=clips),
        model={"name_or_path": str(folder / "backbone")},
        training={"logging_steps": 5},
        stage0=dict(enabled=True, layer=LAYER, clusters=args.clusters, mask_time_prob=0.2,
                    mask_time_length=args.span, epochs=epochs, batch_size=8, learning_rate=args.lr, warmup_ratio=0.1),
        stage2={"num_trainable_layers": 1},
    )  # fmt: skip
    (folder / "stage0.yaml").write_text(json.dumps(config))
    return resolve_config(folder / "stage0.yaml")


def epoch_losses(stage_dir: Path) -> dict[int, float]:
    """Mean logged training loss per epoch, from the last checkpoint's trainer_state.json."""
    last = max(stage_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    history = [entry for entry in read_json(last / "trainer_state.json")["log_history"] if "loss" in entry]
    by_epoch: dict[int, list[float]] = {}
    for entry in history:
        by_epoch.setdefault(int(np.ceil(entry["epoch"] - 1e-9)), []).append(entry["loss"])
    return {epoch: float(np.mean(values)) for epoch, values in sorted(by_epoch.items())}


@torch.no_grad()
def held_out_accuracy(run: RunDir, backbone_dir: Path, files: list[str], args) -> dict:
    """Masked-frame accuracy of the trained stage-0 model on clips of a speaker stage 0 never read; targets: the
    initial backbone's layer frames assigned to the fold's saved centroids (as stage 0 made its own)."""
    initial = HubertModel.from_pretrained(backbone_dir).eval()
    centroids = ClusterModel.load(run.pseudo_labels(1) / "clusters.safetensors")
    targets = [centroids.assign(frames) for frames in layer_embeddings(initial, files, LAYER)]
    backbone = HubertModel(HubertConfig(**{**BACKBONE, "mask_time_prob": 0.2, "mask_time_length": args.span}))
    model = MaskedPseudoLabelModel(backbone, args.clusters)
    last = max(run.stage(1, "stage0").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    model.load_state_dict(load_file(last / "model.safetensors"))
    model.eval()
    from modeling.audio import load_audio
    from modeling.collator import make_feature_extractor

    extractor, rng_state = make_feature_extractor(), np.random.get_state()
    np.random.seed(args.seed)
    correct = total = 0
    masked_targets = []
    for path, target in zip(files, targets):
        inputs = extractor(load_audio(path), sampling_rate=16000, return_tensors="pt")
        mask = torch.tensor(span_mask(model.backbone, 1, len(target)))
        logits = model(inputs["input_values"], mask_time_indices=mask)["logits"][0]
        predicted = logits.argmax(-1).numpy()
        selected = mask[0].numpy()
        correct += int((predicted[selected] == target[selected]).sum())
        total += int(selected.sum())
        masked_targets.append(target[selected])
    np.random.set_state(rng_state)
    counts = np.bincount(np.concatenate(masked_targets), minlength=args.clusters)
    return {
        "clips": len(files),
        "masked_frames": total,
        "accuracy": correct / total,
        "chance": 1 / args.clusters,
        "majority_cluster": float(counts.max() / counts.sum()),
    }


def kmeans_comparison(backbone_dir: Path, files: list[str], clusters: int, seed: int) -> dict:
    """MiniBatchKMeans (what stage 0 uses) vs KMeans (Lloyd, full batch) on the same training frames."""
    frames = np.concatenate(layer_embeddings(HubertModel.from_pretrained(backbone_dir).eval(), files, LAYER))
    start = time.perf_counter()
    mini = fit_clusters(frames, clusters, seed)
    mini_s = time.perf_counter() - start
    start = time.perf_counter()
    full = KMeans(n_clusters=clusters, n_init=3, random_state=seed).fit(frames)
    full_s = time.perf_counter() - start
    mini_inertia = float(((frames - mini.centroids[mini.assign(frames)]) ** 2).sum())
    return {
        "frames": len(frames),
        "dimensions": int(frames.shape[1]),
        "minibatch_kmeans": {"seconds": round(mini_s, 3), "inertia": mini_inertia},
        "kmeans": {"seconds": round(full_s, 3), "inertia": float(full.inertia_)},
        "inertia_ratio": mini_inertia / float(full.inertia_),
    }


def run(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = make_config(folder, args)
        dataset = load_run_dataset(config)
        splits = split_fold(dataset, FOLD)
        run_dir = RunDir(folder / "run")
        start = time.perf_counter()
        train_stage0(FOLD, splits, str(folder / "backbone"), config, run_dir, ["a", "b"], PartialState(cpu=True))
        seconds = time.perf_counter() - start
        losses = epoch_losses(run_dir.stage(1, "stage0"))
        summary = read_json(run_dir.pseudo_labels(1) / "pseudo_labels.json")
        return {
            "training": {"speakers": summary["speakers"], "clips": summary["clips"], "frames": summary["frames"]},
            "stage0_seconds": round(seconds, 1),
            "epoch_loss": losses,
            "loss_first_epoch": losses[min(losses)],
            "loss_last_epoch": losses[max(losses)],
            "held_out": held_out_accuracy(run_dir, folder / "backbone", list(splits["test"]["audio"]), args),
            "kmeans": kmeans_comparison(folder / "backbone", list(splits["train"]["audio"]), args.clusters, args.seed),
        }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=20, help="clips per speaker")
    parser.add_argument("--epochs", type=float, default=10)
    parser.add_argument("--clusters", type=int, default=8)
    parser.add_argument("--span", type=int, default=1, help="mask_time_length (frames)")
    parser.add_argument("--lr", type=float, default=2e-3, help="stage-0 learning rate (a model from scratch)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="benchmarks/flea_stage0.json")
    args = parser.parse_args(argv)
    if not (NEMO4 / "metadata.csv").is_file():
        print(f"nEMO not found at {NEMO4}", file=sys.stderr)
        return 1
    results = {"settings": vars(args), **run(args)}
    atomic_write_json(args.output, results)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
