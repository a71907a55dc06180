"""The house rules of docs/architecture.md that a one-line change can break: no import cycle between the project's
modules, no module over 500 lines, no function over 80 lines (`tests/layout_rules.py`, the team's layout report
vendored so that every clone enforces it), and ruff's lint and format rules (pyproject.toml)."""

import ast
import re
import shutil
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
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


# ----------------------------------------------------------------------------------------------------------------
# The rules run on any clone: nothing here reads ../shared (the team's folder beside the repository)
# ----------------------------------------------------------------------------------------------------------------


def _clone(tmp_path: Path) -> Path:
    """The files git tracks, copied as a fresh clone has them, with no ../shared beside the copy."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    clone = tmp_path / "clone"
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file() and name.endswith((".py", ".toml", ".md")):
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, clone / name)
    assert not (clone.parent / "shared").exists()
    return clone


def _layout_report(root: Path) -> list[str]:
    report = subprocess.run(
        [sys.executable, str(root / "tests" / "layout_rules.py"), str(root)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert report.returncode == 0, report.stderr
    return report.stdout.split("\n") if report.stdout.strip() else []


def test_the_layout_rules_fail_on_a_clone_when_one_is_broken(tmp_path):
    """On a copy of the tracked files with no ../shared: clean as the repository is, then an import against the data
    flow (the core importing a command), a module over 500 lines and a function over 80 lines are each reported."""
    clone = _clone(tmp_path)
    assert _layout_report(clone) == []
    with open(clone / "modeling" / "frames.py", "a") as f:  # frames ← … ← cli.train: now a cycle
        f.write("\nfrom modeling.cli import train  # noqa\n")
    long_function = "def long_function():\n" + "    x = 1\n" * 80
    (clone / "modeling" / "data" / "long.py").write_text(long_function + "\n" * 420)
    report = _layout_report(clone)
    assert any(
        line.startswith("import cycle: ") and "modeling.frames" in line and "modeling.cli.train" in line
        for line in report
    )
    assert "module over 500 lines: modeling/data/long.py" in report
    assert "function over 80 lines: modeling/data/long.py:long_function (81)" in report


def test_ruff_is_clean_after_make_demo_writes_runs(tmp_path):
    """`make demo` writes runs/ at the root: ruff then took the tests' `runs` helper module for first-party and
    `make test` failed its lint after the README's first command (29 I001 errors). No folder decides an import's
    section (pyproject.toml: `src = []`); the same for other folders a user makes (data/, helpers/)."""
    clone = _clone(tmp_path)
    for folder in ("runs/demo/fold1", "helpers", "hub_server"):
        (clone / folder).mkdir(parents=True)
    lint = subprocess.run(
        [*_ruff(), "check", "--no-cache", "."], cwd=clone, capture_output=True, text=True, timeout=120
    )
    assert lint.returncode == 0, lint.stdout[-4000:]


def test_the_model_card_templates_have_one_source():
    """The top-level model_cards/ holds the templates (the wheel carries them: tests/publishing/test_packaging.py); no
    second copy inside the package, which the loader would prefer."""
    from modeling.publishing import model_card

    assert sorted(p.name for p in (REPO / "model_cards").glob("*.md")) == ["overview.md", "template.md"]
    assert not (REPO / "modeling" / "publishing" / "model_cards").exists()
    assert model_card.MODEL_CARDS == REPO / "model_cards"


# Imported but not declared on purpose: an optional fallback, never required.
UNDECLARED_IMPORTS = {
    "torchcodec": "an optional decoder for what libsndfile cannot read (m4a, webm); PyPI's builds do "
    "not load with CPU torch 2.13, so it is never required"
}


def test_every_third_party_import_is_a_declared_dependency():
    """A module imported by the package, the scripts, the benchmarks or the examples comes from a distribution that
    pyproject.toml declares (a dependency or an extra), not one that only arrives with another package (httpx2 came
    with huggingface_hub, pyarrow with datasets, scipy with scikit-learn)."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11's TOML reader")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    declared = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}
    distributions = packages_distributions()
    local = {"modeling", "benchmarks", "helpers", *(p.stem for p in REPO.glob("*.py"))}
    files = [
        *(path for path in REPO.glob("*.py") if path.name != "setup.py"),  # setup.py: the build's own setuptools
        *(p for d in ("modeling", "benchmarks", "examples") for p in REPO.glob(f"{d}/**/*.py")),
    ]
    undeclared = {}
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names} - set(sys.stdlib_module_names) - local:
                owners = {d.lower().replace("_", "-") for d in distributions.get(top, [])}
                if not owners & declared and top not in UNDECLARED_IMPORTS:
                    undeclared.setdefault(top, []).append(str(path.relative_to(REPO)))
    assert undeclared == {}


def test_every_path_the_documentation_cites_exists():
    """A repository path named in the README, the docs pages, tests/README.md or a module of the package, the
    benchmarks or the examples (docs/method.md, tests/data/test_folds.py, ...) exists in this repository."""
    cited = re.compile(
        r"(?<![\w./-])(?:docs|tests|modeling|configs|benchmarks|examples|model_cards)/[\w/.-]*\w\.(?:py|md|yaml)\b"
    )
    files = [REPO / "README.md", REPO / "tests" / "README.md", *REPO.glob("docs/*.md"), *REPO.glob("*.py")]
    files += [p for d in ("modeling", "benchmarks", "examples") for p in REPO.glob(f"{d}/**/*.py")]
    missing = sorted(
        f"{path.relative_to(REPO)}: {match}"
        for path in files
        for match in cited.findall(path.read_text())
        if not (REPO / match).exists()
    )
    assert missing == []


def test_every_import_of_a_project_name_resolves():
    """Every `from <project module> import NAME` (also those inside functions, which run only on some paths) names
    something that exists. After the Whisper merge moved FRAME_ALIGNED_MODELS, config_checks.py's import inside
    `lora_problems` still named its old home: every config with `model.lora` crashed with an ImportError, and no
    linter sees a name inside a function."""
    import importlib

    problems = []
    files = [*sorted((REPO / "modeling").rglob("*.py")), *sorted((REPO / "benchmarks").glob("*.py"))]
    for path in files:
        parts = path.relative_to(REPO).with_suffix("").parts
        package = parts if path.name == "__init__.py" else parts[:-1]
        package = package[:-1] if package[-1:] == ("__init__",) else package
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module and node.module.split(".")[0] in ("modeling", "benchmarks"):
                target = node.module
            else:
                continue
            module = importlib.import_module(target)
            for alias in node.names:
                if alias.name == "*" or hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{target}.{alias.name}")  # a submodule
                except ImportError:
                    problems.append(f"{path.relative_to(REPO)}:{node.lineno}: {target} has no {alias.name}")
    assert problems == []
