"""docs/emobox.md runs as written, in a folder laid out as the page assumes: `EmoBox/data/cafe` (EmoBox's files,
generated in its layout by tests/data/test_emobox.py's writer) and `CaFE/` (the user's copy: real polish3 clips)."""

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO, markdown_blocks
from test_emobox import polish3_rows, write_corpus


PAGE = REPO / "docs" / "emobox.md"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("emobox_docs")
    six = {s: polish3_rows([s], 6) for s in ("m1", "m2")}
    folds = {1: {"train": six["m1"][:3] + six["m2"][:3], "test": six["m1"][3:] + six["m2"][3:]}}
    write_corpus(root / "EmoBox", root / "copies", "cafe", folds)
    (root / "copies" / "cafe").rename(root / "CaFE")
    for name in ("data", "configs", "train.py", "score.py"):
        (root / name).symlink_to(REPO / name)
    return root


def test_python_block_runs(workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    (code,) = markdown_blocks(PAGE, "python")
    exec(compile(code, str(PAGE), "exec"), {})
    out = capsys.readouterr().out
    assert "[1] ['anger', 'fear', 'neutral'] {1: ['m1', 'm2']}" in out and "'split_fold1'" in out


@pytest.mark.slow
@pytest.mark.heavy
def test_bash_block_runs(workspace):
    """Heavy: trains configs/demo.yaml's two stages on the generated corpus, scores and exports it (minutes on 2
    loaded cores); tests/data/test_emobox.py trains the same path with a tinier config in make test."""
    (block,) = markdown_blocks(PAGE, "bash")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
    }
    process = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=workspace, env=env, capture_output=True, text=True, timeout=900
    )
    assert process.returncode == 0, process.stderr[-3000:]
    results = json.loads((workspace / "runs" / "cafe" / "results.json").read_text())
    assert results["speaker_dependent"] == {"1": ["m1", "m2"]}
    summary = json.loads((workspace / "runs" / "cafe" / "emobox" / "summary.json").read_text())
    assert summary["speaker_dependent_folds"] == ["fold1"]
