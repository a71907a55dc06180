"""The layout of a run directory (`train.py --output-dir`): the one module that names its files and folders.

```
RUN/
  config.yaml                  the resolved config, written first; a resumed run must have the same one
  run.lock                     held while results are aggregated or the initial backbone is made (pid, host)
  skipped_audio.json           with --skip-bad-audio: the rows left out, and why
  pretrained/                  the randomly initialised backbone stage 1 starts from (model.name_or_path: null)
  fold<k>/                     k = 1, 2, ... (1-based, as in --folds)
    train.lock                 held by the process training this fold (pid, host); stale ones are taken over
    split.json                 speakers, sessions, size and class counts of the fold's train/validation/test
    stage0/                    with stage0.enabled (FLEA, docs/flea.md): continued pre-training of the backbone
      pseudo_labels/             clusters.safetensors (K-means centroids), pseudo_labels.npz (every training
                                 frame's cluster id), pseudo_labels.json (layer, clusters, speakers), checksums.json
      checkpoint-<step>/         its Trainer checkpoints (backbone + projection)
      best/                      the continued-pre-trained backbone stage 1 starts from (its existence: done)
    stage1/  stage2/           Trainer output of each stage:
      checkpoint-<step>/         its checkpoints (resume from the newest complete one)
      best/                      the stage's best model on validation UA (its existence: the stage is done)
        adapter/                   with model.lora: the peft adapter (and head) best/ is the merge of
      prefix_cache/<split>/      stage 2 with prefix_cache_on_disk: the frozen prefix's cached output
    test_predictions.npz       stage-2 test embeddings, labels and predictions (the t-SNE figure)
    predictions_validation.csv  predictions_test.csv   the stage-2 best model on every utterance of the split:
                               file, speaker, label, predicted, prob_<class> (modeling.metrics.predictions)
    confusion_matrix.png       optional (not written by train.py): published with the fold when present
    metrics.json               the fold's scores, written last: its existence means the fold is done
  results.json  results.md     every finished fold, mean ± std over folds
  confusion_matrix.png  tsne.png
  reliability.png              reliability diagram of all folds' test predictions, before / after calibration
```

Imports nothing but the standard library: the publishing wing reads runs through it without torch.
"""

import os
from pathlib import Path


STAGES = ("stage1", "stage2")
STAGE0 = "stage0"  # the optional continued pre-training before stage 1 (not a stage with a classification head)
# The files of `fold<k>/stage0/pseudo_labels/` (stage 0: the K-means model, every frame's id, their summary).
CLUSTERS_FILE = "clusters.safetensors"
PSEUDO_LABELS_FILE = "pseudo_labels.npz"
PSEUDO_LABELS_SUMMARY = "pseudo_labels.json"
# Trainer checkpoints are `<CHECKPOINT_PREFIX>-<global step>` (transformers' `PREFIX_CHECKPOINT_DIR`).
CHECKPOINT_PREFIX = "checkpoint"
BEST = "best"
# With `model.lora`: the peft adapter files inside a stage's best/ (which holds the merged model).
ADAPTER = "adapter"
# File names at the top of a run, for links relative to it (results.md, model cards, Hub repos).
RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"
CONFUSION_MATRIX = "confusion_matrix.png"  # also a fold's own, optional, fold<k>/confusion_matrix.png
TSNE = "tsne.png"
RELIABILITY = "reliability.png"


def checkpoint_dir(stage_dir: str | os.PathLike, step: int) -> Path:
    """`stage_dir/checkpoint-<step>`."""
    return Path(stage_dir) / f"{CHECKPOINT_PREFIX}-{step}"


def checkpoint_dirs(stage_dir: str | os.PathLike) -> list[Path]:
    """The `checkpoint-<step>` folders of a stage, by increasing step (complete or not)."""
    stage_dir = Path(stage_dir)
    if not stage_dir.is_dir():
        return []
    found = (p for p in stage_dir.glob(f"{CHECKPOINT_PREFIX}-*") if p.is_dir() and _step(p).isdigit())
    return sorted(found, key=lambda p: int(_step(p)))


def _step(path: Path) -> str:
    return path.name.split("-")[-1]


class _InRun:
    """A file or folder at the top of the run: `run.<attribute>` is `run.path / name`."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, run, owner=None):
        return self if run is None else run.path / self.name


class RunDir:
    """Paths of one run directory (see the module docstring). Nothing is created or read here.

    Folds are numbered as in `--folds` (`1`, `"1"`); stages are `"stage1"` and `"stage2"` (and `STAGE0`). A `RunDir`
    is an `os.PathLike`, so `Path(run)` and `open`-style functions accept it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # The run ---------------------------------------------------------------------------------------------------
    config = _InRun("config.yaml")
    skipped_audio = _InRun("skipped_audio.json")
    pretrained = _InRun("pretrained")
    lock = _InRun("run.lock")
    results_json = _InRun(RESULTS_JSON)
    results_md = _InRun(RESULTS_MD)
    confusion_matrix = _InRun(CONFUSION_MATRIX)
    tsne = _InRun(TSNE)
    reliability = _InRun(RELIABILITY)

    # One fold -------------------------------------------------------------------------------------------------
    def fold(self, k: int | str) -> Path:
        return self.path / f"fold{k}"

    def fold_lock(self, k: int | str) -> Path:
        return self.fold(k) / "train.lock"

    def split(self, k: int | str) -> Path:
        return self.fold(k) / "split.json"

    def metrics(self, k: int | str) -> Path:
        return self.fold(k) / "metrics.json"

    def is_finished(self, k: int | str) -> bool:
        """Whether fold k is done (its `metrics.json` is written last)."""
        return self.metrics(k).is_file()

    def test_predictions(self, k: int | str) -> Path:
        return self.fold(k) / "test_predictions.npz"

    def predictions(self, k: int | str, split: str) -> Path:
        """`fold<k>/predictions_<split>.csv` (split: validation or test)."""
        return self.fold(k) / f"predictions_{split}.csv"

    def fold_confusion_matrix(self, k: int | str) -> Path:
        return self.fold(k) / CONFUSION_MATRIX

    # One stage of a fold --------------------------------------------------------------------------------------
    def stage(self, k: int | str, stage: str) -> Path:
        return self.fold(k) / stage

    def best(self, k: int | str, stage: str = "stage2") -> Path:
        return self.stage(k, stage) / BEST

    def adapter(self, k: int | str, stage: str = "stage2") -> Path:
        """`best/adapter`: a LoRA stage's adapter files (`model.lora`); best/ itself holds the merged model."""
        return self.best(k, stage) / ADAPTER

    def checkpoint(self, k: int | str, stage: str, step: int) -> Path:
        return checkpoint_dir(self.stage(k, stage), step)

    def checkpoints(self, k: int | str, stage: str) -> list[Path]:
        return checkpoint_dirs(self.stage(k, stage))

    def stage_dirs(self) -> list[Path]:
        """Every `fold<k>/stage<s>` folder that exists (stage 0 included), folds in number order."""
        folds = [p for p in self.path.glob("fold*") if p.is_dir() and p.name[len("fold") :].isdigit()]
        folds.sort(key=lambda p: int(p.name[len("fold") :]))
        return [fold / stage for fold in folds for stage in (STAGE0, *STAGES) if (fold / stage).is_dir()]

    def pseudo_labels(self, k: int | str) -> Path:
        """`fold<k>/stage0/pseudo_labels`: stage 0's K-means model and its frames' cluster ids."""
        return self.stage(k, STAGE0) / "pseudo_labels"

    def prefix_cache(self, k: int | str, stage: str, split: str) -> Path:
        return self.stage(k, stage) / "prefix_cache" / split

    # -----------------------------------------------------------------------------------------------------------
    def relative(self, path: str | os.PathLike) -> str:
        """`path` relative to the run directory, as `metrics.json` records checkpoints (`fold1/stage2/best`)."""
        return str(Path(path).relative_to(self.path))


__all__ = [
    "ADAPTER",
    "BEST",
    "CHECKPOINT_PREFIX",
    "CLUSTERS_FILE",
    "CONFUSION_MATRIX",
    "PSEUDO_LABELS_FILE",
    "PSEUDO_LABELS_SUMMARY",
    "RESULTS_JSON",
    "RESULTS_MD",
    "STAGE0",
    "STAGES",
    "TSNE",
    "RunDir",
    "checkpoint_dir",
    "checkpoint_dirs",
]
