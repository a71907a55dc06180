"""`push_to_hub.py --revision-per-fold`: `main` must load without a `revision` (it held only the overview card, so
`from_pretrained("ORG/NAME")` failed with transformers' "Unrecognized model"): it holds a copy of one fold's
checkpoint, the best validation UA unless `--main-fold` names another, against the loopback Hub over HTTP."""

import json

import pytest
import torch
from helpers import polish3_clips
from runs import write_run
from transformers import AutoModelForAudioClassification

from modeling.audio import load_audio
from modeling.cli.push import main as push_main
from modeling.collator import make_feature_extractor
from modeling.publishing.hub import plan_push, push_run
from modeling.publishing.run import PushError, load_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """Folds 1 and 2 of tests/runs.py, fold 2 given the better validation UA (0.45 > fold 1's 0.40; its test UA,
    0.44, is the worse one: a rule that read the test score would pick fold 1)."""
    run_dir = write_run(tmp_path_factory.mktemp("main_branch") / "run")
    results = json.loads((run_dir / "results.json").read_text())
    results["folds"]["2"]["validation"]["ua"] = 0.45
    (run_dir / "results.json").write_text(json.dumps(results))
    return run_dir


def main_target(run_dir, **kwargs):
    (target,) = [
        t for t in plan_push(load_run(run_dir), "org/ser", revision_per_fold=True, **kwargs) if t.revision == "main"
    ]
    return target


def test_main_holds_the_best_validation_folds_checkpoint_and_loads_without_a_revision(hub, api, run_dir, tmp_path):
    results = push_run(run_dir, "org/ser", revision_per_fold=True, api=api)
    assert [(r.repo_id, r.revision) for r in results] == [
        ("org/ser", "fold1"),
        ("org/ser", "fold2"),
        ("org/ser", "main"),
    ]
    fold2 = run_dir / "fold2" / "stage2" / "best"
    for name in ("model.safetensors", "config.json", "modeling_frame_aligned.py", "preprocessor_config.json"):
        assert hub.read("org/ser", name) == hub.read("org/ser", name, "fold2"), name
    assert hub.entry("org/ser", "model.safetensors")["lfs"]["oid"] == hub.sha256(fold2 / "model.safetensors")
    assert hub.stats.lfs_uploads_of((fold2 / "model.safetensors").read_bytes()) == 1  # the Hub stores it once

    card = hub.read("org/ser", "README.md").decode()
    assert "copy of **`fold2`**'s checkpoint (the fold with the best validation UA; validation UA 45.00 %)" in card
    assert 'pipeline("frame-aligned-emotion", model="org/ser", trust_remote_code=True)' in card

    waveform = load_audio(polish3_clips(1)[0][0])
    inputs = make_feature_extractor()(waveform, sampling_rate=16000, return_tensors="pt")
    logits = {}
    for revision in (None, "fold2", "fold1"):
        model = AutoModelForAudioClassification.from_pretrained(
            "org/ser", revision=revision, trust_remote_code=True, cache_dir=tmp_path / "cache"
        ).eval()
        with torch.no_grad():
            logits[revision] = model(**inputs).logits
    torch.testing.assert_close(logits[None], logits["fold2"], rtol=0, atol=0)
    assert not torch.allclose(logits[None], logits["fold1"])


def test_main_fold_names_another_fold_or_is_refused_before_any_request(run_dir):
    target = main_target(run_dir, main_fold_name="fold1")
    assert target.files["model.safetensors"] == run_dir / "fold1" / "stage2" / "best" / "model.safetensors"
    assert "copy of **`fold1`**'s checkpoint (the publisher's choice; validation UA 40.00 %)" in (
        target.files["README.md"].decode()
    )
    assert main_target(run_dir, main_fold_name=2).files["model.safetensors"].parts[-4] == "fold2"

    with pytest.raises(PushError, match=r"--main-fold '3': fold3 is not published here \(folds: fold1, fold2\)"):
        main_target(run_dir, main_fold_name="3")
    with pytest.raises(PushError, match="--main-fold: 'best' is not a fold"):
        main_target(run_dir, main_fold_name="best")
    with pytest.raises(PushError, match="--main-fold picks the fold that the main branch holds: it needs"):
        plan_push(load_run(run_dir), "org/ser", main_fold_name="1")


def test_cli_main_fold(run_dir, capsys):
    args = ["--run-dir", str(run_dir), "--repo-id", "org/ser", "--dry-run"]
    assert push_main([*args, "--revision-per-fold", "--main-fold", "1"]) == 0
    assert "fold1's checkpoint" in capsys.readouterr().out
    assert push_main([*args, "--main-fold", "1"]) == 2
    assert "it needs --revision-per-fold" in capsys.readouterr().err
