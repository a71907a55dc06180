"""Model cards for published folds: YAML metadata (with a `model-index` of the fold's test UA/WA) and a body
rendered from the templates in `model_cards/`: the method, the fold's speakers, both stages' settings, every
fold's results with mean ± std, limitations, the data license and the citation.

Reads a finished run through `modeling.publishing.run`; used by `modeling.publishing.hub` (one card per fold, and
an overview card for `--revision-per-fold`).
"""

from __future__ import annotations

import os
import re
import string
from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCardData

from ..data import corpus_info
from ..evaluation.breakdowns import shared_speakers, short_breakdown_table, speaker_dependent_note
from ..rundir.atomic import read_json
from ..training.results import results_table
from ..training.selection import metric_title, stage_selection
from .run import FinishedFold, Run
from .space import space_link


# The templates' one source is the repository's top-level model_cards/; a wheel carries them as the package data
# modeling/publishing/model_cards/ (setup.py maps the folder), so a regular install publishes too.
_INSTALLED_CARDS, _CHECKOUT_CARDS = (
    Path(__file__).resolve().parent / "model_cards",
    Path(__file__).resolve().parents[2] / "model_cards",
)
MODEL_CARDS = _INSTALLED_CARDS if _INSTALLED_CARDS.is_dir() else _CHECKOUT_CARDS
FOLD_TEMPLATE = MODEL_CARDS / "template.md"
OVERVIEW_TEMPLATE = MODEL_CARDS / "overview.md"
FOLD_IMAGE = "fold_confusion_matrix.png"  # a fold's own confusion matrix in its Hub repository (see hub.fold_files)

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


def card_corpus_fields(run: Run) -> dict:
    """What the card says about the run's corpus (its facts from `modeling.data`, or its name alone for another)."""
    data = run.config.get("data") or {}
    facts = corpus_info(data.get("loader"), data.get("root"))
    info = facts.card_fields() if facts else {"name": run.corpus, "hub_id": None, "license": None, "terms": ""}
    if (run.config.get("data") or {}).get("loader") == "hub":
        info = {**info, "hub_id": run.corpus}
    return info


# ----------------------------------------------------------------------------------------------------------------
# Model cards
# ----------------------------------------------------------------------------------------------------------------
def _fmt(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def fold_results_table(run: Run, highlight: str | None = None) -> str:
    """The run's results table (`modeling.training.results.results_table`), test speakers from split.json where
    results.json lacks them, `highlight` (a fold name) in bold."""
    speakers = {name: _speakers(run, name).get("test", []) for name in run.all_fold_names}
    table = results_table(run.results, scale=run.percent_scale, test_speakers=speakers, highlight=highlight)
    shared = run.results.get("speaker_dependent") or shared_speakers(run.results.get("folds") or {})
    if shared:
        table = speaker_dependent_note(shared) + "\n\n" + table
    breakdown = run.results.get("breakdowns")
    if breakdown:  # per gender and the worst speaker, all folds' test utterances together
        table += "\n\nPer gender and worst test speaker (all folds, 95 % bootstrap CI):\n\n"
        table += short_breakdown_table(breakdown)
    return table


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
        extra.append(
            "session" + ("s " if len(details["sessions"]) > 1 else " ") + ", ".join(map(str, details["sessions"]))
        )
    if details.get("num_examples"):
        extra.append(f"{details['num_examples']} utterances")
    return speakers + (f" ({'; '.join(extra)})" if extra else "")


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
    stage0 = ("stage0",) if (config.get("stage0") or {}).get("enabled") else ()  # FLEA's stage 0, when it ran
    others = [
        (f"{section}.{key}", _public(value))
        for section in ("data", "model", "training", *stage0)
        for key, value in (config.get(section) or {}).items()
        if value not in (None, {}, [])
    ]
    if "seed" in config:
        others.append(("seed", config["seed"]))
    if others:
        lines += ["", "| Setting | Value |", "|---|---|"] + [f"| {key} | {_cell(value)} |" for key, value in others]
    return "\n".join(lines)


# (how a card names the backbone, its Hub tag) by the backbone's `model_type` (a checkpoint's, without
# "-frame-aligned"); the classes live in the remote-code core (`auto_frame_aligned.FRAME_ALIGNED_MODELS`).
BACKBONE_NAMES = {
    "wav2vec2": ("wav2vec 2.0", "wav2vec2"),
    "hubert": ("HuBERT", "hubert"),
    "wavlm": ("WavLM", "wavlm"),
    "data2vec-audio": ("data2vec-audio", "data2vec-audio"),
    "whisper": ("Whisper (encoder)", "whisper"),
}


def backbone_kind(run: Run) -> tuple[str, str]:
    """(name, Hub tag) of the run's backbone, from the `model_type` of its first fold's checkpoint."""
    model_type = "wav2vec2"
    for fold in run.folds.values():
        model_type = str(read_json(fold.checkpoint / "config.json").get("model_type", model_type))
        break
    model_type = model_type.removesuffix("-frame-aligned")
    return BACKBONE_NAMES.get(model_type, (model_type, model_type))


def backbone(run: Run) -> tuple[str | None, str]:
    """(the pre-trained backbone's Hub id or None, how the card names it) from the config's `model` section and the
    checkpoint's backbone (wav2vec 2.0, HuBERT, WavLM or data2vec-audio)."""
    model = run.config.get("model") or {}
    name = model.get("name_or_path")
    kind = backbone_kind(run)[0]
    if isinstance(name, str) and name:
        if re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not Path(name).exists():
            return name, f"{kind} fine-tuned from `{name}`"
        return None, f"a {kind} backbone fine-tuned from a local checkpoint (`{Path(name).name}`)"
    return None, f"a randomly initialised {kind} backbone"


def _base_model(run: Run) -> str | None:
    return backbone(run)[0]


def _architecture(fold: FinishedFold) -> dict:
    config = read_json(fold.checkpoint / "config.json")
    return {
        "hidden_size": config.get("hidden_size"),
        "layers": config.get("num_hidden_layers"),
        "pooling": config.get("pooling"),
        "eal_weight": config.get("eal_weight"),
        "fual_weight": config.get("fual_weight"),
        "eal_margin": config.get("eal_margin"),
        "continued_pretraining": config.get("continued_pretraining"),  # stage 0 (FLEA) ran: its record
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
    names = {
        2: "the Emotional Attention Loss (EAL) and the Frame-to-Utterance Alignment Loss (FUAL)",
        0: "no auxiliary loss (the Table 3 CLS-pooling baseline)",
    }
    losses = names.get(
        len(terms),
        "the Emotional Attention Loss (EAL)" if arch["eal_weight"] else "the Frame-to-Utterance Alignment Loss (FUAL)",
    )
    return f"**{pooling}** and {losses} of Byun & Lee (2025)", " + ".join(["cross-entropy", *terms])


def stage0_summary(arch: dict) -> str:
    """The model card's line on stage 0 (FLEA's continued pre-training, docs/flea.md): whether this checkpoint's
    backbone went through it, from the record the stage leaves in the checkpoint's config."""
    record = arch.get("continued_pretraining")
    if not record:
        return "none: stage 1 started from the pre-trained backbone."
    return (
        "before stage 1, the backbone was pre-trained further on this fold's training speakers only (FLEA, Li et "
        f"al.): the frames of transformer layer {record.get('layer')} were clustered with K-means into "
        f"{record.get('clusters')} pseudo labels, and the backbone learnt to predict them where spans of "
        f"{record.get('mask_time_length')} frames were masked (mask_time_prob {record.get('mask_time_prob')})."
    )


def card_data(run: Run, folds: list[FinishedFold], model_name: str, license: str | None = None) -> ModelCardData:
    """The YAML metadata: library, pipeline, license, datasets, base model, tags and a model-index of test UA/WA."""
    corpus, corpus_key = card_corpus_fields(run), run.corpus or "unknown"
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
            EvalResult(
                metric_type="recall",
                metric_name="UA (unweighted accuracy, %)",
                metric_args={"average": "macro"},
                metric_value=run.percent(test.get("ua")),
                **common,
            ),
            EvalResult(
                metric_type="accuracy",
                metric_name="WA (weighted accuracy, %)",
                metric_value=run.percent(test.get("wa")),
                **common,
            ),
        ]
        if test.get("macro_f1") is not None:
            eval_results.append(
                EvalResult(
                    metric_type="f1",
                    metric_name="Macro-F1 (%)",
                    metric_args={"average": "macro"},
                    metric_value=run.percent(test["macro_f1"]),
                    **common,
                )
            )
    base_model = _base_model(run)
    tags = [
        "audio-classification",
        "speech-emotion-recognition",
        backbone_kind(run)[1],
        "frame-utterance-alignment",
        "custom_code",
    ]
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="audio-classification",
        license=license or corpus.get("license") or "other",
        datasets=[corpus.get("hub_id") or corpus_key],
        language=corpus.get("language"),
        base_model=base_model,
        tags=tags + [corpus_key],
        metrics=["recall", "accuracy", "f1"],
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


def _limitations(run: Run, fold: FinishedFold) -> str:
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
        f"Trained and evaluated on a single corpus ({card_corpus_fields(run)['name']}); accuracy on other languages, "
        "speakers, microphones, noise or spontaneous speech is unknown and usually much lower. "
        "Emotion labels are acted/annotated categories, not a person's actual feelings."
    )
    notes.append(
        "Do not use the model to make decisions about people (hiring, policing, health, credit) or to infer emotions "
        "without consent."
    )
    notes.append(f"Training data license: {card_corpus_fields(run).get('terms') or 'see the corpus license.'}")
    return "\n".join(f"- {note}" for note in notes)


def stage1_summary(run: Run, fold: FinishedFold) -> str:
    """A sentence comparing with the fold's stage-1 model (train.py scores both stages), or ""."""
    stage1 = (fold.results.get("stage1") or {}).get("test") or {}
    if stage1.get("ua") is None:
        return ""
    return (
        f" The stage-1 model of the same fold (attentive pooling, cross-entropy only) scores UA "
        f"{_fmt(run.percent(stage1['ua']))} % and WA {_fmt(run.percent(stage1.get('wa')))} % on the same speakers."
    )


def _usage(repo_id: str, revision: str | None) -> str:
    """The card's usage section: runs as written on any file libsndfile reads, whatever its rate, channels, length."""
    revision_arg = f', revision="{revision}"' if revision else ""
    return (
        "```python\n"
        "from transformers import pipeline\n\n"
        f'classifier = pipeline("frame-aligned-emotion", model="{repo_id}"{revision_arg}, trust_remote_code=True)\n'
        'result = classifier("speech.wav")  # any rate, channels, length: resampled to 16 kHz, down-mixed, windowed\n'
        'print(result["predicted"], {k: v for k, v in result.items() if k.startswith("prob_")})\n'
        '# result["timeline"]: every stretch of the file (start_s, end_s, predicted, prob_<class>, weight)\n'
        "```\n\n"
        "The pipeline decodes WAV, FLAC, OGG and MP3 with soundfile (no FFmpeg) and takes arrays too "
        "(`classifier(waveform, sampling_rate=sr)`). transformers' `audio-classification` pipeline needs 16 kHz mono "
        "input: resample and down-mix first, e.g.\n\n"
        "```python\n"
        "import soundfile as sf, soxr\n"
        "from transformers import pipeline\n\n"
        'samples, rate = sf.read("speech.wav", dtype="float32", always_2d=True)\n'
        "waveform = soxr.resample(samples.mean(axis=1), rate, 16000)\n"
        f'classifier = pipeline("audio-classification", model="{repo_id}"{revision_arg}, trust_remote_code=True)\n'
        'print(classifier({"raw": waveform, "sampling_rate": 16000}, top_k=None))\n'
        "```\n\n"
        f'`AutoModel.from_pretrained("{repo_id}"{revision_arg}, trust_remote_code=True)` loads the model alone. '
        "`trust_remote_code=True` runs `modeling_frame_aligned.py`, `configuration_frame_aligned.py` "
        "and the pipeline's "
        "files from this repository: read them first."
    )


def _render(template: Path, **values) -> str:
    return string.Template(template.read_text()).substitute(values)


def _with_metadata(data: ModelCardData, body: str) -> str:
    return f"---\n{data.to_yaml()}\n---\n\n{body.lstrip()}"


def render_fold_card(
    run: Run,
    fold: FinishedFold,
    repo_id: str,
    revision: str | None = None,
    license: str | None = None,
    template=FOLD_TEMPLATE,
    space: str | None = None,
) -> str:
    """The README.md of one fold's repository (or branch): YAML metadata + the body from `model_cards/template.md`."""
    arch = _architecture(fold)
    labels = run.labels(fold)
    test = fold.results.get("test", {})
    if fold.confusion_matrix_image:
        image = f"![Confusion matrix of this fold's test speakers]({FOLD_IMAGE})"
    else:
        image = (
            "All folds' test speakers together:\n\n"
            "![Confusion matrix of all folds' test speakers](confusion_matrix.png)"
        )
    body = _render(
        Path(template),
        repo_id=repo_id,
        fold=fold.name,
        num_folds=run.num_folds,
        corpus=card_corpus_fields(run)["name"],
        labels=", ".join(f"`{label}`" for label in labels),
        train_speakers=describe_split(run, fold.name, "train"),
        validation_speakers=describe_split(run, fold.name, "validation"),
        selection_metric=metric_title(stage_selection(run.config)["stage2"]),  # the published model: stage 2's best
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
        stage0=stage0_summary(arch),
        usage=_usage(repo_id, revision) + space_link(space),
        config_table=config_table(run.config),
        results_table=fold_results_table(run, highlight=fold.name),
        confusion_table=confusion_table(labels, test.get("confusion_matrix"), test.get("per_class_recall")),
        confusion_image=image,
        limitations=_limitations(run, fold),
        bibtex=bibtex(),
        doi=PAPER["doi"],
    )
    name = repo_id.split("/")[-1] + (f"-{revision}" if revision else "")
    return _with_metadata(card_data(run, [fold], name, license), body)


def render_overview_card(
    run: Run,
    repo_id: str,
    license: str | None = None,
    template=OVERVIEW_TEMPLATE,
    space: str | None = None,
    main_fold: FinishedFold | None = None,
) -> str:
    """The README.md of `main` with `revision_per_fold`: what each branch holds, which fold's checkpoint `main`
    holds too (`main_fold`, default `Run.best_validation_fold`; `publishing.hub.main_fold` picks it) and the run's
    results."""
    folds = [run.folds[name] for name in run.folds]
    first = folds[0]
    main_fold = main_fold or run.best_validation_fold
    validation_ua = _fmt(run.percent(main_fold.results["validation"]["ua"]))
    why = "the fold with the best validation UA" if main_fold is run.best_validation_fold else "the publisher's choice"
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
        corpus=card_corpus_fields(run)["name"],
        backbone=backbone_kind(run)[0],
        labels=", ".join(f"`{label}`" for label in run.labels(first)),
        branches=branches,
        main_fold=main_fold.label,
        main_fold_reason=f"{why}; validation UA {validation_ua} %",
        usage=_usage(repo_id, None) + space_link(space),
        fold_list=", ".join(f'"{fold.label}"' for fold in folds),
        config_table=config_table(run.config),
        results_table=fold_results_table(run),
        limitations=_limitations(run, first),
        bibtex=bibtex(),
        doi=PAPER["doi"],
    )
    return _with_metadata(card_data(run, folds, repo_id.split("/")[-1], license), body)
