"""Publishing on a flaky network and without leaks: a loopback Hub failing a fraction of requests (500/502/503,
dropped connections; seeded, bounded) → the push completes with retries, or fails cleanly naming the fold and the
files and the next run completes it; a results.json with a missing metric is refused before any request; a run
trained from a private absolute data path and a local backbone publishes neither (every uploaded file searched)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import POLISH3, POLISH3_LABELS, REPO, tiny_config
from huggingface_hub import HfApi
from runs import TINY_TRAIN_ARGS, write_run

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.collator import make_feature_extractor
from modeling.publishing.hub import push_run
from modeling.publishing.run import PushError
from modeling.rundir.atomic import atomic_write_json


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("run"))


pytestmark = pytest.mark.bad_input
FAST_RETRY = {"base_wait_s": 0.05, "max_wait_s": 0.2}


def repo_contents(hub, repo_id: str) -> dict[str, bytes]:
    return {path: hub.read(repo_id, path) for path in hub.files(repo_id)}


def test_push_through_a_flaky_hub_completes_with_retries(hub, api, run_dir):
    hub.flaky(0.3, seed=3, max_failures=5)
    results = push_run(run_dir, "org/flaky", api=api, retry=FAST_RETRY)
    kinds = {kind for kind, _, _ in hub.stats.injected}
    assert len(hub.stats.injected) == 5 and kinds & {"500", "502", "503"} and "drop" in kinds, hub.stats.injected
    hub.flaky(0)
    # the same as a push to a healthy Hub
    with type(hub)() as clean_hub:
        clean = push_run(run_dir, "org/flaky", api=HfApi(endpoint=clean_hub.url, token="dummy"))
        for got, expected in zip(results, clean):
            assert sorted(got.uploaded + got.unchanged) == sorted(expected.uploaded)
            assert repo_contents(hub, got.repo_id) == repo_contents(clean_hub, got.repo_id)


def test_a_push_that_keeps_failing_names_the_fold_and_files_then_the_next_run_completes(hub, api, run_dir):
    hub.flaky(1.0, seed=0)  # every request fails
    with pytest.raises(
        PushError,
        match=r"^Pushing fold1 to org/down-fold1@main failed after 2 attempt\(s\): .*"
        r"Not on the Hub yet: config\.json, .*model\.safetensors.*, README\.md \(a commit is atomic",
    ):
        push_run(run_dir, "org/down", api=api, retry={**FAST_RETRY, "attempts": 2})
    assert ("model", "org/down-fold2") not in hub.repos  # stopped at the first fold
    hub.flaky(0)
    results = push_run(run_dir, "org/down", api=api, retry=FAST_RETRY)
    for result in results:
        files = hub.files(result.repo_id)
        assert {"README.md", "model.safetensors", "config.json", "results.json"} <= set(files)


def test_a_missing_metric_is_refused_before_any_request(hub, api, tmp_path):
    run = write_run(tmp_path / "run")
    results = json.loads((run / "results.json").read_text())
    del results["folds"]["2"]["test"]["wa"]
    results["folds"]["1"]["validation"]["ua"] = None
    atomic_write_json(run / "results.json", results)
    with pytest.raises(
        PushError,
        match=r"lacks metrics the model cards report \(fold1: validation\.ua; fold2: "
        r"test\.wa\); the Hub rejects",
    ):
        push_run(run, "org/missing", api=api)
    with pytest.raises(PushError, match=r"fold2: test\.wa"):
        push_run(run, "org/missing", dry_run=True)
    assert hub.stats.requests == []


@pytest.mark.slow
# heavy: a trained run moved and published (23 s)
@pytest.mark.heavy
def test_a_run_from_a_private_path_publishes_no_local_path(hub, api, tmp_path):
    """Trained with --data-dir /…/home/alice/corpora/polish3 and a local backbone /…/home/alice/models/tiny: no
    uploaded file holds either path, the user name's home, or the run directory."""
    home = tmp_path / "home" / "alice"
    corpus = home / "corpora" / "polish3"
    shutil.copytree(POLISH3, corpus)
    backbone = home / "models" / "tiny-backbone"
    Wav2Vec2ForFrameAlignedClassification(
        tiny_config(id2label=dict(enumerate(POLISH3_LABELS)), pooling="attentive")
    ).save_pretrained(backbone)
    make_feature_extractor().save_pretrained(backbone)
    run = home / "runs" / "demo"
    completed = subprocess.run(
        [
            sys.executable,
            "train.py",
            *TINY_TRAIN_ARGS,
            "--data-dir",
            str(corpus),
            "--output-dir",
            str(run),
            "--set",
            f"model.name_or_path={backbone}",
            "--set",
            "model.random_init=null",
        ],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert str(corpus) in (run / "results.json").read_text()  # the local record keeps it

    push_run(run, "org/private", api=api)
    uploaded = repo_contents(hub, "org/private-fold1")
    assert {"README.md", "results.json", "config.json", "model.safetensors"} <= set(uploaded)
    for name, content in uploaded.items():
        for secret in (str(tmp_path), "alice"):
            assert secret.encode() not in content, f"{name} contains {secret}"
    config = json.loads(uploaded["results.json"])["config"]
    assert config["data"]["root"] == "polish3" and config["model"]["name_or_path"] == "tiny-backbone"
