"""Every ```bash and ```python block of the documentation pages issue 19 added runs as written (slow: they spawn
processes and train), in a folder laid out like a checkout after `make demo`: `data/`, the scripts, `examples/`, and
tiny stand-ins for `runs/demo/fold1` and for the Hub backbones the pages name (the Hub is not reachable here)."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from backbone_runs import FAST_CONV
from helpers import POLISH3_LABELS, REPO, polish3_clips, save_plain_backbone, tiny_frame_aligned_model

from modeling.audio import load_audio
from modeling.collator import make_feature_extractor
from modeling.metrics.predictions import Predictions, predictions_csv
from modeling.prediction_fields import softmax


pytestmark = pytest.mark.slow
PAGES = ["loading.md", "trainer_recipes.md", "predictions.md", "own_data_inputs.md"]
HUB_BACKBONES = {"facebook/hubert-base-ls960": "hubert", "facebook/wav2vec2-base": "wav2vec2"}


def blocks(page: str) -> list[tuple[str, str]]:
    text = (REPO / "docs" / page).read_text()
    return re.findall(r"```(bash|python)\n(.*?)```", text, re.S)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkout")
    for name in ("data", "examples", "configs", "predict.py", "score.py", "train.py"):
        (root / name).symlink_to(REPO / name)
    best = root / "runs" / "demo" / "fold1" / "stage2" / "best"
    model = tiny_frame_aligned_model("wav2vec2")
    model.save_pretrained(best)
    make_feature_extractor().save_pretrained(best)
    clips = polish3_clips(4)
    batch = make_feature_extractor()(
        [load_audio(path) for path, _ in clips],
        sampling_rate=16000,
        padding=True,
        return_tensors="pt",
        return_attention_mask=True,
    )
    with torch.no_grad():
        logits = model(**batch).logits.numpy()
    rows = Predictions(
        files=[os.path.relpath(p, REPO / "data" / "polish3") for p, _ in clips],
        speakers=["m1"] * len(clips),
        labels=np.array([label for _, label in clips]),
        probabilities=softmax(logits),
        classes=POLISH3_LABELS,
    )
    (best.parents[1] / "predictions_test.csv").write_text(predictions_csv(rows))
    backbones = {}
    for hub_id, model_type in HUB_BACKBONES.items():
        backbones[hub_id] = root / "backbones" / model_type
        save_plain_backbone(model_type, backbones[hub_id], **FAST_CONV)
    return root, backbones


@pytest.mark.parametrize("page", PAGES)
def test_every_block_of_the_page_runs_as_written(page, workspace):
    root, backbones = workspace
    found = blocks(page)
    assert found, f"docs/{page} has no runnable block"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
    }
    for number, (language, code) in enumerate(found):
        for hub_id, folder in backbones.items():
            code = code.replace(f'"{hub_id}"', repr(str(folder))).replace(hub_id, str(folder))
        command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"docs/{page}, block {number} ({language}):\n{code}\n{done.stderr[-3000:]}"
