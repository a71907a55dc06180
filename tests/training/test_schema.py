"""The one config schema (modeling/training/schema.py): the loader, validation, TrainingArguments, model kwargs and
docs/configuration.md all follow from it; an option added there alone is loaded, checked, passed on, documented."""

import ast
import dataclasses
import math
import re
import sys
from pathlib import Path

import pytest
import torch
from helpers import REPO

from modeling.data.folds import Fold
from modeling.data.problems import CheckError
from modeling.training import config_reference, schema
from modeling.training.run_config import DEFAULTS, resolve_config
from modeling.training.stage import stage_model_kwargs, stage_title, training_arguments


DEMO = REPO / "configs" / "demo.yaml"


def test_committed_reference_page_is_the_generated_one():
    """docs/configuration.md is generated; after a schema change run the command the page names."""
    assert (REPO / "docs" / "configuration.md").read_text() == config_reference.reference_page(), (
        "docs/configuration.md is stale: run `python -m modeling.training.config_reference --write`"
    )


def test_reference_page_command_prints_and_writes_the_page(capsys, monkeypatch, tmp_path):
    assert config_reference.main([]) == 0 and capsys.readouterr().out == config_reference.reference_page()
    monkeypatch.setattr(config_reference, "PAGE", tmp_path / "configuration.md")
    assert config_reference.main(["--write"]) == 0
    assert (tmp_path / "configuration.md").read_text() == config_reference.reference_page()


def test_defaults_cover_every_declared_option_once():
    keys = [option.key for option in schema.all_options()]
    assert len(keys) == len(set(keys))
    flat = {"seed"} | {f"{section}.{name}" for section in schema.SECTIONS for name in DEFAULTS[section]}
    assert flat == set(keys)
    assert DEFAULTS["stage2"]["pooling"] == "cls_attention" and DEFAULTS["stage1"]["pooling"] == "attentive"
    assert "from_run" in DEFAULTS["stage1"] and "from_run" not in DEFAULTS["stage2"]


@pytest.mark.parametrize("ratio, steps, expected_warmup", [(0.25, 40, 10), (0.1, 204, 21), (0.0, 10, 0)])
def test_warmup_ratio_is_a_fraction_of_the_steps(tmp_path, ratio, steps, expected_warmup):
    """stage.py passes warmup_ratio to TrainingArguments' warmup_steps (transformers 5 has no warmup_ratio and reads a
    float in [0, 1) as a fraction): the learning rate must rise linearly over ceil(ratio * steps) steps."""
    config = resolve_config(DEMO, [f"stage1.warmup_ratio={ratio}", "stage1.backbone_learning_rate=1.0"])
    args = training_arguments(config, "stage1", Fold(1, (), (), ()), tmp_path)
    assert args.get_warmup_steps(steps) == expected_warmup == math.ceil(ratio * steps)
    from transformers import get_scheduler

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=args.learning_rate)
    scheduler = get_scheduler(args.lr_scheduler_type, optimizer, args.get_warmup_steps(steps), steps)
    rates = []
    for _ in range(steps):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    if expected_warmup:
        assert rates[expected_warmup // 2] == pytest.approx((expected_warmup // 2) / expected_warmup)
        assert max(rates) == pytest.approx(1.0) and rates.index(max(rates)) == expected_warmup
    else:
        assert rates[0] == pytest.approx(1.0)


@pytest.mark.parametrize("pooling", ["mean", "attentive", "self_attention"])
def test_stage_titles_name_the_configured_pooling(pooling):
    config = resolve_config(DEMO, [f"stage1.pooling={pooling}"])
    assert stage_title("stage1", config["stage1"]) == f"stage 1 ({pooling} pooling, CE)"
    assert stage_title("stage2", config["stage2"]) == "stage 2 (cls_attention pooling, CE + 0.05·EAL + 0.05·FUAL)"
    no_aux = resolve_config(DEMO, ["stage2.pooling=mean", "stage2.eal_weight=0", "stage2.fual_weight=0"])
    assert stage_title("stage2", no_aux["stage2"]) == "stage 2 (mean pooling, CE)"


@pytest.mark.parametrize(
    "override, nearest",
    [
        ("stage2.eal_margn=0.5", "stage2.eal_margin"),
        ("stage1.warmup_ration=0.2", "stage1.warmup_ratio"),
        ("training.logging_step=5", "training.logging_steps"),
        ("data.loader_arg={}", "data.loader_args"),
        ("stage2.per_device_train_batchsize=3", "stage2.per_device_train_batch_size"),
        ("sed=3", "seed"),
    ],
)
def test_unknown_keys_name_the_nearest_valid_key(override, nearest):
    with pytest.raises(CheckError) as caught:
        resolve_config(DEMO, [override])
    (problem,) = caught.value.problems
    assert problem.key == override.split("=")[0] and problem.blocking
    assert f"did you mean {nearest!r}?" in problem.message


def test_a_float_option_takes_yaml_exponent_strings_and_each_bad_value_is_named():
    config = resolve_config(DEMO, ["stage2.pooling_learning_rate=3e-4"])  # "3e-4" is a string to PyYAML
    assert config["stage2"]["pooling_learning_rate"] == pytest.approx(3e-4)
    with pytest.raises(CheckError) as caught:
        resolve_config(
            DEMO,
            ["data.loader=folders", "data.num_folds=0", "seed=1.5", "training.save_total_limit=0", "stage1.epochs=0"],
        )
    keys = {problem.key: problem.value for problem in caught.value.problems}
    assert keys == {
        "data.loader": "folders",
        "data.num_folds": 0,
        "seed": 1.5,
        "training.save_total_limit": 0,
        "stage1.epochs": 0,
    }
    message = str(caught.value)
    assert "data.loader must be one of ['iemocap'," in message and "got 'folders'" in message
    assert "training.save_total_limit must be null (keep all) or an integer >= 1, got 0." in message


def test_an_option_added_to_the_schema_alone_is_loaded_checked_passed_on_and_documented(monkeypatch, tmp_path):
    """What schema.py's docstring promises: one declaration, no other file touched."""
    extended = dataclasses.make_dataclass(
        "Stage2Settings",
        [("my_margin", float, schema.option(0.5, "A new margin.", minimum=0, to_model="my_margin"))],
        bases=(schema.SECTIONS["stage2"],),
    )
    monkeypatch.setitem(schema.SECTIONS, "stage2", extended)
    import modeling.training.run_config as run_config

    monkeypatch.setattr(run_config, "DEFAULTS", schema.defaults())
    config = run_config.resolve_config(DEMO, ["stage2.my_margin=2e-1"])
    assert config["stage2"]["my_margin"] == pytest.approx(0.2)
    assert stage_model_kwargs(config, "stage2", ["a", "b"])["my_margin"] == pytest.approx(0.2)
    with pytest.raises(CheckError, match=r"stage2.my_margin must be a number >= 0, got -1"):
        run_config.resolve_config(DEMO, ["stage2.my_margin=-1"])
    assert "| `my_margin` | – | `0.5` | a number >= 0 | A new margin. Model config `my_margin`. |" in (
        config_reference.reference_page()
    )


def test_training_arguments_come_from_the_schema_declarations(tmp_path):
    """Every `to_args` option reaches its TrainingArguments field(s) with the configured value."""
    overrides = [
        "stage2.epochs=3",
        "stage2.batch_size=5",
        "stage2.eval_batch_size=7",
        "stage2.gradient_accumulation_steps=2",
        "stage2.backbone_learning_rate=2e-5",
        "stage2.pooling_learning_rate=4e-4",
        "stage2.classifier_learning_rate=6e-4",
        "stage2.weight_decay=0.02",
        "stage2.warmup_ratio=0.3",
        "stage2.lr_scheduler_type=cosine",
        "training.logging_steps=7",
        "training.save_total_limit=3",
    ]
    config = resolve_config(DEMO, overrides)
    args = training_arguments(config, "stage2", Fold(1, (), (), ()), tmp_path)
    got = (
        args.num_train_epochs,
        args.per_device_train_batch_size,
        args.per_device_eval_batch_size,
        args.gradient_accumulation_steps,
        args.learning_rate,
        args.backbone_learning_rate,
        args.pooling_learning_rate,
        args.classifier_learning_rate,
        args.weight_decay,
        args.warmup_steps,
        str(args.lr_scheduler_type.value),
        args.logging_steps,
        args.save_total_limit,
    )
    assert got == (3, 5, 7, 2, 2e-5, 2e-5, 4e-4, 6e-4, 0.02, 0.3, "cosine", 7, 3)
    config["stage2"]["eval_batch_size"] = None
    assert training_arguments(config, "stage2", Fold(1, (), (), ()), tmp_path).per_device_eval_batch_size == 5


# Modules that act on the config's settings (the schema's users). Outside them, no module of modeling/ spells an
# option's name: a second owner of an option is what the schema replaced. Names that are ordinary words of other
# modules (a pipeline's `batch_size`, a run's `folds`) are left out of the scan.
USERS = {
    "modeling/training/schema.py",
    "modeling/training/run_config.py",
    "modeling/training/config_checks.py",
    "modeling/training/stage.py",
    "modeling/training/stage0.py",  # stage 0 (FLEA): its section's settings
    "modeling/training/experiment.py",
    "modeling/training/checkpoints.py",
    "modeling/training/scoring.py",
    "modeling/training/results.py",
    "modeling/prefix_cache/trainer.py",
    "modeling/prefix_cache/cache.py",
    "modeling/publishing/model_card.py",  # reads a checkpoint's config.json (eal_weight, ...) for the card
    "modeling/publishing/public.py",
    "modeling/evaluation/cross_corpus.py",  # reads a config's data section
    "modeling/evaluation/emobox_export.py",  # reads a finished run's data.loader_args (its EmoBox corpus)
    "modeling/training/selection.py",  # metric_for_best_model → the TrainingArguments that select on it
    "modeling/training/sweep.py",  # stage1.from_run of the runs that share the first run's stage 1
    "modeling/trainer/loss_options.py",  # the same names are FrameAlignedTrainingArguments fields (Trainer users)
    "modeling/trainer/sampling.py",  # class_balanced_sampling, a FrameAlignedTrainingArguments field too
    "modeling/trainer/lora.py",  # model.lora's own checks, and the stages' cache_frozen_prefix it cannot train with
}
ORDINARY_WORDS = {
    "seed", "root", "loader", "folds", "speakers", "pooling", "epochs", "batch_size", "bf16", "fp16", "weight_decay",
    "name_or_path", "num_folds", "layer", "learning_rate",
}  # fmt: skip


def test_no_option_is_spelled_outside_the_schema_and_its_users():
    names = {option.name for option in schema.all_options()} - ORDINARY_WORDS
    found = []
    for path in sorted((REPO / "modeling").rglob("*.py")):
        relative = str(path.relative_to(REPO))
        if relative in USERS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append(f"{relative}:{node.lineno}: {node.value!r}")
    assert not found, "options spelled outside the schema and its users:\n" + "\n".join(found)


def test_loader_and_validation_spell_no_option_of_the_stages():
    """run_config.py (the loader) and config_checks.py (the validation) derive everything from the schema."""
    names = {option.name for section in schema.STAGES for option in schema.options(section).values()}
    names -= {"epochs"}  # --max-epochs caps it
    for relative in ("modeling/training/run_config.py", "modeling/training/config_checks.py"):
        tree = ast.parse((REPO / relative).read_text())
        spelled = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in names}
        assert not spelled, (relative, spelled)
        assert not re.search(r"\.startswith\(", (REPO / relative).read_text()), relative


def test_schema_needs_only_the_standard_library():
    """Importing the schema costs nothing: choices owned by other modules are looked up when a value is checked."""
    tree = ast.parse(Path(schema.__file__).read_text())
    top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    modules = {alias.name for node in top_level if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in top_level if isinstance(node, ast.ImportFrom)}
    assert modules <= set(sys.stdlib_module_names), modules
