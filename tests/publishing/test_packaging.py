"""Publishing as a user does it: `push_to_hub.py --dry-run` on a machine without torch, and from a regular
(non-editable) install of the package run outside the repository (the model-card templates, the top-level
model_cards/, are package data)."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import REPO
from runs import write_run

from modeling.publishing.hub import describe_plan, plan_push
from modeling.publishing.run import load_run


DRY_RUN = ["--repo-id", "org/ser", "--dry-run"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("run"))


def dry_run(script: Path, run_dir: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, script.name, "--run-dir", str(run_dir), *DRY_RUN, *extra],
        cwd=script.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dry_run_needs_no_torch(run_dir, tmp_path):
    blocker = tmp_path / "no_torch"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text('import sys\n\nsys.modules["torch"] = None  # `import torch` fails\n')
    env = {**os.environ, "PYTHONPATH": str(blocker), "HF_HUB_OFFLINE": "1"}
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True, timeout=60)
    assert probe.returncode != 0 and "ModuleNotFoundError: import of torch halted" in probe.stderr  # the blocker works

    completed = dry_run(REPO / "push_to_hub.py", run_dir, env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    # the same plan as with torch (computed here), to the byte sizes and source paths of every file
    expected = describe_plan(plan_push(load_run(run_dir), "org/ser"))
    assert completed.stdout == expected + "Dry run: nothing was uploaded.\n"
    for line in ("org/ser-fold1 @ main (fold1):", "org/ser-fold2 @ main (fold2):"):
        assert line in completed.stdout
    for name in ("model.safetensors", "modeling_frame_aligned.py", "pipeline_frame_aligned.py", "split.json"):
        assert completed.stdout.count(f"  {name} ") == 2, name
    # per fold: README.md, the config.json with custom_pipelines and results.json without local paths
    assert completed.stdout.count("rendered") == 6


def test_regular_install_publishes_from_another_directory(run_dir, tmp_path):
    """A fresh virtualenv with the project installed non-editable (its dependencies come from this test's
    environment through a .pth file: no network), used from a folder that holds no repository."""
    source = tmp_path / "source"  # a copy: building in the repository would leave build/ and *.egg-info there
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("modeling", "model_cards"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], text=True
        ).strip()
    )
    (site / "dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n"
    )  # torch, transformers, ... (not `modeling`)
    probe = subprocess.run(
        [python, "-c", "import modeling"], capture_output=True, text=True, cwd=tmp_path, timeout=120
    )
    assert probe.returncode != 0, "the fresh virtualenv must not see the repository's editable install"
    pip = [
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
    ]
    installed = subprocess.run([*pip, str(source)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    for template in ("template.md", "overview.md"):  # the top-level model_cards/, shipped as package data
        installed = site / "modeling" / "publishing" / "model_cards" / template
        assert installed.read_bytes() == (REPO / "model_cards" / template).read_bytes(), template
    assert not list(site.glob("__editable__*"))

    elsewhere = tmp_path / "elsewhere"  # no repository here: only the thin wrapper script
    elsewhere.mkdir()
    shutil.copy(REPO / "push_to_hub.py", elsewhere)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    completed = subprocess.run(
        [python, "push_to_hub.py", "--run-dir", str(run_dir), *DRY_RUN, "--revision-per-fold"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    for line in (
        "org/ser @ main (overview of 2 fold branch(es) + fold1's checkpoint):",
        "org/ser @ fold1 (fold1):",
        "org/ser @ fold2 (fold2):",
    ):
        assert line in out
    assert out.count("  README.md ") == 3 and out.endswith("Dry run: nothing was uploaded.\n")
    # the remote code comes from the installed package, not from the repository
    assert out.count(f"{site / 'modeling' / 'pipeline_frame_aligned.py'}\n") == 3  # fold1, fold2, main's copy
    assert str(REPO / "modeling") not in out
