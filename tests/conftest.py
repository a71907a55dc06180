"""Shared pytest configuration and fixtures (the loopback Hub). Helpers live in tests/helpers.py, shared runs in
tests/runs.py."""

import os


# Tests share 2 cores with each other's subprocesses: one intra-op thread each avoids oversubscription.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
from hub_server import HubServer  # noqa: E402
from huggingface_hub import HfApi, constants  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    """Issue 6 asks for a printed count of the bad audio inputs tried."""
    reports = [
        report
        for status in ("passed", "failed")
        for report in terminalreporter.stats.get(status, [])
        if getattr(report, "when", "call") == "call" and "test_audio.py::test_bad_input_matrix" in report.nodeid
    ]
    if reports:
        failed = sum(report.failed for report in reports)
        terminalreporter.write_line(
            f"audio input matrix: {len(reports)} inputs tried, {len(reports) - failed} handled as expected, "
            f"{failed} not"
        )
    faults = [
        report
        for status in ("passed", "failed")
        for report in terminalreporter.stats.get(status, [])
        if getattr(report, "when", "call") == "call" and "bad_input" in getattr(report, "keywords", {})
    ]
    if faults:
        failed = sum(report.failed for report in faults)
        terminalreporter.write_line(
            f"bad inputs and injected faults (@pytest.mark.bad_input): {len(faults)} tried, "
            f"{len(faults) - failed} handled as expected, {failed} not"
        )


@pytest.fixture
def hub(monkeypatch):
    """A loopback Hub; this process's huggingface_hub talks to it and nowhere else (CI exports HF_HUB_OFFLINE=1).

    HF_ENDPOINT is read when huggingface_hub is imported, so the constants derived from it are patched here;
    downloads that must behave exactly like a user's run in a fresh process (see `hub_env`).
    """
    with HubServer() as server:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(
            constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the loopback Hub speaks LFS only
        yield server


@pytest.fixture
def api(hub) -> HfApi:
    return HfApi(endpoint=hub.url, token="dummy")


@pytest.fixture(scope="session")
def backbone_run(tmp_path_factory):
    """`backbone_run(model_type)`: the finished 1-fold train.py run of that backbone (`backbone_runs.py`), trained
    once per session and backbone, on first use."""
    from backbone_runs import train_backbone_run

    runs = {}

    def get(model_type: str):
        if model_type not in runs:
            runs[model_type] = train_backbone_run(model_type, tmp_path_factory.mktemp(f"run-{model_type}"))
        return runs[model_type]

    return get
