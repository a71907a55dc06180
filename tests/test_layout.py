"""The house rules of docs/architecture.md that a one-line change can break: no import cycle between the project's
modules, no module over 500 lines, no function over 80 lines (the team's layout report, `../shared/hooks/`)."""

import subprocess
import sys

import pytest

from helpers import REPO


LAYOUT_REPORT = REPO.parent / "shared" / "hooks" / "layout_report.py"


@pytest.mark.skipif(not LAYOUT_REPORT.is_file(), reason=f"the team's layout report is not beside this checkout ({LAYOUT_REPORT})")
def test_no_import_cycle_no_long_module_no_long_function():
    report = subprocess.run([sys.executable, str(LAYOUT_REPORT), str(REPO)], capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    assert report.stdout.strip() == "", "layout rules broken:\n" + report.stdout
