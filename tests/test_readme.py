"""The README is the repository's front page: at most ~200 lines, the two commands exactly as the Makefile and CI run
them, every link pointing at a file of the repository, and its command blocks the same lines as the documentation
pages whose blocks run (tests/test_docs_pages.py runs or registers every block of the README and the pages)."""

import re

from helpers import REPO, markdown_blocks


README = REPO / "README.md"


def test_the_readme_fits_two_screens():
    assert len(README.read_text().splitlines()) <= 200


def test_the_two_commands_are_the_makefile_targets_ci_runs():
    first = markdown_blocks(README, "bash")[0]
    assert [line.split("#")[0].strip() for line in first.splitlines()] == ["make demo", "make test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo: setup\n\t\$\(PY\) train\.py --config configs/demo\.yaml", makefile, re.M)
    assert re.search(r"^test: setup\n\t\$\(PY\) -m pytest tests ", makefile, re.M)
    assert (REPO / ".ci" / "run").read_text().rstrip().endswith("make test")


def test_every_link_of_the_readme_resolves():
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text())
    local = [link for link in links if not link.startswith(("http://", "https://"))]
    assert local, "the README links no documentation page"
    assert [link for link in local if not (REPO / link).exists()] == []


def _commands(path, program: str) -> list[str]:
    lines = [line for block in markdown_blocks(path, "bash") for line in block.splitlines()]
    return [line for line in lines if line.startswith(f"python {program} ")]


def test_the_readme_quick_starts_are_lines_of_the_pages_that_run_them():
    """The README's push and predict blocks are registered as not run by the runner: they must stay copies of the
    lines in docs/publishing.md and docs/inference.md, which run."""
    for program, page in (("push_to_hub.py", "publishing.md"), ("predict.py", "inference.md")):
        in_readme = _commands(README, program)
        assert in_readme and set(in_readme) <= set(_commands(REPO / "docs" / page, program)), program


def test_the_install_section_names_every_extra():
    """A user reads which extras exist in the README's Install section; pyproject.toml is the source (a new extra
    must be named there: the fresh-user try found `[app]` and `[vad]` missing)."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    install = README.read_text().split("## Install", 1)[1].split("\n## ", 1)[0]
    assert sorted(name for name in extras if f"`[{name}]`" not in install) == []
