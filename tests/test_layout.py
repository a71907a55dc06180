"""The house rules of docs/architecture.md that a one-line change can break: no import cycle between the project's
modules, no module over 500 lines, no function over 80 lines (`tests/layout_rules.py`, the team's layout report
vendored so that every clone enforces it), and ruff's lint and format rules (pyproject.toml)."""

import shutil
import subprocess
import sys
from pathlib import Path

from helpers import REPO


LAYOUT_RULES = Path(__file__).with_name("layout_rules.py")


def test_no_import_cycle_no_long_module_no_long_function():
    report = subprocess.run([sys.executable, str(LAYOUT_RULES), str(REPO)], capture_output=True, text=True, timeout=60)
    assert report.returncode == 0, report.stderr
    assert report.stdout.strip() == "", "layout rules broken:\n" + report.stdout


def _ruff() -> list[str]:
    found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert found, "ruff is not installed: pip install -e '.[test]'"
    return [found]


def test_ruff_lint_and_format():
    lint = subprocess.run([*_ruff(), "check", "."], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout[-4000:]
    formatted = subprocess.run(
        [*_ruff(), "format", "--check", "."], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert formatted.returncode == 0, formatted.stdout[-4000:]
