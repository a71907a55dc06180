"""The project's dependencies pinned at their declared lower bounds, for `make test-lowest` (tests/README.md).

    python tests/lowest_pins.py [--extras onnx,lora] > pins.txt

pyproject.toml is the one owner of the bounds: each requirement of `[project] dependencies` (and of the extras named)
is printed with its lower bound as `==` ("transformers>=5.23" → "transformers==5.23"); one without a lower bound is
printed bare (pip takes the newest that fits the others); environment markers are kept. torch is left out (the
Makefile installs it first: the CPU wheel, as `make setup` does). A bound that pip cannot install together with the
others makes `pip install -r` refuse, which is what the target is for.
"""

import argparse
import re
import sys
from pathlib import Path


try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SKIPPED = {"torch"}
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")


def lowest_pin(requirement: str) -> str | None:
    """`requirement` (PEP 508) with its lower bound as `==`; None for a skipped package or the project itself.

    Raises:
        ValueError: a requirement this reader does not understand, or one with two lower bounds (named). An upper
            bound is dropped ("gradio>=6.31,<7" → "gradio==6.31").
    """
    match = _REQUIREMENT.match(requirement)
    if not match:
        raise ValueError(f"pyproject.toml: cannot read the requirement {requirement!r}")
    name, extras, specifiers, marker = match.groups()
    if name.lower() in SKIPPED or name.lower() == "frame-aligned-ser":
        return None
    lower = [s.strip()[2:].strip() for s in specifiers.split(",") if s.strip().startswith(">=")]
    if len(lower) > 1:
        raise ValueError(f"pyproject.toml: {requirement!r} has more than one lower bound")
    pin = f"{name}{extras or ''}" + (f"=={lower[0]}" if lower else "")
    return pin + (f" {marker}" if marker else "")


def lowest_pins(extras: list[str], pyproject: Path = PYPROJECT) -> list[str]:
    """The pins of the core dependencies and `extras` (each package once, in pyproject.toml's order).

    Raises:
        KeyError: an extra pyproject.toml does not declare (named).
    """
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        if extra not in project["optional-dependencies"]:
            raise KeyError(f"pyproject.toml declares no extra {extra!r}: {sorted(project['optional-dependencies'])}")
        requirements += project["optional-dependencies"][extra]
    pins, seen = [], set()
    for requirement in requirements:
        pin = lowest_pin(requirement)
        name = pin and _REQUIREMENT.match(pin).group(1).lower().replace("_", "-")
        if pin and name not in seen:
            pins.append(pin)
            seen.add(name)
    return pins


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extras", default="onnx,lora", help="comma-separated extras to pin too (default onnx,lora)")
    args = parser.parse_args(argv)
    print("\n".join(lowest_pins([e for e in args.extras.split(",") if e])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
