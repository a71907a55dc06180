"""tests/test_transformers_common.py without its sdist: a loud failure naming the cause, or a skip on purpose.

Each case runs pytest on that module in a fresh process whose sdist cache is an empty folder and whose pip can
reach no package index (`--no-index`, an index URL nobody listens on, no config file), as on a machine offline.
"""

import os
import subprocess
import sys
from pathlib import Path

import transformers


REPO = Path(__file__).resolve().parents[1]
OPT_OUT = "FRAME_ALIGNED_SKIP_TRANSFORMERS_COMMON"
MODULE = "tests/test_transformers_common.py"


def run_offline(tmp_path, **extra_env) -> tuple[subprocess.CompletedProcess, Path]:
    cache = tmp_path / "empty sdist cache"
    cache.mkdir()
    env = {k: v for k, v in os.environ.items() if k != OPT_OUT and not k.startswith("PIP_")}
    env.update(
        TRANSFORMERS_SDIST_CACHE=str(cache),
        PIP_NO_INDEX="1",
        PIP_INDEX_URL="http://127.0.0.1:9/",  # discard port: nothing answers
        PIP_CONFIG_FILE=os.devnull,
        PIP_RETRIES="0",
        PIP_TIMEOUT="2",
        **extra_env,
    )
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", MODULE, "-q", "-rfs", "-p", "no:cacheprovider"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return completed, cache


def test_without_the_sdist_the_run_fails_naming_the_cause_and_the_opt_out(tmp_path):
    completed, cache = run_offline(tmp_path)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, output[-3000:]  # 1: tests failed (not a collection error, not a pass)
    assert "FAILED tests/test_transformers_common.py::test_transformers_common_tests_ran" in output
    assert "\n1 failed in " in output and "passed" not in output and "skipped" not in output, output[-3000:]
    assert f"transformers=={transformers.__version__} sdist" in output
    assert "pip download" in output  # the cause: pip's own error
    assert f"{OPT_OUT}=1" in output  # and how to opt out
    assert not any(cache.iterdir())  # nothing half-downloaded left behind


def test_the_opt_out_skips_the_module_with_that_reason(tmp_path):
    completed, _ = run_offline(tmp_path, **{OPT_OUT: "1"})
    output = completed.stdout + completed.stderr
    assert completed.returncode == 5, output[-3000:]  # 5: no test ran in this one-module run; not a failure
    assert "\n1 skipped in " in output and "failed" not in output and "passed" not in output, output[-3000:]
    assert f"SKIPPED [1] {MODULE}" in output and f"{OPT_OUT}=1: transformers' common model tests" in output


def test_ci_and_make_do_not_opt_out_and_the_readme_says_how():
    for path in (".ci/run", "Makefile", "pyproject.toml"):
        assert OPT_OUT not in (REPO / path).read_text(), path
    assert f"{OPT_OUT}=1" in (REPO / "README.md").read_text()
