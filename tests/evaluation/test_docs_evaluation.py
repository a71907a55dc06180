"""docs/evaluation_breakdowns_calibration.md runs as written: its python blocks in-process, its bash block in a
folder laid out like a checkout after `make demo` (a tiny calibrated, finished `runs/demo/fold1` stands in for the
demo run)."""

import json
import os
import subprocess
import sys

import pytest
from helpers import REPO, markdown_blocks, tiny_frame_aligned_model

from modeling.collator import make_feature_extractor
from modeling.rundir.atomic import atomic_write_json
from modeling.rundir.integrity import write_manifest


PAGE = REPO / "docs" / "evaluation_breakdowns_calibration.md"


def test_python_blocks_run(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    blocks = markdown_blocks(PAGE, "python")
    assert len(blocks) == 3
    for code in blocks:
        exec(compile(code, str(PAGE), "exec"), {})
    out = capsys.readouterr().out
    assert "Worst speaker: a" in out and "too small for an interval" in out and "SNR 5.00 dB" in out


@pytest.mark.slow
@pytest.mark.heavy
def test_bash_block_runs_as_written(tmp_path):
    """Heavy: spawns score.py, which scores 6 clips clean and under 4 perturbations (≈ 20 s alone, minutes under
    load); the same code paths run in make test through tests/evaluation/test_evaluation.py's --perturb test."""
    for name in ("data", "configs", "score.py"):
        (tmp_path / name).symlink_to(REPO / name)
    best = tmp_path / "runs" / "demo" / "fold1" / "stage2" / "best"
    tiny_frame_aligned_model("wav2vec2", calibration_temperature=0.5).save_pretrained(best)
    make_feature_extractor().save_pretrained(best)
    write_manifest(best)
    speakers = {"train": ["m3", "m4", "m5"], "validation": ["m2"], "test": ["m1"]}  # the demo's fold 1
    atomic_write_json(best.parent.parent / "metrics.json", {"checkpoint": "fold1/stage2/best", "speakers": speakers})
    (block,) = markdown_blocks(PAGE, "bash")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
    }
    process = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert process.returncode == 0, process.stderr[-3000:]
    scores = json.loads((tmp_path / "runs" / "demo" / "robustness" / "scores.json").read_text())
    assert scores["n"] == 6 and scores["calibration"]["fold1"]["temperature"] == 0.5
    assert list(scores["perturbations"]) == [
        "noise:snr_db=10",
        "telephone",
        "mp3:compression_level=0.9",
        "reverb:rt60_s=0.6",
    ]
    assert scores["perturbations"]["noise:snr_db=10"]["measured"]["mean_snr_db"] == pytest.approx(10, abs=0.01)
