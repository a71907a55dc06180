"""`python -m benchmarks` runs end to end (toy `--smoke` profile) and writes well-formed results.

Structure only: the ratios of a toy model on a shared CPU mean nothing, so no value is asserted.
"""

import json

import pytest

from benchmarks.__main__ import BENCHMARKS, main
from benchmarks.common import PROFILES


ROW_KEYS = {"name", "measured", "target", "target_kind", "reference", "met", "noise", "config", "note", "benchmark"}


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench") / "results.json"
    assert main(["--smoke", "--output", str(output)]) == 0
    return json.loads(output.read_text()), output.with_suffix(".md").read_text()


def test_entry_point_writes_json_and_markdown(smoke_report):
    report, markdown = smoke_report
    assert report["mode"] == "smoke"
    assert {"cpu", "cpu_cores", "torch", "transformers", "date"} <= set(report["machine"])
    assert list(report["benchmarks"]) == list(BENCHMARKS)
    for name, outcome in report["benchmarks"].items():
        assert not str(outcome.get("status", "")).startswith("failed"), (name, outcome.get("status"))
    assert report["summary"], "no ratio was measured"
    for row in report["summary"]:
        assert ROW_KEYS <= set(row)
        assert row["target_kind"] in ("<=", ">=", "within")
        assert isinstance(row["measured"], float) and row["met"] in (True, False)
    benchmarks_with_rows = {row["benchmark"] for row in report["summary"]}
    assert {"head_overhead", "padding", "frozen_prefix", "inference", "data_loading"} <= benchmarks_with_rows
    assert "| Benchmark | Measured | Target | Met |" in markdown
    assert markdown.count("\n| ") >= len(report["summary"]) + 1


def test_gpu_section_says_not_run_without_cuda_and_its_code_path_runs(smoke_report):
    import torch

    from benchmarks import gpu

    report, _ = smoke_report
    if not torch.cuda.is_available():
        assert report["benchmarks"]["gpu"]["status"] == gpu.NOT_RUN
    dry = gpu.run(PROFILES["smoke"], {}, device="cpu", dry_run=True)  # the CUDA code path, on the CPU
    assert set(dry["measurements"]) == {f"{dtype}/{attention}" for dtype, attention in gpu.VARIANTS}
    assert all(values["step_seconds"] > 0 for values in dry["measurements"].values())


def test_unknown_benchmark_is_rejected(tmp_path):
    assert main(["--smoke", "--only", "nope", "--output", str(tmp_path / "r.json")]) == 2
