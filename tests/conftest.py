"""Shared pytest configuration. Helpers for tests live in tests/helpers.py."""

import os

# Tests share 2 cores with each other's subprocesses: one intra-op thread each avoids oversubscription.
os.environ.setdefault("OMP_NUM_THREADS", "1")


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
            f"audio input matrix: {len(reports)} inputs tried, {len(reports) - failed} handled as expected, {failed} not"
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
