"""push_to_hub.py / modeling.publishing.hub against a loopback Hub (tests/hub_server.py): publish → download →
pipeline.

The run directory follows train.py's contract (results.json, config.yaml, fold<k>/metrics.json, split.json,
fold<k>/stage2/best/ with remote code). It holds tiny random checkpoints: the weights' quality does not matter here.
"""

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from helpers import REPO, polish3_clips
from hub_server import HubServer
from hub_server import client_env as hub_env
from huggingface_hub import HfApi, constants
from runs import FOLD_RESULTS, FOLDS, TINY_TRAIN_ARGS, write_run

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.audio import load_audio
from modeling.cli.push import main as push_main
from modeling.collator import make_feature_extractor
from modeling.publishing.hub import push_run
from modeling.publishing.model_card import render_fold_card
from modeling.publishing.run import PushError, load_run
from modeling.rundir.atomic import atomic_write_json


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A real (tiny, 1-fold) train.py run on polish3 clips; the hand-written run where train.py is absent."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    if not ((REPO / "train.py").is_file() and (REPO / "configs" / "demo.yaml").is_file()):
        return write_run(run_dir, folds={"1": FOLDS["1"]})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, "train.py", *TINY_TRAIN_ARGS, "--output-dir", str(run_dir)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return run_dir


@pytest.fixture(scope="module")
def waveform() -> np.ndarray:
    return load_audio(polish3_clips(1)[0][0])


def local_scores(checkpoint: Path, waveform: np.ndarray, calibrated: bool = False) -> dict[str, float]:
    """softmax(logits / T) of the local model, T = the checkpoint's calibration temperature when `calibrated` (the
    frame-aligned pipeline), else 1 (transformers' audio-classification pipeline: its own plain softmax)."""
    model = Wav2Vec2ForFrameAlignedClassification.from_pretrained(checkpoint).eval()
    inputs = make_feature_extractor()(waveform, sampling_rate=16000, return_tensors="pt")
    temperature = (getattr(model.config, "calibration_temperature", None) or 1.0) if calibrated else 1.0
    with torch.no_grad():
        probabilities = (model(**inputs).logits / temperature).softmax(-1)[0]
    return {model.config.id2label[i]: p.item() for i, p in enumerate(probabilities)}


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def lfs_uploads(hub: HubServer, path: Path) -> int:
    return hub.stats.lfs_uploads_of(path.read_bytes())


# ----------------------------------------------------------------------------------------------------------------
# Publish → download → pipeline
# ----------------------------------------------------------------------------------------------------------------
# A fresh process loading a one-repo fold, a branch and main without a revision (43 s): in make test again since
# CI took 7.5 min (it guards --revision-per-fold's main branch, which only an in-process test covered)
def test_published_folds_load_with_remote_code_in_a_fresh_process(hub, trained_run, waveform, tmp_path):
    """A train.py run, pushed by the CLI (one repo per fold) and with --revision-per-fold (a branch per fold): a
    process without the package and with an empty HF_HOME loads both through the Hub protocol and scores a real
    clip like the local model; the card's model-index holds the run's test UA/WA."""
    run_dir = trained_run
    completed = subprocess.run(
        [sys.executable, str(REPO / "push_to_hub.py"), "--run-dir", str(run_dir), "--repo-id", "org/ser"],
        env=hub_env(hub, tmp_path / "pusher_home"),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "org/ser-fold1: uploaded" in completed.stdout
    best = run_dir / "fold1" / "stage2" / "best"
    files = set(hub.files("org/ser-fold1"))
    assert {
        "model.safetensors",
        "config.json",
        "configuration_frame_aligned.py",
        "modeling_frame_aligned.py",
        "preprocessor_config.json",
        "README.md",
        "confusion_matrix.png",
        "results.json",
        "split.json",
    } <= files
    assert "auto_map" in json.loads(hub.read("org/ser-fold1", "config.json"))
    assert hub.entry("org/ser-fold1", "model.safetensors")["lfs"]["oid"] == hub.sha256(best / "model.safetensors")
    results = json.loads((run_dir / "results.json").read_text())
    test = results["folds"]["1"]["test"]
    (entry,) = front_matter(hub.read("org/ser-fold1", "README.md").decode())["model-index"][0]["results"]
    scale = 100 if results.get("metric_scale", "fraction") == "fraction" else 1
    assert {m["type"]: m["value"] for m in entry["metrics"]} == {
        "recall": round(test["ua"] * scale, 2),
        "accuracy": round(test["wa"] * scale, 2),
        "f1": round(test["macro_f1"] * scale, 2),  # macro-F1, which train.py records
    }

    api = HfApi(endpoint=hub.url, token="dummy")
    (again,) = push_run(run_dir, "org/ser", api=api)  # the same push again, in this process: nothing is sent
    assert again.uploaded == [] and hub.stats.commits["org/ser-fold1"] == 1
    assert lfs_uploads(hub, best / "model.safetensors") == 1

    results = push_run(run_dir, "org/ser", revision_per_fold=True, api=api)
    # the overview card of main last, after the branch it describes
    assert [(r.repo_id, r.revision) for r in results] == [("org/ser", "fold1"), ("org/ser", "main")]
    assert set(hub.repos[("model", "org/ser")].branches) == {"main", "fold1"}
    # main also holds the best validation fold's checkpoint (the only fold here): it loads without a revision
    assert hub.entry("org/ser", "model.safetensors") == hub.entry("org/ser", "model.safetensors", "fold1")
    assert 'revision="fold1"' in hub.read("org/ser", "README.md").decode()

    np.save(tmp_path / "waveform.npy", waveform)
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["modeling"] = None  # installed editable here: any import of the project package fails
        import numpy as np
        from transformers import pipeline
        waveform = np.load({str(tmp_path / "waveform.npy")!r})
        out = {{}}
        for key, kwargs in {{"repo": {{"model": "org/ser-fold1"}}, "branch": {{"model": "org/ser", "revision":
        "fold1"}}, "main": {{"model": "org/ser"}}}}.items():
            classifier = pipeline("audio-classification", trust_remote_code=True, device="cpu", **kwargs)
            scores = classifier({{"raw": waveform, "sampling_rate": 16000}}, top_k=None)
            out[key] = {{"class": type(classifier.model).__module__, "scores": {{s["label"]: s["score"] for s in
            scores}}}}
        # the published fold also carries the frame-level timeline pipeline (custom_pipelines in config.json)
        timeline = pipeline("frame-aligned-emotion", model="org/ser-fold1", trust_remote_code=True, device="cpu")
        result = timeline({{"raw": waveform, "sampling_rate": 16000}})
        probabilities = {{k.removeprefix("prob_"): v for k, v in result.items() if k.startswith("prob_")}}
        out["timeline"] = {{"class": type(timeline).__module__, "scores": probabilities,
                           "end": result["timeline"][-1]["end_s"], "duration_s": result["duration_s"]}}
        print(json.dumps(out))
        """
    )
    hf_home = tmp_path / "empty_hf_home"
    hf_home.mkdir()
    completed = subprocess.run(
        [sys.executable, "-c", script],
        env=hub_env(hub, hf_home),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    output = json.loads(completed.stdout.strip().splitlines()[-1])
    assert output["timeline"]["end"] == pytest.approx(output["timeline"]["duration_s"])
    for key in ("repo", "branch", "main", "timeline"):
        # the frame-aligned pipeline applies the fold's calibration temperature; audio-classification does not
        expected = local_scores(best, waveform, calibrated=key == "timeline")
        assert output[key]["class"].startswith("transformers_modules."), output[key]["class"]
        assert output[key]["scores"].keys() == expected.keys()
        for label, score in expected.items():
            assert output[key]["scores"][label] == pytest.approx(score, abs=1e-5)
    assert (
        "GET",
        "/org/ser-fold1/resolve/" + hub.repos[("model", "org/ser-fold1")].branches["main"] + "/model.safetensors",
    ) in hub.stats.requests


def test_second_push_sends_nothing_and_a_changed_card_only_the_card(hub, api, run_dir):
    first = push_run(run_dir, "org/ser", api=api)
    assert all("model.safetensors" in r.uploaded for r in first)
    weights = run_dir / "fold1" / "stage2" / "best" / "model.safetensors"
    assert lfs_uploads(hub, weights) == 1
    commits, regular, requests = dict(hub.stats.commits), dict(hub.stats.regular_uploads), len(hub.stats.requests)

    second = push_run(run_dir, "org/ser", api=api)
    assert all(r.uploaded == [] and "model.safetensors" in r.unchanged for r in second)
    assert dict(hub.stats.commits) == commits and dict(hub.stats.regular_uploads) == regular
    assert lfs_uploads(hub, weights) == 1
    assert not [
        r for r in hub.stats.requests[requests:] if r[0] == "PUT" or "/commit/" in r[1] or "/preupload/" in r[1]
    ]

    third = push_run(run_dir, "org/ser", folds=[1], api=api, license="apache-2.0")
    assert third[0].uploaded == ["README.md"]
    assert hub.stats.regular_uploads[("org/ser-fold1", "README.md")] == 2
    assert hub.stats.regular_uploads[("org/ser-fold1", "config.json")] == 1 and lfs_uploads(hub, weights) == 1
    assert front_matter(hub.read("org/ser-fold1", "README.md").decode())["license"] == "apache-2.0"


def test_interrupted_push_completes_on_the_next_run(hub, api, run_dir):
    push_run(run_dir, "org/ser", folds=["1"], api=api)
    hub.fail_next_commits = 2  # fold 2's commit fails after its weights were uploaded, also when retried
    with pytest.raises(
        PushError,
        match=r"(?s)^Pushing fold2 to org/ser-fold2@main failed after 2 attempt\(s\): .*"
        r"Injected failure.*Not on the Hub yet: .*model\.safetensors.*, README\.md \(a commit is atomic",
    ):
        push_run(run_dir, "org/ser", api=api, retry={"attempts": 2, "base_wait_s": 0.01})
    weights2 = run_dir / "fold2" / "stage2" / "best" / "model.safetensors"
    assert hub.files("org/ser-fold2") == [".gitattributes"] and lfs_uploads(hub, weights2) == 1

    results = push_run(run_dir, "org/ser", api=api)
    assert results[0].uploaded == [] and "model.safetensors" in results[1].uploaded
    assert "model.safetensors" in hub.files("org/ser-fold2")
    assert lfs_uploads(hub, weights2) == 1  # the blob the server already held was not sent again
    assert lfs_uploads(hub, run_dir / "fold1" / "stage2" / "best" / "model.safetensors") == 1


# ----------------------------------------------------------------------------------------------------------------
# Model card
# ----------------------------------------------------------------------------------------------------------------
def test_card_metadata_and_model_index_hold_the_folds_numbers(hub, api, run_dir):
    push_run(run_dir, "org/ser", api=api)
    for fold in FOLDS:
        card = hub.read(f"org/ser-fold{fold}", "README.md").decode()
        meta = front_matter(card)
        assert meta["library_name"] == "transformers" and meta["pipeline_tag"] == "audio-classification"
        assert meta["license"] == "cc-by-4.0" and meta["datasets"] == ["polish3"] and "custom_code" in meta["tags"]
        (index,) = meta["model-index"]
        (entry,) = index["results"]
        assert entry["task"]["type"] == "audio-classification" and entry["dataset"]["config"] == f"fold{fold}"
        metrics = {m["type"]: m["value"] for m in entry["metrics"]}
        test = FOLD_RESULTS[fold]["test"]
        assert metrics == {"recall": round(test["ua"] * 100, 2), "accuracy": round(test["wa"] * 100, 2)}
        assert f'pipeline("audio-classification", model="org/ser-fold{fold}", trust_remote_code=True)' in card
        assert f"test speakers it reaches **UA {test['ua'] * 100:.2f} %**" in card


def test_card_body_sections(run_dir):
    run = load_run(run_dir)
    card = render_fold_card(run, run.folds["1"], "org/ser-fold1")
    for expected in (
        "fold 1** of a 5-fold speaker-independent cross-validation",
        "UA 52.34 %** and **WA 50.00 %**",
        "stage-1 model of the same fold (attentive pooling, cross-entropy only) scores UA 35.00 % and WA 36.00 %",
        "**CLS self-attention pooling** and the Emotional Attention Loss (EAL) and the Frame-to-Utterance",
        "Train speakers: m3, m4, m5 (270 utterances)",
        "Validation speakers (the checkpoint is selected on their UA): m2",
        "Test speakers (the results below): m1 (90 utterances)",
        "| backbone_learning_rate | `0.0001` | `1e-05` |",
        "| num_trainable_layers | `None` | `1` |",  # both stages
        "| data.loader | `audio_folder` |",
        "| model.random_init | `{hidden_size: 32, num_hidden_layers: 2}` |",
        "| **fold1** | **m1** | **40.00** | **41.00** | **52.34** | **50.00** | **35.00 / 36.00** |",
        "| fold2 | m2 | 38.00 | 39.00 | 44.00 | 45.00 | 35.00 / 36.00 |",
        "| **mean ± std** (2 of 5 folds) | | | | **48.17 ± 4.17** | **47.50 ± 2.50** | – / – |",
        "| **anger** | 10 | 5 | 3 | 55.55 |",
        "(confusion_matrix.png)",
        "**Demo checkpoint.**",
        "initialised randomly",
        "Mięsikowska",
        "https://doi.org/10.34808/h46c-hb44",
        "@article{byun2025frame",
        "doi     = {10.3390/fi17110509}",
        "volume  = {17}",
        "number  = {11}",
        "pages   = {509}",
    ):
        assert expected in card, expected
    assert "$" not in card.split("```bibtex")[0]  # every template field was filled


@pytest.mark.parametrize("metric_scale", ["percent", None])
def test_percent_results_are_not_scaled_twice(tmp_path, metric_scale):
    run_dir = write_run(tmp_path / "run", folds={"1": FOLDS["1"]})
    results = json.loads((run_dir / "results.json").read_text())
    results["metric_scale"] = metric_scale
    results["folds"]["1"]["test"].update(ua=52.3, wa=50.0)
    results["folds"]["1"]["validation"].update(ua=40.0, wa=41.0)
    results["mean"], results["std"] = {"ua": 52.3, "wa": 50.0}, {"ua": 0.0, "wa": 0.0}
    atomic_write_json(run_dir / "results.json", results)
    run = load_run(run_dir)
    meta = front_matter(render_fold_card(run, run.folds["1"], "org/ser-fold1"))
    assert {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]} == {
        "recall": 52.3,
        "accuracy": 50.0,
    }


# ----------------------------------------------------------------------------------------------------------------
# Errors before anything is sent
# ----------------------------------------------------------------------------------------------------------------
def break_run(tmp_path: Path, how: str) -> Path:
    run_dir = write_run(tmp_path / "run", folds={"1": FOLDS["1"]}) if how != "missing" else tmp_path / "nowhere"
    if how == "no_results":
        (run_dir / "results.json").unlink()
    elif how == "unfinished_fold":
        (run_dir / "fold1" / "metrics.json").unlink()
    elif how == "no_checkpoint":
        (run_dir / "fold1" / "stage2" / "best" / "model.safetensors").unlink()
    elif how == "truncated_weights":  # a copy cut short: the header still parses, the data does not fit
        weights = run_dir / "fold1" / "stage2" / "best" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif how == "no_auto_map":
        config_path = run_dir / "fold1" / "stage2" / "best" / "config.json"
        config = json.loads(config_path.read_text())
        del config["auto_map"]
        config_path.write_text(json.dumps(config))
    return run_dir


@pytest.mark.parametrize(
    "how, message",
    [
        ("missing", r"Run directory .*nowhere does not exist"),
        ("no_results", r"results.json not found: the run .* has not finished"),
        ("unfinished_fold", r"fold1 is unfinished: .*fold1/metrics.json not found"),
        ("no_checkpoint", r"fold1: checkpoint .*best is incomplete, missing model.safetensors"),
        ("no_auto_map", r"has no auto_map"),
        ("truncated_weights", r"fold1: checkpoint .*best is damaged: .*model.safetensors"),
    ],
)
def test_bad_run_directory_fails_before_any_request(hub, api, tmp_path, how, message):
    with pytest.raises(PushError, match=message):
        push_run(break_run(tmp_path, how), "org/ser", api=api)
    assert hub.stats.requests == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"folds": ["3"]}, r"fold3 not in .*results.json \(evaluated: fold1, fold2 of 5\).*train.py --folds 3"),
        ({"folds": ["fold1", "7"]}, r"fold7 not in .*\(--folds\)\.$"),
        ({"repo_id": "no-namespace"}, r"--repo-id 'no-namespace' must be ORG/NAME"),
        ({"repo_id": "org/bad name"}, r"invalid repository name 'org/bad name-fold1'"),
    ],
)
def test_unknown_fold_or_bad_repo_id_fails_before_any_request(hub, api, run_dir, kwargs, message):
    kwargs = {"repo_id": "org/ser", **kwargs}
    with pytest.raises(PushError, match=message):
        push_run(run_dir, api=api, **kwargs)
    assert hub.stats.requests == []


def test_missing_token_fails_before_any_request(hub, run_dir, tmp_path, monkeypatch):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    with pytest.raises(PushError, match="No Hugging Face token found: set HF_TOKEN or log in"):
        push_run(run_dir, "org/ser", api=HfApi(endpoint=hub.url))
    assert hub.stats.requests == []


def test_cli_reports_errors_and_dry_run_without_token_or_requests(hub, run_dir, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-stored-token"))
    assert push_main(["--run-dir", str(run_dir), "--repo-id", "org/ser", "--folds", "9"]) == 2
    assert "error: fold9 not in" in capsys.readouterr().err
    assert push_main(["--run-dir", str(run_dir), "--repo-id", "org/ser"]) == 2
    assert "No Hugging Face token found" in capsys.readouterr().err
    assert push_main(["--run-dir", str(run_dir), "--repo-id", "org/ser", "--revision-per-fold", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "org/ser @ fold2 (fold2)" in out and "model.safetensors" in out and "nothing was uploaded" in out
    assert hub.stats.requests == []


# ----------------------------------------------------------------------------------------------------------------
# Repository options and the server itself
# ----------------------------------------------------------------------------------------------------------------
def test_private_repositories_are_hidden_from_anonymous_users(hub, api, run_dir):
    push_run(run_dir, "org/ser", folds=[2], private=True, api=api)
    assert api.model_info("org/ser-fold2").private is True
    with pytest.raises(Exception, match="Repository Not Found"):
        HfApi(endpoint=hub.url, token=False).model_info("org/ser-fold2")


def test_server_errors_ranges_and_conflicts(hub, api, run_dir):
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    push_run(run_dir, "org/ser", folds=[1], api=api)
    with pytest.raises(HfHubHTTPError, match="409"):
        api.create_repo("org/ser-fold1")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/absent")
    with pytest.raises(RevisionNotFoundError):
        api.model_info("org/ser-fold1", revision="fold9")
    with pytest.raises(EntryNotFoundError):
        get_hf_file_metadata(hf_hub_url("org/ser-fold1", "tokenizer_config.json", endpoint=hub.url))
    metadata = get_hf_file_metadata(hf_hub_url("org/ser-fold1", "model.safetensors", endpoint=hub.url))
    assert metadata.commit_hash == hub.repos[("model", "org/ser-fold1")].branches["main"]
    url = f"{hub.url}/org/ser-fold1/resolve/main/model.safetensors"
    weights = (run_dir / "fold1" / "stage2" / "best" / "model.safetensors").read_bytes()
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=100-199"})) as response:
        assert response.status == 206 and response.read() == weights[100:200]
    assert metadata.size == len(weights) and metadata.etag == hub.sha256(
        run_dir / "fold1" / "stage2" / "best" / "model.safetensors"
    )
    assert {s.rfilename for s in api.model_info("org/ser-fold1").siblings} == set(hub.files("org/ser-fold1"))
