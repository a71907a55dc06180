"""The one loader (`AutoModelForFrameAlignedClassification`, issue 19): the class from `model_type` for every
backbone, an incomplete backbone refused on every path (naming the tensors), a head that is not in the checkpoint
refused for prediction and reported in one line for training, `auto_map` complete on every save, and no module but
the loader opening a checkpoint with a class of its own choosing."""

import ast
import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from fake_corpora import copy_clips, polish3_rows
from helpers import BACKBONES, POLISH3_LABELS, PREFIXES, REPO, save_plain_backbone, tiny_frame_aligned_model
from safetensors.torch import load_file, save_file

from modeling import AutoModelForFrameAlignedClassification, BackboneWeightsError, HeadWeightsError
from modeling.collator import make_feature_extractor
from modeling.inference import load_pipeline


# Two tensors (weight, bias) of the top layer's feed-forward output, per backbone.
FEED_FORWARD_OUTPUT = {"whisper": ".encoder.layers.1.fc2"}


def save_frame_aligned(model_type: str, folder, **head):
    model = tiny_frame_aligned_model(model_type, **head)
    model.save_pretrained(folder)
    make_feature_extractor(model.config).save_pretrained(folder)
    return model


@pytest.mark.parametrize("model_type", list(BACKBONES))
def test_every_backbone_opens_as_its_own_class_with_every_tensor(model_type, tmp_path, caplog):
    saved = save_frame_aligned(model_type, tmp_path)
    with caplog.at_level(logging.WARNING):
        loaded = AutoModelForFrameAlignedClassification.from_pretrained(tmp_path)
    assert type(loaded) is type(saved) and type(loaded).__name__.lower().startswith(model_type.replace("-", "")[:5])
    assert loaded.new_head_keys == [] and not caplog.records  # nothing to report
    reference = saved.state_dict()
    assert set(loaded.state_dict()) == set(reference)
    assert all(torch.equal(tensor, reference[name]) for name, tensor in loaded.state_dict().items())


@pytest.mark.parametrize("model_type", list(BACKBONES))
def test_a_plain_backbone_gets_a_new_head_reported_in_one_line(model_type, tmp_path, caplog):
    save_plain_backbone(model_type, tmp_path)
    with caplog.at_level(logging.INFO):
        model = AutoModelForFrameAlignedClassification.from_pretrained(
            tmp_path, start_new_head=True, pooling="attentive", num_labels=3
        )
    assert model.base_model_prefix == PREFIXES[model_type]
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "started a new `attentive` head (classifier.* (2), pooler.* (2))" in lines[0], lines
    assert all("LOAD REPORT" not in r.getMessage() and "MISSING" not in r.getMessage() for r in caplog.records)
    with pytest.raises(HeadWeightsError, match=r"head tensors \(classifier.\* \(2\), pooler.\* \(2\)\) are not in"):
        AutoModelForFrameAlignedClassification.from_pretrained(tmp_path)  # to predict: refused


@pytest.mark.parametrize("labels", [{"num_labels": 5}, {"id2label": {0: "a", 1: "b"}, "label2id": {"a": 0, "b": 1}}])
def test_another_number_of_classes_on_a_complete_checkpoint_gets_a_new_classifier(labels, tmp_path, caplog):
    """Issue 20: `start_new_head=True` with another number of classes raised transformers' raw
    `ignore_mismatched_sizes` RuntimeError. The backbone and pooler come from the checkpoint, the classifier is new,
    and that is reported in one line."""
    saved = save_frame_aligned("wav2vec2", tmp_path)
    assert saved.config.num_labels == 3
    with caplog.at_level(logging.INFO):
        model = AutoModelForFrameAlignedClassification.from_pretrained(tmp_path, start_new_head=True, **labels)
    classes = labels.get("num_labels") or len(labels["id2label"])
    assert model.config.num_labels == classes == len(model.config.id2label) == model.classifier.out_features
    assert model.new_head_keys == ["classifier.bias", "classifier.weight"]
    reference = saved.state_dict()
    kept = [name for name in reference if not name.startswith("classifier.")]
    assert all(torch.equal(model.state_dict()[name], reference[name]) for name in kept)  # backbone and pooler
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1 and "started a new `cls_attention` head (classifier.* (2))" in lines[0], lines


def remove_tensors(folder, fragment: str) -> list[str]:
    weights = load_file(folder / "model.safetensors")
    removed = sorted(name for name in weights if fragment in name)
    save_file({name: t for name, t in weights.items() if name not in removed}, folder / "model.safetensors")
    return removed


@pytest.mark.bad_input
@pytest.mark.parametrize("model_type", list(BACKBONES))
def test_an_incomplete_backbone_is_refused_on_every_path_naming_the_tensors(model_type, tmp_path):
    """Truncated backbone: transformers alone starts the missing tensors from random values and logs a table."""
    from transformers import AutoModelForAudioClassification, pipeline

    save_frame_aligned(model_type, tmp_path)
    removed = remove_tensors(
        tmp_path, FEED_FORWARD_OUTPUT.get(model_type, ".encoder.layers.1.feed_forward.output_dense")
    )
    assert len(removed) == 2
    message = rf"2 backbone tensors of \w+ForFrameAlignedClassification are missing from the checkpoint \({removed[0]}"
    with pytest.raises(BackboneWeightsError, match=message):
        AutoModelForFrameAlignedClassification.from_pretrained(tmp_path)
    with pytest.raises(BackboneWeightsError, match=message):
        AutoModelForFrameAlignedClassification.from_pretrained(tmp_path, start_new_head=True, pooling="mean")
    with pytest.raises(BackboneWeightsError, match=message):
        AutoModelForAudioClassification.from_pretrained(tmp_path)
    with pytest.raises(BackboneWeightsError, match=message):
        load_pipeline(tmp_path)
    with pytest.raises((BackboneWeightsError, ValueError), match=message.replace(r"\(", ".")[:60]):
        pipeline("frame-aligned-emotion", model=str(tmp_path))


def test_a_hubert_run_is_scored_with_the_hubert_class(tmp_path):
    """Issue 19: score.py loaded every fold into the wav2vec 2.0 class: on a HuBERT run the backbone was random, the
    probabilities in predictions.csv were nan, and the command exited 0 with a table of scores."""
    from modeling.evaluation.cross_corpus import score_run
    from modeling.metrics.predictions import read_predictions
    from modeling.prediction_fields import softmax
    from modeling.training.scoring import predict

    best = tmp_path / "run" / "fold1" / "stage2" / "best"
    model = save_frame_aligned("hubert", best)
    rows = polish3_rows(6)
    copy_clips(rows, tmp_path / "corpus")
    lines = ["file,label,speaker"] + [f"{r['file'].rsplit('/', 1)[-1]},{r['label']},{r['speaker']}" for r in rows]
    (tmp_path / "corpus" / "metadata.csv").write_text("\n".join(lines) + "\n")
    config = tmp_path / "corpus.yaml"
    data = {"loader": "audio_folder", "root": str(tmp_path / "corpus"), "loader_args": {"labels": POLISH3_LABELS}}
    config.write_text(yaml.safe_dump({"data": data}))
    score_run(tmp_path / "run", config, tmp_path / "scored", progress=False)
    written = read_predictions(tmp_path / "scored" / "predictions.csv")
    assert np.isfinite(written.probabilities).all()
    from modeling.training.experiment import load_run_dataset

    dataset = load_run_dataset({"data": {**data, "speakers": None, "max_per_speaker": None}})
    expected = softmax(predict(model, dataset, batch_size=8).logits)
    fold1 = np.array(written.extra["model"]) == "fold1"
    np.testing.assert_allclose(written.probabilities[fold1], expected, atol=1e-6)


# The remote-code file of each backbone's class (HuBERT, WavLM and data2vec-audio share wav2vec 2.0's).
MODELING_FILES = {"whisper": "modeling_whisper_frame_aligned"}


@pytest.mark.parametrize("model_type", list(BACKBONES))
def test_every_save_writes_a_complete_auto_map(model_type, tmp_path):
    """Issue 19: a local best/config.json mapped no `AutoModel` (the published one did), so
    `AutoModel.from_pretrained(best, trust_remote_code=True)` failed on a checkpoint that works once pushed."""
    model = save_frame_aligned(model_type, tmp_path / "best")
    auto_map = json.loads((tmp_path / "best" / "config.json").read_text())["auto_map"]
    class_name, module = type(model).__name__, MODELING_FILES.get(model_type, "modeling_frame_aligned")
    assert auto_map == {
        "AutoConfig": f"configuration_frame_aligned.{type(model.config).__name__}",
        "AutoModel": f"{module}.{class_name}",
        "AutoModelForAudioClassification": f"{module}.{class_name}",
    }
    assert (tmp_path / "best" / f"{module}.py").is_file()


def test_a_local_save_opens_with_automodel_in_a_fresh_process_for_each_remote_code_file(tmp_path):
    """One fresh process (~8 s to start) per remote-code file: wav2vec 2.0's (shared by HuBERT, WavLM and
    data2vec-audio) and Whisper's own; the same logits as here."""
    expected = {}
    for model_type in ("wav2vec2", "whisper"):
        model = save_frame_aligned(model_type, tmp_path / model_type)
        with torch.no_grad():
            expected[model_type] = (type(model).__name__, model(torch.full((1, 16000), 0.01)).logits[0].tolist())
    script = textwrap.dedent(
        f"""
        import json, sys, torch
        sys.modules["modeling"] = None  # a user without this package
        from transformers import AutoModel
        result = {{}}
        for name in {list(expected)!r}:
            model = AutoModel.from_pretrained({str(tmp_path)!r} + "/" + name, trust_remote_code=True).eval()
            with torch.no_grad():
                result[name] = [type(model).__name__, model(torch.full((1, 16000), 0.01)).logits[0].tolist()]
        print(json.dumps(result))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    for model_type, (class_name, logits) in expected.items():
        assert loaded[model_type][0] == class_name
        assert loaded[model_type][1] == pytest.approx(logits, abs=1e-5)


# The loader's own modules; every other module opens checkpoints through them.
LOADER_MODULES = {"modeling/auto_frame_aligned.py", "modeling/loading_frame_aligned.py"}
# transformers' own path, measured as the peer in the benchmarks (not an entry point of ours).
PEER_CALLS = {
    ("benchmarks/inference.py", "pipeline"),
    ("benchmarks/cpu_inference.py", "pipeline"),
    # the demo page also runs in the Space, where this package is not installed: it opens published folds by Hub id
    # through their remote code (which is the loader's own code, uploaded with every fold)
    ("modeling/app/demo.py", "pipeline"),
}
MODEL_OPENERS = ("ForFrameAlignedClassification", "ForSequenceClassification", "AutoModel", "model_class")


def checkpoint_openers(path) -> list[str]:
    """`X.from_pretrained(...)` calls whose X names a model class (not our Auto class, a config, a feature extractor,
    a peft adapter), and `pipeline(...)` calls that open a checkpoint by name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "from_pretrained":
            receiver = ast.unparse(func.value)
            if receiver != "AutoModelForFrameAlignedClassification" and any(o in receiver for o in MODEL_OPENERS):
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: {receiver}.from_pretrained")
        if isinstance(func, ast.Name) and func.id == "pipeline":
            model = next((k.value for k in node.keywords if k.arg == "model"), None)
            opens_by_name = model is None or not isinstance(model, ast.Name) or model.id not in ("loaded", "model")
            if opens_by_name and (str(path.relative_to(REPO)), "pipeline") not in PEER_CALLS:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}: pipeline({ast.unparse(node)[9:60]}...)")
    return found


def test_no_module_but_the_loader_opens_a_checkpoint_with_a_class_of_its_own():
    """train.py's stages, score.py, compare_runs.py, predict.py (every backend), the ONNX export, the timeline, the
    examples, the benchmarks, the int8 agreement and publishing open checkpoints through the loader."""
    sources = [*REPO.glob("modeling/**/*.py"), *REPO.glob("examples/*.py"), *REPO.glob("benchmarks/*.py")]
    sources += list(REPO.glob("*.py"))
    found = [
        line
        for path in sorted(sources)
        if str(path.relative_to(REPO)) not in LOADER_MODULES
        for line in checkpoint_openers(path)
    ]
    assert found == []
    # the check itself finds what it should
    probe = REPO / "modeling" / "cli" / "score.py"
    text = probe.read_text()
    assert len(checkpoint_openers(probe)) == 0
    fake = probe.with_name("_probe_loader_check.py")
    try:
        fake.write_text(text + "\nWav2Vec2ForFrameAlignedClassification.from_pretrained(x)\npipeline('t', model=p)\n")
        assert len(checkpoint_openers(fake)) == 2
    finally:
        fake.unlink()
