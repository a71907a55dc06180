"""docs/configuration.md, generated from the config schema (modeling/training/schema.py): one table per section
with each option's default(s), allowed values, documentation and where its value goes.

    python -m modeling.training.config_reference           # print the page
    python -m modeling.training.config_reference --write   # write docs/configuration.md (a test compares)
"""

import argparse
import sys
from pathlib import Path

from .run_config import allowed_text
from .schema import SECTIONS, STAGES, Option, options, reserved_training_arguments


PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def _literal(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value).replace("'", "")


_ABSENT = object()


def _row(o: Option, defaults: list) -> str:
    """A table row: key, default(s) ("–": not in that section), allowed values, doc and where the value goes."""
    target = ""
    if o.meta["to_model"]:
        target = f" Model config `{o.meta['to_model']}`."
    elif o.meta["to_args"]:
        target = " TrainingArguments " + ", ".join(f"`{name}`" for name in o.meta["to_args"]) + "."
    cells = [f"`{o.name}`", *("–" if d is _ABSENT else f"`{_literal(d)}`" for d in defaults)]
    cells += [allowed_text(o).replace("|", "\\|"), o.doc + target]
    return "| " + " | ".join(cells) + " |"


def reference_page() -> str:
    """docs/configuration.md: one table per section, generated from the schema."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from modeling/training/schema.py by `python -m modeling.training.config_reference --write`; "
        "do not edit by hand. -->",
        "",
        "A `train.py` config is a YAML file with the sections below; every key is optional except `data.loader`, "
        "`data.root` and one of `model.name_or_path` / `model.random_init`. `extends: other.yaml` inherits another "
        "file (paths relative to the file), `--set stage2.epochs=5` overrides a value (YAML), and the resolved "
        "config is recorded in `RUN/config.yaml` and `results.json`. An unknown key is an error naming the nearest "
        "valid key; every problem is listed at once, before anything is written.",
        "",
        "`training:`, `stage1:` and `stage2:` also take any `transformers.TrainingArguments` field (`report_to`, "
        "`run_name`, `eval_steps`, ...; a stage's value wins over `training:`'s; `training:`'s reach stage 0 "
        "too, but for its evaluation and sampling), except those train.py sets itself: "
        + ", ".join(f"`{k}` ({v})" for k, v in sorted(reserved_training_arguments().items()))
        + ".",
        "",
        "| key | default | allowed | |",
        "|---|---|---|---|",
        _row(options("")["seed"], [options("")["seed"].default]),
    ]
    for section in (name for name in SECTIONS if name not in STAGES):  # data, model, training, stage0
        summary = SECTIONS[section].__doc__.split(" ", 1)[-1]
        lines += ["", f"## `{section}:`", "", summary[0].upper() + summary[1:], ""]
        lines += ["| key | default | allowed | |", "|---|---|---|---|"]
        lines += [_row(o, [o.default]) for o in options(section).values()]
    stage1, stage2 = options("stage1"), options("stage2")
    lines += [
        "",
        "## `stage1:` and `stage2:`",
        "",
        "One stage's head, losses and optimisation (stage 2 starts from stage 1's best model). "
        "Also takes any `TrainingArguments` field.",
        "",
        "| key | stage 1 default | stage 2 default | allowed | |",
        "|---|---|---|---|---|",
    ]
    for name, o in {**stage1, **stage2}.items():
        lines.append(_row(o, [stage[name].default if name in stage else _ABSENT for stage in (stage1, stage2)]))
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Print or write docs/configuration.md from the config schema.")
    parser.add_argument("--write", action="store_true", help=f"Write {PAGE} instead of printing it.")
    args = parser.parse_args(argv)
    if args.write:
        PAGE.write_text(reference_page())
        print(f"wrote {PAGE}")
    else:
        print(reference_page(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["PAGE", "main", "reference_page"]
