"""Publish the folds of a finished cross-validation run to the Hugging Face Hub.

`push_run` turns a run directory written by `train.py` into Hub repositories: by default one repository per fold
(`ORG/NAME-fold<k>`), or with `revision_per_fold=True` one repository `ORG/NAME` with a branch `fold<k>` per fold
and an overview card on `main`. Each fold gets its stage-2 checkpoint (safetensors weights, `config.json` with
`auto_map`, the remote-code files, `preprocessor_config.json`), a model card rendered from `model_cards/`, the
confusion matrix image(s) and the run's `results.json`.

Everything that can be checked locally (the token, the run directory, the folds, the checkpoints, the repo id) is
checked before the first request. Pushes are idempotent: the remote tree is compared with the local files (git
sha1 for regular files, sha256 for LFS files) and only new or changed files are committed; LFS blobs the server
already holds are not re-sent, so a push interrupted half way completes on the next run.

This module needs neither torch nor transformers.
"""

import hashlib
import io
import logging
import os
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from huggingface_hub import CommitOperationAdd, EvalResult, HfApi, ModelCardData, RepoFile, get_token
from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import validate_repo_id
from huggingface_hub.utils.sha import git_hash

from .io_utils import read_json


logger = logging.getLogger(__name__)

MODEL_CARDS = Path(__file__).resolve().parents[1] / "model_cards"
FOLD_TEMPLATE = MODEL_CARDS / "template.md"
OVERVIEW_TEMPLATE = MODEL_CARDS / "overview.md"

# Files of a checkpoint folder that belong on the Hub (trainer state, optimizer and RNG files stay local).
CHECKPOINT_PATTERNS = ("config.json", "preprocessor_config.json", "*.safetensors", "model.safetensors.index.json", "*.py")
RUN_FILES = ("results.json",)
RUN_IMAGES = {"confusion_matrix.png": "confusion_matrix.png", "tsne.png": "tsne.png"}

PAPER = {
    "title": "Frame and Utterance Emotional Alignment for Speech Emotion Recognition",
    "authors": "Byun, Seounghoon and Lee, Seok-Pil",
    "journal": "Future Internet",
    "year": "2025",
    "volume": "17",
    "number": "11",
    "pages": "509",
    "doi": "10.3390/fi17110509",
}

# What the card says about each corpus. `hub_id`: the dataset on the Hub, where there is one.
CORPORA = {
    "polish3": {
        "name": "Emotions in Polish speech recordings (polish3: anger/fear/neutral, 5 male speakers)",
        "hub_id": None,
        "license": "cc-by-4.0",
        "language": "pl",
        "terms": "Creative Commons Attribution 4.0 (CC BY 4.0). Attribution: Mięsikowska, M., & Świsulski, D. (2020). "
        "Emotions in Polish speech recordings [dataset]. Gdańsk University of Technology. "
        "https://doi.org/10.34808/h46c-hb44",
    },
    "nemo4": {
        "name": "nEMO, Polish emotional speech (4-class subset: angry/happy/neutral/sad, 9 speakers)",
        "hub_id": "amu-cai/nEMO",
        "license": "cc-by-nc-sa-4.0",
        "language": "pl",
        "terms": "Creative Commons Attribution-NonCommercial-ShareAlike 4.0 (CC BY-NC-SA 4.0): the weights inherit the "
        "non-commercial, share-alike terms. Christop, I. (2024). nEMO: Dataset of Emotional Speech in Polish. "
        "LREC-COLING 2024.",
    },
    "iemocap": {
        "name": "IEMOCAP (4 classes: neutral, happy+excited, sad, angry; leave-one-session-out)",
        "hub_id": None,
        "license": "other",
        "language": "en",
        "terms": "IEMOCAP is distributed by USC SAIL under its own license agreement; it is not redistributed here. "
        "Check that agreement before using these weights. Busso et al. (2008), IEMOCAP: Interactive emotional "
        "dyadic motion capture database, Language Resources and Evaluation 42, 335–359.",
    },
    "cremad": {
        "name": "CREMA-D (6 emotions, 91 actors)",
        "hub_id": None,
        "license": "odbl",
        "language": "en",
        "terms": "CREMA-D is released under the Open Database License (ODbL) with the Database Contents License. "
        "Cao et al. (2014), CREMA-D: Crowd-sourced emotional multimodal actors dataset, IEEE TAC 5(4).",
    },
    "ravdess": {
        "name": "RAVDESS speech (8 emotions, 24 actors)",
        "hub_id": None,
        "license": "cc-by-nc-sa-4.0",
        "language": "en",
        "terms": "RAVDESS is released under CC BY-NC-SA 4.0. Livingstone & Russo (2018), PLoS ONE 13(5): e0196391.",
    },
}


class PushError(ValueError):
    """An input of `push_run` (token, run directory, fold, repo id) that cannot be published; raised before any upload."""


# ----------------------------------------------------------------------------------------------------------------
# The run directory
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class Fold:
    """One finished fold of a run: its stage-2 checkpoint and its entry of `results.json`."""

    name: str  # "1", "2", ...
    checkpoint: Path
    results: dict
    split: dict | None = None
    confusion_matrix_image: Path | None = None

    @property
    def label(self) -> str:
        return f"fold{self.name}"


@dataclass
class Run:
    """A finished cross-validation run written by `train.py` (see `load_run`)."""

    path: Path
    results: dict
    config: dict
    folds: dict[str, Fold] = field(default_factory=dict)

    @property
    def all_fold_names(self) -> list[str]:
        return sorted(self.results["folds"], key=_fold_sort_key)

    @property
    def num_folds(self) -> int:
        """Folds of the cross-validation (train.py records it; a run may have evaluated only some)."""
        return int(self.results.get("num_folds") or len(self.results["folds"]))

    @property
    def percent_scale(self) -> float:
        """100 when `results.json` stores UA/WA as fractions (train.py: `metric_scale: fraction`), 1 for percents."""
        scale = self.results.get("metric_scale")
        if scale in ("fraction", "percent"):
            return 100.0 if scale == "fraction" else 1.0
        entries = [self.results.get("mean") or {}]
        for fold in self.results["folds"].values():
            entries += [fold.get("validation") or {}, fold.get("test") or {}]
        values = [entry.get(metric) for entry in entries for metric in ("ua", "wa")]
        values = [v for v in values if isinstance(v, (int, float))]
        return 1.0 if any(v > 1.0 for v in values) else 100.0

    def percent(self, value) -> float | None:
        return None if value is None else round(float(value) * self.percent_scale, 2)

    def split(self, name: str) -> dict | None:
        """The fold's `split.json` (any fold of the run, published or not), or None."""
        path = self.path / f"fold{name}" / "split.json"
        return read_json(path) if path.is_file() else None

    @property
    def corpus(self) -> str:
        """The corpus's short name: the loader for the known corpora (iemocap, crema_d, ravdess), the Hub id for
        `loader: hub`, else the name of the corpus folder (`data/polish3` → polish3)."""
        data = self.config.get("data") or {}
        loader, root = data.get("loader"), data.get("root")
        if loader in ("iemocap", "crema_d", "ravdess") or not root:
            return loader or "unknown"
        return str(root) if loader == "hub" else Path(str(root).rstrip("/")).name

    @property
    def corpus_info(self) -> dict:
        key = re.sub(r"[^a-z0-9]", "", self.corpus.split("/")[-1].lower())
        info = CORPORA.get(key, {"name": self.corpus, "hub_id": None, "license": None, "terms": ""})
        if (self.config.get("data") or {}).get("loader") == "hub":
            info = {**info, "hub_id": self.corpus}
        return info


def _fold_sort_key(name: str):
    return (0, int(name)) if str(name).isdigit() else (1, str(name))


def normalize_fold(name) -> str:
    """`1`, `"1"`, `"fold1"` → `"1"`."""
    return str(name).strip().removeprefix("fold")


def load_run(run_dir: str | os.PathLike, folds=None) -> Run:
    """Read and check a finished run directory; `folds` (names like `1` or `"fold1"`) defaults to every fold.

    Raises:
        PushError: the directory, `results.json`, a requested fold, its `metrics.json` or its checkpoint is
            missing or incomplete. The message names the offending path or fold.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise PushError(f"Run directory {path} does not exist (--run-dir).")
    results_path = path / "results.json"
    if not results_path.is_file():
        raise PushError(
            f"{results_path} not found: the run in {path} has not finished (train.py writes results.json after the "
            "last fold). Finish or resume the run first."
        )
    try:
        results = read_json(results_path)
    except ValueError as error:
        raise PushError(f"{results_path} is not valid JSON ({error}).") from error
    if not isinstance(results.get("folds"), dict) or not results["folds"]:
        raise PushError(f"{results_path} has no 'folds' entry: it was not written by train.py.")
    results["folds"] = {normalize_fold(k): v for k, v in results["folds"].items()}
    run = Run(path=path, results=results, config=_load_config(path, results))

    available = run.all_fold_names
    requested = available if folds is None else [normalize_fold(f) for f in folds]
    unknown = [f for f in requested if f not in results["folds"]]
    if unknown:
        untrained = [f for f in unknown if f.isdigit() and 1 <= int(f) <= run.num_folds]
        hint = f"; run `train.py --folds {','.join(untrained)}` with the same config first" if untrained else ""
        raise PushError(
            f"Fold(s) {', '.join(unknown)} not in {results_path} (evaluated: {', '.join(available)} of "
            f"{run.num_folds}) (--folds){hint}."
        )
    for name in dict.fromkeys(requested):
        run.folds[name] = _load_fold(run, name)
    return run


def _load_config(path: Path, results: dict) -> dict:
    config_path = path / "config.yaml"
    if config_path.is_file():
        with open(config_path) as f:
            return yaml.safe_load(f) or {}
    logger.warning(f"{config_path} not found: the card's training section uses results.json's 'config'.")
    return results.get("config") or {}


def _load_fold(run: Run, name: str) -> Fold:
    entry = run.results["folds"][name]
    fold_dir = run.path / f"fold{name}"
    if not (fold_dir / "metrics.json").is_file():
        raise PushError(f"Fold {name} is unfinished: {fold_dir / 'metrics.json'} not found.")
    checkpoint = run.path / entry.get("checkpoint", f"fold{name}/stage2/best")
    _check_checkpoint(checkpoint, name)
    image = fold_dir / "confusion_matrix.png"
    return Fold(name, checkpoint, entry, run.split(name), image if image.is_file() else None)


def _check_checkpoint(checkpoint: Path, fold: str) -> None:
    if not checkpoint.is_dir():
        raise PushError(f"Fold {fold}: checkpoint {checkpoint} not found.")
    missing = [n for n in ("config.json", "preprocessor_config.json") if not (checkpoint / n).is_file()]
    if not list(checkpoint.glob("*.safetensors")):
        missing.append("model.safetensors")
    if missing:
        raise PushError(f"Fold {fold}: checkpoint {checkpoint} is incomplete, missing {', '.join(missing)}.")
    config = read_json(checkpoint / "config.json")
    auto_map = config.get("auto_map") or {}
    if "AutoModelForAudioClassification" not in auto_map:
        raise PushError(
            f"Fold {fold}: {checkpoint / 'config.json'} has no auto_map for AutoModelForAudioClassification, so Hub "
            "users could not load it with trust_remote_code=True (save it after `import modeling`)."
        )
    modules = {ref.split(".")[0] for ref in auto_map.values() if isinstance(ref, str)}
    absent = sorted(f"{m}.py" for m in modules if not (checkpoint / f"{m}.py").is_file())
    if absent:
        raise PushError(f"Fold {fold}: remote-code file(s) {', '.join(absent)} missing from {checkpoint}.")


# ----------------------------------------------------------------------------------------------------------------
# Token and repo ids
# ----------------------------------------------------------------------------------------------------------------
def resolve_token(token: str | None = None) -> str:
    """The token to push with: `token`, else `HF_TOKEN`, else the one stored by `hf auth login`."""
    token = token or get_token()
    if not token:
        raise PushError(
            "No Hugging Face token found: set HF_TOKEN or log in with `hf auth login` (`huggingface-cli login`) "
            "with a token that can write to the target organisation."
        )
    return token


def fold_repo_id(repo_id: str, fold: str) -> str:
    return f"{repo_id}-fold{fold}"


def check_repo_id(repo_id: str, run: Run, revision_per_fold: bool) -> None:
    if repo_id.count("/") != 1:
        raise PushError(f"--repo-id {repo_id!r} must be ORG/NAME (a user or organisation, then the model name).")
    targets = [repo_id] if revision_per_fold else [fold_repo_id(repo_id, f) for f in run.folds]
    for target in targets:
        try:
            validate_repo_id(target)
        except HFValidationError as error:
            raise PushError(f"--repo-id {repo_id!r} gives the invalid repository name {target!r}: {error}") from error
        if len(target.split("/")[1]) > 96:
            raise PushError(f"--repo-id {repo_id!r} gives {target!r}, longer than the Hub's 96 characters.")


# ----------------------------------------------------------------------------------------------------------------
# Model cards
# ----------------------------------------------------------------------------------------------------------------
def _fmt(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def results_table(run: Run, highlight: str | None = None) -> str:
    """Markdown: test UA/WA (%) per fold, then mean ± std; `highlight` (a fold name) in bold."""
    lines = ["| Fold | Test speakers | Validation UA | Test UA | Test WA |", "|---|---|---:|---:|---:|"]
    for name in run.all_fold_names:
        entry = run.results["folds"][name]
        cells = [
            f"fold{name}",
            ", ".join(_speakers(run, name).get("test", [])) or "–",
            _fmt(run.percent(entry.get("validation", {}).get("ua"))),
            _fmt(run.percent(entry.get("test", {}).get("ua"))),
            _fmt(run.percent(entry.get("test", {}).get("wa"))),
        ]
        if name == highlight:
            cells = [f"**{c}**" if c != "–" else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    mean, std = run.results.get("mean", {}), run.results.get("std", {})
    if mean:
        ua = f"{_fmt(run.percent(mean.get('ua')))} ± {_fmt(run.percent(std.get('ua')))}"
        wa = f"{_fmt(run.percent(mean.get('wa')))} ± {_fmt(run.percent(std.get('wa')))}"
        evaluated = len(run.all_fold_names)
        of = f"{evaluated} folds" if evaluated == run.num_folds else f"{evaluated} of {run.num_folds} folds"
        lines.append(f"| mean ± std ({of}) | | | {ua} | {wa} |")
    return "\n".join(lines)


SPLITS = ("train", "validation", "test")


def _speakers(run: Run, name: str) -> dict[str, list[str]]:
    """{"train": [...], "validation": [...], "test": [...]}: results.json's fold entry, else the fold's split.json."""
    speakers = dict(run.results["folds"][name].get("speakers") or {})
    split = run.split(name) or {}
    for split_name in SPLITS:
        if not speakers.get(split_name) and isinstance(split.get(split_name), dict):
            speakers[split_name] = split[split_name].get("speakers")
    return {k: [str(s) for s in v] for k, v in speakers.items() if isinstance(v, list) and v}


def describe_split(run: Run, name: str, split_name: str) -> str:
    """`m3, m4, m5 (sessions 1, 2; 270 utterances)` from results.json and split.json."""
    speakers = ", ".join(_speakers(run, name).get(split_name, [])) or "–"
    details = (run.split(name) or {}).get(split_name) or {}
    extra = []
    if details.get("sessions"):
        extra.append("session" + ("s " if len(details["sessions"]) > 1 else " ") + ", ".join(map(str, details["sessions"])))
    if details.get("num_examples"):
        extra.append(f"{details['num_examples']} utterances")
    return speakers + (f" ({'; '.join(extra)})" if extra else "")


def _labels(run: Run, fold: Fold) -> list[str]:
    labels = fold.results.get("labels") or run.results.get("labels")
    if labels:
        return list(labels)
    id2label = read_json(fold.checkpoint / "config.json").get("id2label", {})
    return [id2label[k] for k in sorted(id2label, key=int)]


def confusion_table(labels: list[str], matrix, recalls=None) -> str:
    """Markdown confusion matrix (rows: true label), with each class's recall when given."""
    if not matrix:
        return "_No confusion matrix in results.json._"
    recalls = recalls if recalls and len(recalls) == len(labels) else None
    header = "| true \\ predicted | " + " | ".join(labels) + (" | recall (%) |" if recalls else " |")
    lines = [header, "|---" * (len(labels) + 1 + bool(recalls)) + "|"]
    for i, (label, row) in enumerate(zip(labels, matrix)):
        recall = f" | {_fmt(100 * recalls[i] if max(recalls) <= 1 else recalls[i])}" if recalls else ""
        lines.append(f"| **{label}** | " + " | ".join(str(v) for v in row) + recall + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, (dict, list)):
        value = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return f"`{value}`"


def _public(value):
    """An absolute local path (a corpus or checkpoint folder on the training machine) → `…/<folder name>`."""
    return f"…/{Path(value).name}" if isinstance(value, str) and os.path.isabs(value) else value


def config_table(config: dict) -> str:
    """Markdown: stage-1 and stage-2 settings side by side, then the data, model and training sections."""
    stage1, stage2 = config.get("stage1") or {}, config.get("stage2") or {}
    keys = list(dict.fromkeys([*stage1, *stage2]))
    if not keys:
        return "_The run's config.yaml has no stage1/stage2 sections._"
    lines = ["| Setting | Stage 1 | Stage 2 |", "|---|---|---|"]
    lines += [f"| {key} | {_cell(stage1.get(key, '–'))} | {_cell(stage2.get(key, '–'))} |" for key in keys]
    others = [(f"{section}.{key}", _public(value)) for section in ("data", "model", "training")
              for key, value in (config.get(section) or {}).items() if value not in (None, {}, [])]
    if "seed" in config:
        others.append(("seed", config["seed"]))
    if others:
        lines += ["", "| Setting | Value |", "|---|---|"] + [f"| {key} | {_cell(value)} |" for key, value in others]
    return "\n".join(lines)


def backbone(run: Run) -> tuple[str | None, str]:
    """(the pre-trained backbone's Hub id or None, how the card names it) from the config's `model` section."""
    model = run.config.get("model") or {}
    name = model.get("name_or_path")
    if isinstance(name, str) and name:
        if re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not Path(name).exists():
            return name, f"wav2vec 2.0 fine-tuned from `{name}`"
        return None, f"a wav2vec 2.0 backbone fine-tuned from a local checkpoint (`{Path(name).name}`)"
    return None, "a randomly initialised wav2vec 2.0 backbone"


def _base_model(run: Run) -> str | None:
    return backbone(run)[0]


def _architecture(fold: Fold) -> dict:
    config = read_json(fold.checkpoint / "config.json")
    return {
        "hidden_size": config.get("hidden_size"),
        "layers": config.get("num_hidden_layers"),
        "pooling": config.get("pooling"),
        "eal_weight": config.get("eal_weight"),
        "fual_weight": config.get("fual_weight"),
        "eal_margin": config.get("eal_margin"),
        "is_demo": (config.get("hidden_size") or 0) < 768 or (config.get("num_hidden_layers") or 0) < 12,
    }


POOLING_NAMES = {
    "mean": "mean pooling",
    "attentive": "attentive pooling",
    "self_attention": "self-attention pooling (a 1-layer encoder over the frames, then attentive pooling)",
    "cls_attention": "CLS self-attention pooling",
}


def method_summary(arch: dict) -> tuple[str, str]:
    """(what the head is, the training loss) from the checkpoint's config: the paper's method or a Table 3 baseline."""
    pooling = POOLING_NAMES.get(arch["pooling"], f"`{arch['pooling']}` pooling")
    if arch["pooling"] != "cls_attention":
        return f"**{pooling}**, trained with cross-entropy", "cross-entropy"
    terms = []
    if arch["eal_weight"]:
        terms.append(f"λ_EAL · EAL (margin m = {arch['eal_margin']}, λ_EAL = {arch['eal_weight']})")
    if arch["fual_weight"]:
        terms.append(f"λ_FUAL · FUAL (λ_FUAL = {arch['fual_weight']})")
    names = {2: "the Emotional Attention Loss (EAL) and the Frame-to-Utterance Alignment Loss (FUAL)",
             0: "no auxiliary loss (the Table 3 CLS-pooling baseline)"}
    losses = names.get(len(terms), "the Emotional Attention Loss (EAL)" if arch["eal_weight"] else "the Frame-to-Utterance Alignment Loss (FUAL)")
    return f"**{pooling}** and {losses} of Byun & Lee (2025)", " + ".join(["cross-entropy", *terms])


def card_data(run: Run, folds: list[Fold], model_name: str, license: str | None = None) -> ModelCardData:
    """The YAML metadata: library, pipeline, license, datasets, base model, tags and a model-index of test UA/WA."""
    corpus, corpus_key = run.corpus_info, run.corpus or "unknown"
    eval_results = []
    for fold in folds:
        test = fold.results.get("test", {})
        test_speakers = _speakers(run, fold.name).get("test")
        common = dict(
            task_type="audio-classification",
            task_name="Speech emotion recognition",
            dataset_type=corpus.get("hub_id") or corpus_key,
            dataset_name=f"{corpus_key} ({fold.label}, speaker-independent test split)",
            dataset_config=fold.label,
            dataset_split="test",
            dataset_args={"test_speakers": test_speakers} if test_speakers else None,
        )
        eval_results += [
            EvalResult(metric_type="recall", metric_name="UA (unweighted accuracy, %)", metric_args={"average": "macro"},
                       metric_value=run.percent(test.get("ua")), **common),
            EvalResult(metric_type="accuracy", metric_name="WA (weighted accuracy, %)",
                       metric_value=run.percent(test.get("wa")), **common),
        ]
    base_model = _base_model(run)
    tags = ["audio-classification", "speech-emotion-recognition", "wav2vec2", "frame-utterance-alignment", "custom_code"]
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="audio-classification",
        license=license or corpus.get("license") or "other",
        datasets=[corpus.get("hub_id") or corpus_key],
        language=corpus.get("language"),
        base_model=base_model,
        tags=tags + [corpus_key],
        metrics=["recall", "accuracy"],
        model_name=model_name,
        eval_results=eval_results,
    )


def bibtex() -> str:
    p = PAPER
    return (
        "@article{byun2025frame,\n"
        f"  title   = {{{p['title']}}},\n  author  = {{{p['authors']}}},\n  journal = {{{p['journal']}}},\n"
        f"  year    = {{{p['year']}}},\n  volume  = {{{p['volume']}}},\n  number  = {{{p['number']}}},\n"
        f"  pages   = {{{p['pages']}}},\n  doi     = {{{p['doi']}}},\n  url     = {{https://doi.org/{p['doi']}}}\n}}"
    )


def _limitations(run: Run, fold: Fold) -> str:
    arch = _architecture(fold)
    random_init = bool((run.config.get("model") or {}).get("random_init"))
    notes = []
    if random_init or arch["is_demo"]:
        notes.append(
            f"**Demo checkpoint.** The backbone has {arch['layers']} transformer layers of width {arch['hidden_size']}"
            + (" and was initialised randomly (no self-supervised pre-training)" if random_init else "")
            + ": it shows the training, publishing and loading path, not the method's accuracy. Train from "
            "`facebook/wav2vec2-base` (the paper's setting) for meaningful scores."
        )
    notes.append(
        f"Trained and evaluated on a single corpus ({run.corpus_info['name']}); accuracy on other languages, "
        "speakers, microphones, noise or spontaneous speech is unknown and usually much lower. "
        "Emotion labels are acted/annotated categories, not a person's actual feelings."
    )
    notes.append(
        "Do not use the model to make decisions about people (hiring, policing, health, credit) or to infer emotions "
        "without consent."
    )
    notes.append(f"Training data license: {run.corpus_info.get('terms') or 'see the corpus license.'}")
    return "\n".join(f"- {note}" for note in notes)


def stage1_summary(run: Run, fold: Fold) -> str:
    """A sentence comparing with the fold's stage-1 model (train.py scores both stages), or ""."""
    stage1 = (fold.results.get("stage1") or {}).get("test") or {}
    if stage1.get("ua") is None:
        return ""
    return (
        f" The stage-1 model of the same fold (attentive pooling, cross-entropy only) scores UA "
        f"{_fmt(run.percent(stage1['ua']))} % and WA {_fmt(run.percent(stage1.get('wa')))} % on the same speakers."
    )


def _usage(repo_id: str, revision: str | None) -> str:
    revision_arg = f', revision="{revision}"' if revision else ""
    return (
        "```python\n"
        "import soundfile as sf\n"
        "from transformers import pipeline\n\n"
        f'classifier = pipeline("audio-classification", model="{repo_id}"{revision_arg}, trust_remote_code=True)\n'
        'waveform, sampling_rate = sf.read("speech.wav", dtype="float32")  # 16 kHz mono\n'
        'print(classifier({"raw": waveform, "sampling_rate": sampling_rate}, top_k=None))\n'
        "```\n\n"
        "A file path (`classifier(\"speech.wav\")`) works too where FFmpeg is installed. `trust_remote_code=True` "
        "runs `modeling_frame_aligned.py` and `configuration_frame_aligned.py` from this repository: read them first."
    )


def _render(template: Path, **values) -> str:
    return string.Template(template.read_text()).substitute(values)


def _with_metadata(data: ModelCardData, body: str) -> str:
    return f"---\n{data.to_yaml()}\n---\n\n{body.lstrip()}"


def render_fold_card(
    run: Run, fold: Fold, repo_id: str, revision: str | None = None, license: str | None = None, template=FOLD_TEMPLATE
) -> str:
    """The README.md of one fold's repository (or branch): YAML metadata + the body from `model_cards/template.md`."""
    arch = _architecture(fold)
    labels = _labels(run, fold)
    test = fold.results.get("test", {})
    if fold.confusion_matrix_image:
        image = "![Confusion matrix of this fold's test speakers](fold_confusion_matrix.png)"
    else:
        image = "All folds' test speakers together:\n\n![Confusion matrix of all folds' test speakers](confusion_matrix.png)"
    body = _render(
        Path(template),
        repo_id=repo_id,
        fold=fold.name,
        num_folds=run.num_folds,
        corpus=run.corpus_info["name"],
        labels=", ".join(f"`{label}`" for label in labels),
        train_speakers=describe_split(run, fold.name, "train"),
        validation_speakers=describe_split(run, fold.name, "validation"),
        test_speakers=describe_split(run, fold.name, "test"),
        test_ua=_fmt(run.percent(test.get("ua"))),
        test_wa=_fmt(run.percent(test.get("wa"))),
        stage1=stage1_summary(run, fold),
        backbone=backbone(run)[1],
        hidden_size=arch["hidden_size"],
        layers=arch["layers"],
        pooling=arch["pooling"],
        method=method_summary(arch)[0],
        loss=method_summary(arch)[1],
        usage=_usage(repo_id, revision),
        config_table=config_table(run.config),
        results_table=results_table(run, highlight=fold.name),
        confusion_table=confusion_table(labels, test.get("confusion_matrix"), test.get("per_class_recall")),
        confusion_image=image,
        limitations=_limitations(run, fold),
        bibtex=bibtex(),
        doi=PAPER["doi"],
    )
    name = repo_id.split("/")[-1] + (f"-{revision}" if revision else "")
    return _with_metadata(card_data(run, [fold], name, license), body)


def render_overview_card(run: Run, repo_id: str, license: str | None = None, template=OVERVIEW_TEMPLATE) -> str:
    """The README.md of `main` with `revision_per_fold`: what each branch holds and the run's results."""
    folds = [run.folds[name] for name in run.folds]
    first = folds[0]
    branches = "\n".join(
        f"- `{fold.label}`: test speakers {', '.join(_speakers(run, fold.name).get('test', [])) or '–'}, "
        f"test UA {_fmt(run.percent(fold.results.get('test', {}).get('ua')))} %, "
        f"WA {_fmt(run.percent(fold.results.get('test', {}).get('wa')))} %"
        for fold in folds
    )
    body = _render(
        Path(template),
        repo_id=repo_id,
        num_folds=run.num_folds,
        corpus=run.corpus_info["name"],
        labels=", ".join(f"`{label}`" for label in _labels(run, first)),
        branches=branches,
        first_fold=first.label,
        usage=_usage(repo_id, first.label),
        fold_list=", ".join(f'"{fold.label}"' for fold in folds),
        config_table=config_table(run.config),
        results_table=results_table(run),
        limitations=_limitations(run, first),
        bibtex=bibtex(),
        doi=PAPER["doi"],
    )
    return _with_metadata(card_data(run, folds, repo_id.split("/")[-1], license), body)


# ----------------------------------------------------------------------------------------------------------------
# What goes where
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class PushTarget:
    """One commit: `files` (path in repo → local path or bytes) to `repo_id` at branch `revision`."""

    repo_id: str
    revision: str
    files: dict[str, Path | bytes]
    description: str


@dataclass
class PushResult:
    repo_id: str
    revision: str
    uploaded: list[str]
    unchanged: list[str]
    commit_url: str | None = None

    @property
    def url(self) -> str:
        return self.repo_id if self.revision == "main" else f"{self.repo_id}@{self.revision}"


def _checkpoint_files(checkpoint: Path) -> dict[str, Path]:
    files = {}
    for pattern in CHECKPOINT_PATTERNS:
        for path in sorted(checkpoint.glob(pattern)):
            if path.is_file():
                files[path.name] = path
    return files


def _run_files(run: Run) -> dict[str, Path]:
    files = {name: run.path / name for name in RUN_FILES if (run.path / name).is_file()}
    files.update({repo_name: run.path / name for name, repo_name in RUN_IMAGES.items() if (run.path / name).is_file()})
    return files


def fold_files(run: Run, fold: Fold, card: str) -> dict[str, Path | bytes]:
    from .timeline import hub_pipeline_files  # imports transformers: only when a push is planned

    files: dict[str, Path | bytes] = {**_checkpoint_files(fold.checkpoint), **_run_files(run)}
    # the timeline pipeline's code, and config.json with `custom_pipelines`: pipeline(model=REPO) works from the Hub
    files.update(hub_pipeline_files(fold.checkpoint))
    if fold.confusion_matrix_image:
        files["fold_confusion_matrix.png"] = fold.confusion_matrix_image
    if fold.split is not None:
        files["split.json"] = run.path / fold.label / "split.json"
    files["README.md"] = card.encode()
    return files


def plan_push(run: Run, repo_id: str, *, revision_per_fold: bool = False, license: str | None = None) -> list[PushTarget]:
    """The commits a push makes, in order (the overview of `main` first with `revision_per_fold`)."""
    targets = []
    if revision_per_fold:
        overview = render_overview_card(run, repo_id, license)
        files = {**_run_files(run), "README.md": overview.encode()}
        targets.append(PushTarget(repo_id, "main", files, f"overview of {len(run.folds)} fold branch(es)"))
    for name, fold in run.folds.items():
        target_repo = repo_id if revision_per_fold else fold_repo_id(repo_id, name)
        revision = fold.label if revision_per_fold else None
        card = render_fold_card(run, fold, target_repo, revision, license)
        targets.append(PushTarget(target_repo, revision or "main", fold_files(run, fold, card), f"fold {name}"))
    return targets


# ----------------------------------------------------------------------------------------------------------------
# Uploading
# ----------------------------------------------------------------------------------------------------------------
def _read(source: Path | bytes) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def _sha256(source: Path | bytes) -> str:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    digest = hashlib.sha256()
    with open(source, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def remote_files(api: HfApi, repo_id: str, revision: str) -> dict:
    """{path: RepoFile} at `revision`; empty when the repository or the branch does not exist yet."""
    try:
        entries = api.list_repo_tree(repo_id, revision=revision, recursive=True)
        return {entry.path: entry for entry in entries if isinstance(entry, RepoFile)}
    except (RepositoryNotFoundError, RevisionNotFoundError):
        return {}


def is_unchanged(source: Path | bytes, remote) -> bool:
    """Same content as the remote file: sha256 for LFS files, git blob sha1 for regular ones."""
    if remote is None:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == _sha256(source)
    return remote.blob_id == git_hash(_read(source))


def push_target(api: HfApi, target: PushTarget, *, private: bool = False, commit_message: str | None = None) -> PushResult:
    """Create the repository/branch if needed and commit the files of `target` that differ from the remote ones."""
    api.create_repo(target.repo_id, private=private, exist_ok=True, repo_type="model")
    if target.revision != "main":
        api.create_branch(target.repo_id, branch=target.revision, exist_ok=True)
    remote = remote_files(api, target.repo_id, target.revision)
    changed = [path for path, source in target.files.items() if not is_unchanged(source, remote.get(path))]
    unchanged = [path for path in target.files if path not in changed]
    if not changed:
        logger.info(f"{target.repo_id}@{target.revision}: up to date, nothing to upload.")
        return PushResult(target.repo_id, target.revision, [], unchanged)
    logger.info(f"{target.repo_id}@{target.revision}: committing {len(changed)} changed file(s), {len(unchanged)} unchanged.")
    operations = [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(source) if isinstance(source, Path) else source)
        for path, source in target.files.items()
        if path in changed
    ]
    info = api.create_commit(
        target.repo_id,
        operations,
        commit_message=commit_message or f"Upload {target.description}",
        commit_description="Changed files: " + ", ".join(changed),
        revision=target.revision,
    )
    return PushResult(target.repo_id, target.revision, changed, unchanged, info.commit_url)


def push_run(
    run_dir: str | os.PathLike,
    repo_id: str,
    folds=None,
    *,
    private: bool = False,
    revision_per_fold: bool = False,
    dry_run: bool = False,
    license: str | None = None,
    token: str | None = None,
    endpoint: str | None = None,
    api: HfApi | None = None,
) -> list[PushTarget] | list[PushResult]:
    """Publish the folds of a finished run (see the module docstring).

    Args:
        run_dir: the run directory of `train.py`.
        repo_id: `ORG/NAME`; folds go to `ORG/NAME-fold<k>`, or to branches `fold<k>` of `ORG/NAME` with
            `revision_per_fold`.
        folds: fold names (`1` or `"fold1"`); default all.
        private: create the repositories private (existing repositories keep their visibility).
        dry_run: check everything and return the planned commits without a token or any request.
        license: the card's license; default the training corpus's.
        token, endpoint, api: Hub access (default: `resolve_token()` and `HF_ENDPOINT`).
    Returns:
        The planned `PushTarget`s with `dry_run`, else one `PushResult` per commit target.
    Raises:
        PushError: before any request, for a missing token, run directory, `results.json`, fold, checkpoint file or
            an invalid repo id.
    """
    run = load_run(run_dir, folds)
    check_repo_id(repo_id, run, revision_per_fold)
    targets = plan_push(run, repo_id, revision_per_fold=revision_per_fold, license=license)
    if dry_run:
        return targets
    token = resolve_token(token or (api.token if api is not None else None))
    api = api or HfApi(endpoint=endpoint, token=token)
    return [push_target(api, target, private=private) for target in targets]


def describe_plan(targets: list[PushTarget]) -> str:
    """Human-readable plan of a dry run."""
    out = io.StringIO()
    for target in targets:
        out.write(f"{target.repo_id} @ {target.revision} ({target.description}):\n")
        for path, source in target.files.items():
            size = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
            origin = "rendered" if isinstance(source, bytes) else str(source)
            out.write(f"  {path:<32} {size:>12,} B  {origin}\n")
    return out.getvalue()


__all__ = [
    "PushError",
    "PushResult",
    "PushTarget",
    "Run",
    "describe_plan",
    "load_run",
    "plan_push",
    "push_run",
    "render_fold_card",
    "render_overview_card",
    "resolve_token",
]
