"""Issue 20: score.py's --help lost the backslash of its example's continued line (a non-raw docstring turned
`\\<newline>` into nothing). Every command-line entry point's --help renders, and shows its examples exactly as its
source writes them."""

import ast
import contextlib
import io
import runpy
import sys

import pytest
from helpers import REPO


# Every entry point with an argparse --help: (what to run, the file whose docstring is its description).
ENTRY_POINTS = [
    *(f"modeling.cli.{name}" for name in ("train", "score", "predict", "timeline", "compare_runs", "push", "sweep")),
    "modeling.cli.emobox_export",
    "modeling.app.launch",
    "modeling.training.config_reference",
    "benchmarks",
    *(f"benchmarks.{name}" for name in ("app_latency", "emotion_diarization", "gpu", "imbalance")),
]
SCRIPTS = ["train.py", "score.py", "predict.py", "push_to_hub.py", "compare_runs.py", "sweep.py", "app.py"]
EXAMPLES = sorted(f"examples/{path.name}" for path in (REPO / "examples").glob("*.py"))  # run as files


def module_file(module: str):
    if module.endswith(".py"):  # an example script
        return REPO / module
    path = REPO / (module.replace(".", "/") + ".py")
    return path if path.is_file() else REPO / module.replace(".", "/") / "__main__.py"


def docstring_source(path) -> tuple[str, str]:
    """(the docstring as written in the file, between its quotes; its value)."""
    tree = ast.parse(path.read_text())
    node = tree.body[0]
    assert isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant), f"{path}: no module docstring"
    segment = ast.get_source_segment(path.read_text(), node)
    prefix = segment[: segment.index(segment.lstrip("rRbBuU")[0])]
    return segment[len(prefix) + 3 : -3], node.value.value


@pytest.mark.parametrize(
    "path", [module_file(m) for m in ENTRY_POINTS + EXAMPLES] + [REPO / s for s in SCRIPTS], ids=str
)
def test_docstrings_of_entry_points_read_as_written(path):
    """A backslash in a non-raw docstring is an escape: `\\<newline>` vanishes, `\\t` becomes a tab. The kind of
    bug score.py's --help had: the text shown differs from the text written."""
    written, value = docstring_source(path)
    assert written == value, f'{path.relative_to(REPO)}: its docstring has escapes; make it a raw string (r""")'


def rendered_help(module: str) -> str:
    out = io.StringIO()
    argv = sys.argv
    sys.argv = [module, "--help"]
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
            if module.endswith(".py"):
                runpy.run_path(str(REPO / module), run_name="__main__")
            else:
                runpy.run_module(module, run_name="__main__", alter_sys=False)
    finally:
        sys.argv = argv
    assert exit_info.value.code in (0, None), f"{module} --help exited {exit_info.value.code}"
    return out.getvalue()


# In this process (runpy): ~6 CPU-s for all 15 once their imports are loaded (measured; it was marked heavy as "a fresh
# interpreter per entry point", which it is not).
@pytest.mark.filterwarnings("ignore:'benchmarks.gpu' found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("module", ENTRY_POINTS + EXAMPLES)
def test_every_help_renders_its_examples_as_written(module):
    shown = rendered_help(module)
    assert shown.startswith("usage:"), shown[:200]
    written, _ = docstring_source(module_file(module))
    examples = [line.rstrip() for line in written.splitlines() if line.lstrip().startswith(("python ", "torchrun "))]
    last = [line.strip() for line in written.splitlines() if line.strip()][-1]
    if last in shown:  # the whole docstring is the description
        for number, line in enumerate(examples):
            assert line in shown, f"{module} --help does not show {line!r}"
            continued = written.splitlines()[written.splitlines().index(line) + 1]
            if line.endswith("\\"):
                assert line + "\n" + continued.rstrip() in shown, f"{module}: continued example {number} broken"
