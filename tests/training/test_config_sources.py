"""Issue 20: a bad value given with --set was reported as "in configs/demo.yaml"; each problem names where its value
came from (the config file, or the command-line argument), and the listing's first line names the real source."""

import pytest
from helpers import REPO

from modeling.training.config_checks import resolve_checked_config
from modeling.training.run_config import ConfigError, resolve_config


DEMO = str(REPO / "configs" / "demo.yaml")


@pytest.mark.bad_input
@pytest.mark.parametrize("resolve", [resolve_config, resolve_checked_config])
def test_a_bad_value_from_set_names_set_not_the_config_file(resolve):
    with pytest.raises(ConfigError) as error:
        resolve(DEMO, ["stage2.epochs=many"])
    message = str(error.value)
    assert message.startswith("1 problem(s) in the command line (nothing trained):"), message
    assert "stage2.epochs must be" in message and "got 'many'. (from --set stage2.epochs=many)" in message
    assert "demo.yaml" not in message


@pytest.mark.bad_input
def test_problems_from_the_file_and_the_command_line_each_name_theirs(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(f"extends: {DEMO}\nstage1:\n  epochs: -1\n")
    with pytest.raises(ConfigError) as error:
        resolve_config(config, ["stage2.pooling=maxx", "stage2.eal_wieght=1"], seed="x")
    message = str(error.value)
    assert message.startswith(f"4 problem(s) in {config} and the command line (nothing trained):"), message
    lines = message.splitlines()
    assert any("stage1.epochs must be" in line and "(from" not in line for line in lines)  # the file's own
    assert any("stage2.pooling" in line and line.endswith("(from --set stage2.pooling=maxx)") for line in lines)
    assert any("'stage2.eal_wieght'" in line and line.endswith("(from --set stage2.eal_wieght=1)") for line in lines)
    assert any(line.startswith("  - seed must be") and line.endswith("(from --seed x)") for line in lines)
