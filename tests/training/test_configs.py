"""Every shipped config resolves; IEMOCAP carries Table 2; the ablations are the five rows of Table 3."""

import pytest
from helpers import REPO

from modeling.training.run_config import ConfigError, resolve_config


CONFIGS = sorted((REPO / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_config_resolves(path):
    config = resolve_config(path)
    assert config["data"]["loader"] and config["data"]["root"]
    assert config["stage1"]["pooling"] == "attentive"


@pytest.mark.parametrize(
    "name, backbone",
    [
        ("iemocap", "facebook/wav2vec2-base"),
        ("iemocap_wavlm", "microsoft/wavlm-base-plus"),
        ("iemocap_hubert", "facebook/hubert-base-ls960"),
    ],
)
def test_iemocap_has_table2_values(name, backbone):
    config = resolve_config(REPO / "configs" / f"{name}.yaml")
    assert config["data"]["loader"] == "iemocap" and config["data"]["folds"] == "leave_one_session_out"
    assert config["model"]["name_or_path"] == backbone
    table2 = {
        "stage1": (40, 32, 1e-4, 1e-4, 5e-4, 1e-2, None),
        "stage2": (30, 32, 1e-5, 3e-4, 3e-4, 1e-2, 6),
    }
    for stage, expected in table2.items():
        s = config[stage]
        got = (
            s["epochs"],
            s["batch_size"],
            s["backbone_learning_rate"],
            s["classifier_learning_rate"],
            s["pooling_learning_rate"],
            s["weight_decay"],
            s["num_trainable_layers"],
        )
        assert got == expected, stage
    assert (config["stage2"]["eal_margin"], config["stage2"]["eal_weight"], config["stage2"]["fual_weight"]) == (
        0.8,
        0.05,
        0.05,
    )


def test_ablations_are_table3_rows():
    rows = {p.stem: resolve_config(p)["stage2"] for p in sorted((REPO / "configs" / "ablations").glob("*.yaml"))}
    summary = {name: (s["pooling"], s["eal_weight"], s["fual_weight"]) for name, s in rows.items()}
    assert summary == {
        "1_self_attention_pooling": ("self_attention", 0.0, 0.0),
        "2_cls_pooling": ("cls_attention", 0.0, 0.0),
        "3_cls_pooling_eal": ("cls_attention", 0.05, 0.0),
        "4_cls_pooling_fual": ("cls_attention", 0.0, 0.05),
        "5_cls_pooling_eal_fual": ("cls_attention", 0.05, 0.05),
    }
    assert all(s["epochs"] == 30 and s["backbone_learning_rate"] == 1e-5 for s in rows.values())


def test_overrides_and_command_line_values(tmp_path):
    config = resolve_config(
        REPO / "configs" / "demo.yaml",
        overrides=["stage2.eal_weight=0", "stage1.backbone_learning_rate=3e-4", "data.speakers=[m1, m2, m3]"],
        data_dir="elsewhere",
        max_epochs=1,
        seed=3,
    )
    assert config["stage2"]["eal_weight"] == 0.0
    assert config["stage1"]["backbone_learning_rate"] == pytest.approx(3e-4)  # "3e-4" is a string to PyYAML
    assert config["data"]["speakers"] == ["m1", "m2", "m3"] and config["data"]["root"] == "elsewhere"
    assert config["stage1"]["epochs"] == config["stage2"]["epochs"] == 1 and config["seed"] == 3


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "data: {loader: iemocap, root: x}\nmodel: {name_or_path: m}\nstage1: {epoch: 3}\n",
            r"unknown key 'stage1.epoch'; did you mean 'stage1.epochs'\? expected one of \[.*'epochs'",
        ),
        ("data: {loader: iemocap}\nmodel: {name_or_path: m}\n", "data.loader and data.root are required"),
        ("data: {loader: iemocap, root: x}\nmodel: {}\n", "set exactly one of model.name_or_path"),
        (
            "data: {loader: iemocap, root: x}\nmodel: {name_or_path: m}\nstage2: {pooling_learning_rate: fast}\n",
            r"stage2.pooling_learning_rate must be a number > 0, got 'fast'",
        ),
        (
            "data: {loader: iemocap, root: x}\nmodel: {name_or_path: m}\nstage1: {pooling: cls_attention}\n",
            "stage1.pooling must not be cls_attention",
        ),
        ("extends: missing.yaml\n", r"missing.yaml: config file does not exist"),
    ],
)
def test_invalid_configs_name_the_key(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        resolve_config(path)


# Values that would make a loss term or a setting a silent no-op (exit 0, the run's numbers not what it claims)
@pytest.mark.parametrize(
    "override, message",
    [
        # EAL = softplus(m − cos): at m = -3 every frame meets the margin, the term a near-constant 0.018..0.127
        ("stage2.eal_margin=-3", "stage2.eal_margin must be a number in (-1, 1], got -3."),
        ("stage2.eal_margin=-1", "stage2.eal_margin must be a number in (-1, 1], got -1."),
        ("stage1.eal_margin=1.5", "stage1.eal_margin must be a number in (-1, 1], got 1.5."),
        # EAL/FUAL are zero for a pooling other than CLS: stage 1 never has it
        (
            "stage1.eal_weight=0.1",
            "stage1.eal_weight is 0.1 but stage1.pooling is 'attentive': EAL is defined on cls_attention pooling "
            "only, so the term would be zero. Set stage1.eal_weight: 0 (stage 1 never uses cls_attention).",
        ),
        (
            "stage2.pooling=mean",
            "stage2.fual_weight is 0.05 but stage2.pooling is 'mean': FUAL is defined on cls_attention pooling only, "
            "so the term would be zero. Set stage2.fual_weight: 0 or stage2.pooling: cls_attention.",
        ),
        # a new (random) head that a rate of 0 leaves untrained; a stage 0 that hands stage 1 an unchanged backbone
        ("stage2.classifier_learning_rate=0", "stage2.classifier_learning_rate must be a number > 0, got 0."),
        ("stage1.pooling_learning_rate=0", "stage1.pooling_learning_rate must be a number > 0, got 0."),
        ("stage0.learning_rate=0", "stage0.learning_rate must be a number > 0, got 0."),
        # numpy's seeds are < 2**32 and each (fold, stage) adds up to 1000·fold + 500: a traceback after config.yaml
        ("seed=-1", "seed must be an integer in [0, 2147483647], got -1."),
        ("seed=4294967296", "seed must be an integer in [0, 2147483647], got 4294967296."),
    ],
)
def test_values_that_would_do_nothing_are_refused(override, message):
    """Refused before anything is written, and named as the command line's (also a rule tying two options together,
    such as stage2.pooling=mean with the file's EAL weight: the header must not blame the file)."""
    with pytest.raises(ConfigError) as caught:
        resolve_config(REPO / "configs" / "demo.yaml", overrides=[override])
    assert f"{message} (from --set {override})" in [problem.message for problem in caught.value.problems]
    assert caught.value.source == "the command line"


def test_the_ends_of_the_eal_margin_range():
    for margin in (1, 0.99, -0.99):
        assert (
            resolve_config(REPO / "configs" / "demo.yaml", [f"stage2.eal_margin={margin}"])["stage2"]["eal_margin"]
            == margin
        )


def test_bad_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match="--set expects KEY=VALUE"):
        resolve_config(REPO / "configs" / "demo.yaml", overrides=["stage2.epochs"])


def test_table6_configs_are_flea_alone_and_flea_plus_the_method_on_the_methods_protocol():
    """FLEA's best row (HuBERT-base layer 9, 50 clusters, 20 % masked) in stage 0; flea_plus_alignment differs from
    iemocap_hubert (the method) only by stage 0, flea from flea_plus_alignment only by stage 2's head and losses."""
    names = ("iemocap_hubert", "flea", "flea_plus_alignment")
    method, flea, both = (resolve_config(REPO / "configs" / f"{name}.yaml") for name in names)
    for config in (flea, both):
        stage0 = config["stage0"]
        assert config["model"]["name_or_path"] == "facebook/hubert-base-ls960"
        assert (stage0["enabled"], stage0["layer"], stage0["clusters"], stage0["mask_time_prob"]) == (True, 9, 50, 0.2)
    assert not method["stage0"]["enabled"]
    assert {key: value for key, value in both.items() if key != "stage0"} == {
        key: value for key, value in method.items() if key != "stage0"
    }
    assert {key: value for key, value in flea.items() if key != "stage2"} == {
        key: value for key, value in both.items() if key != "stage2"
    }
    differing = {key for key in flea["stage2"] if flea["stage2"][key] != both["stage2"][key]}
    assert differing == {"pooling", "eal_weight", "fual_weight", "pooling_learning_rate", "classifier_learning_rate"}
    assert (flea["stage2"]["pooling"], flea["stage2"]["eal_weight"], flea["stage2"]["fual_weight"]) == (
        "attentive",
        0,
        0,
    )
