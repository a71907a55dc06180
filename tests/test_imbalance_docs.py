"""docs/imbalance_and_soft_labels.md: its python blocks run as written, its YAML block is a valid stage config
(cheap: no training; the page has no bash block)."""

import yaml
from helpers import REPO, markdown_blocks

from modeling.training.run_config import resolve_config


PAGE = REPO / "docs" / "imbalance_and_soft_labels.md"


def test_python_blocks_run():
    for block in markdown_blocks(PAGE, "python"):
        exec(compile(block, str(PAGE), "exec"), {})


def test_yaml_block_is_a_valid_config(tmp_path):
    (block,) = markdown_blocks(PAGE, "yaml")
    path = tmp_path / "page.yaml"
    path.write_text(yaml.safe_dump({"extends": str(REPO / "configs" / "demo.yaml"), **yaml.safe_load(block)}))
    config = resolve_config(path)
    stage2 = config["stage2"]
    assert (stage2["class_weights"], stage2["focal_gamma"], stage2["metric_for_best_model"]) == (
        "inverse_sqrt",
        2.0,
        "macro_f1",
    )
