"""`push_to_hub.py --space`: the demo Space against the loopback Hub (tests/hub_server.py) — its files, front matter,
the cards' links, idempotence — and the Space's files as pushed, run in a fresh process where the `modeling` package
cannot be imported, loading the published folds by id: labels and probabilities equal the local pipeline's, each fold
on the backend its `onnx/backend.json` names."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from helpers import POLISH3, REPO, markdown_blocks
from hub_server import client_env as hub_env
from runs import write_run

from modeling.audio import load_audio
from modeling.cli.push import main as push_main
from modeling.inference.backend_choice import default_clips
from modeling.prediction_fields import probabilities_of
from modeling.publishing.hub import push_run
from modeling.publishing.space import GRADIO_SDK_VERSION, space_requirements


pytest.importorskip("onnxruntime")

CLIP = POLISH3 / "audio" / "m2.s_tak_1.flac"
CHOICE_CLIPS = default_clips()  # 40 bundled clips, every speaker and class: what `python app.py` uses
SPACE_FILES = [".gitattributes", "README.md", "app.py", "demo.py", "example.flac", "requirements.txt"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """write_run's 2 folds; fold 1 with its measured ONNX backend choice (published with it), fold 2 without."""
    from modeling.inference.backend_choice import backend_choice

    run = write_run(tmp_path_factory.mktemp("space") / "run")
    backend_choice(run / "fold1" / "stage2" / "best", CHOICE_CLIPS)
    return run


def front_matter(readme: bytes) -> dict:
    return yaml.safe_load(readme.decode().split("---\n")[1])


def test_space_files_front_matter_card_links_and_second_push_sends_nothing(hub, api, run_dir, capsys, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "dummy")
    assert push_main(["--run-dir", str(run_dir), "--repo-id", "org/ser", "--space", "org/ser-demo"]) == 0
    assert "Space org/ser-demo: uploaded 5 file(s)" in capsys.readouterr().out
    assert hub.files("org/ser-demo", repo_type="space") == SPACE_FILES  # no weights: the folds are loaded by id
    meta = front_matter(hub.read("org/ser-demo", "README.md", repo_type="space"))
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py"
    assert meta["sdk_version"] == GRADIO_SDK_VERSION == __import__("gradio").__version__  # the tested gradio
    assert meta["models"] == ["org/ser-fold1", "org/ser-fold2"]
    app = hub.read("org/ser-demo", "app.py", repo_type="space").decode()
    assert "FOLD_REPOS = [\n    'org/ser-fold1',\n    'org/ser-fold2',\n]" in app
    assert hub.read("org/ser-demo", "demo.py", repo_type="space") == (REPO / "modeling/app/demo.py").read_bytes()
    for fold in ("org/ser-fold1", "org/ser-fold2"):
        card = hub.read(fold, "README.md").decode()
        assert "[org/ser-demo](https://huggingface.co/spaces/org/ser-demo)" in card
    assert "onnx/backend.json" in hub.files("org/ser-fold1") and "onnx/backend.json" not in hub.files("org/ser-fold2")
    again = push_run(run_dir, "org/ser", space="org/ser-demo", api=api)
    assert [result.uploaded for result in again] == [[], [], []]


SPACE_SCRIPT = """
import json, sys
from huggingface_hub import snapshot_download
folder = snapshot_download("org/ser-demo", repo_type="space")
sys.path.insert(0, folder)
sys.modules["modeling"] = None  # the project's package may be on this interpreter's path: block it, the Space has none
import app
from demo import run_request
menu = {m.name: m for m in app.MENU}
out = {}
for name in menu:
    label, figure, rows, header, status = run_request(menu, sys.argv[1], name)
    out[name] = {"label": label, "backend": menu[name].backend, "rows": len(rows), "status": status}
print(json.dumps(out))
"""


def check_space_runs_alone(python, hub, api, run_dir, tmp_path):
    """Push the run and its Space, run the Space's files with `python` (no `modeling` package) on CLIP: the labels and
    probabilities of every menu entry equal the local pipeline's, each fold on its published backend."""
    from modeling.inference import load_pipeline

    assert CLIP.is_file()
    push_run(run_dir, "org/ser", space="org/ser-demo", api=api)
    env = hub_env(hub, tmp_path / "hf_home")
    env.pop("PYTHONPATH", None)
    done = subprocess.run(
        [python, "-c", SPACE_SCRIPT, str(CLIP)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(got) == ["fold ensemble", "ser-fold1", "ser-fold2"]
    choice = json.loads((run_dir / "fold1/stage2/best/onnx/backend.json").read_text())
    assert got["ser-fold1"]["backend"] == choice["backend"] and got["ser-fold2"]["backend"] == "torch"
    waveform = load_audio(CLIP)
    local = {
        "ser-fold1": probabilities_of(
            load_pipeline(run_dir / "fold1/stage2/best", backend=choice["backend"])(waveform)
        ),
        "ser-fold2": probabilities_of(load_pipeline(run_dir / "fold2/stage2/best")(waveform)),
    }
    local["fold ensemble"] = {c: (local["ser-fold1"][c] + local["ser-fold2"][c]) / 2 for c in local["ser-fold1"]}
    for name, probabilities in local.items():
        assert got[name]["label"] == pytest.approx(probabilities, abs=1e-5), name
        assert got[name]["rows"] >= 1 and got[name]["status"].startswith(
            f"**{max(probabilities, key=probabilities.get)}**"
        )
    return got


@pytest.mark.heavy
def test_space_files_run_alone_and_equal_the_local_pipeline(hub, api, run_dir, tmp_path):
    """Heavy (~45 s on a loaded 2-core machine): a fresh interpreter imports gradio, torch and transformers and loads
    both folds through their remote code from the loopback Hub."""
    check_space_runs_alone(sys.executable, hub, api, run_dir, tmp_path)


@pytest.mark.heavy
def test_space_files_run_in_a_fresh_virtualenv_with_only_their_requirements(hub, api, run_dir, tmp_path):
    """Heavy (minutes: a virtualenv with torch, transformers and gradio is installed): the Space's requirements.txt
    plus gradio at its sdk_version, as the Hub installs them, and nothing else. FRAME_ALIGNED_SPACE_VENV names an
    existing such virtualenv to reuse (docs/demo.md shows how it was made)."""
    venv = os.environ.get("FRAME_ALIGNED_SPACE_VENV")
    if not venv:
        venv = str(tmp_path / "space-venv")
        requirements = tmp_path / "requirements.txt"
        requirements.write_text(space_requirements() + f"gradio=={GRADIO_SDK_VERSION}\n")
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([f"{venv}/bin/pip", "install", "-q", "-r", str(requirements)], check=True, timeout=1800)
    python = f"{venv}/bin/python"
    freeze = subprocess.run([python, "-m", "pip", "freeze"], capture_output=True, text=True, check=True).stdout
    assert "frame-aligned-ser" not in freeze and "pytest" not in freeze  # only the Space's packages
    check_space_runs_alone(python, hub, api, run_dir, tmp_path)


def test_backend_choice_measures_int8_agreement_and_picks_the_fastest_that_keeps_the_labels(run_dir):
    """On the run fixture's fold 1 (`backend_choice` already ran there, as `python app.py` runs it)."""
    import onnx

    from modeling.inference import load_pipeline
    from modeling.inference.backend_choice import backend_choice, choice_path, choose

    tmp_path = run_dir / "fold1" / "stage2" / "best"
    clips = CHOICE_CLIPS
    choice = backend_choice(tmp_path, clips)  # read back
    held_out = clips[1::2]
    labels = {
        backend: [r["predicted"] for r in load_pipeline(tmp_path, backend=backend)(held_out)]
        for backend in ("onnx", "onnx-int8", "onnx-int8-static")
    }
    agreement = {
        b: np.mean([a == c for a, c in zip(labels["onnx"], labels[b])]) for b in ("onnx-int8", "onnx-int8-static")
    }
    assert choice["agreement"] == pytest.approx(agreement)
    assert (choice["calibration_clips"], choice["agreement_clips"]) == (len(clips[0::2]), len(held_out))
    expected = next((b for b in ("onnx-int8-static", "onnx-int8") if agreement[b] >= 0.97), "onnx")
    assert choice["backend"] == expected and json.loads(choice_path(tmp_path).read_text()) == choice
    # the static model quantises the convolutions: every Conv reads a dequantised (int8) weight
    graph = onnx.load(tmp_path / "onnx" / "model_int8_static.onnx").graph
    producers = {output: node.op_type for node in graph.node for output in node.output}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert convs and all(producers.get(node.input[1]) == "DequantizeLinear" for node in convs)
    # the rule, on given agreements: the first int8 model (static, then dynamic) at the threshold, else fp32 ONNX
    assert choose({"onnx-int8-static": 0.97, "onnx-int8": 1.0}, 0.97, 20)[0] == "onnx-int8-static"
    assert choose({"onnx-int8-static": 0.95, "onnx-int8": 0.97}, 0.97, 20) == (
        "onnx-int8",
        "dynamic int8: 97% label agreement with fp32 on 20 clips (static int8 95%, dynamic int8 97%)",
    )
    assert choose({"onnx-int8-static": 0.95, "onnx-int8": 0.9}, 0.97, 20) == (
        "onnx",
        "fp32 ONNX: no int8 model reaches 97% label agreement (static int8 95%, dynamic int8 90% of 20 clips)",
    )


@pytest.mark.heavy
def test_docs_demo_backend_choice_block_runs(run_dir, capsys):
    """docs/demo.md's backend-choice block, as written, on the fixture's run in place of runs/demo. Heavy (~10 s
    unloaded): it exports, quantises and measures fold 2 (the fixture did fold 1; `test_backend_choice_...` checks
    the values)."""
    block = markdown_blocks(REPO / "docs" / "demo.md", "python")[1]
    assert 'FinishedRun("runs/demo")' in block
    exec(block.replace("runs/demo", str(run_dir)), {})
    lines = capsys.readouterr().out.splitlines()
    reasons = [json.loads((run_dir / f"fold{k}/stage2/best/onnx/backend.json").read_text())["reason"] for k in (1, 2)]
    assert lines == [f"1 {reasons[0]}", f"2 {reasons[1]}"]
