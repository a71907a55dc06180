"""`model.lora` (issue 25): a LoRA run's best/ is the merged model (the adapter applied to the stage's starting model,
≤ 1e-5, and W + (alpha / r)·B·A by hand with every other tensor of the base unchanged), it reloads through remote
code, the trainer trains the adapters and the head only (backbone / pooling / classifier learning rates), a killed
LoRA run resumes to the uninterrupted result (heavy), and bad settings are listed before anything trains."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml
from backbone_runs import FAST_CONV, write_config
from helpers import POLISH3, POLISH3_LABELS, REPO, polish3_clips, save_plain_backbone, tiny_backbone_settings
from safetensors.torch import load_file

from modeling import AutoModelForFrameAlignedClassification
from modeling.audio import load_audio
from modeling.collator import make_feature_extractor
from modeling.rundir.faults import FAULT_ENV, FAULT_LOG_ENV
from modeling.rundir.layout import RunDir
from modeling.training.config_checks import resolve_checked_config
from modeling.training.run_config import ConfigError
from modeling.training.stage import stage_model


peft = pytest.importorskip("peft")

# WavLM with adapters on the feed-forward (vox-profile's choice: WavLM's attention reads its projections' weights
# directly, see `test_bad_lora_settings_are_all_listed_before_training`); stage 1 trains both layers, stage 2 the top
# one (num_trainable_layers: 1), so stage 2's adapter sits on layer 1 only. Two stage-1 epochs of one step: the resume
# test kills stage 1 at step 2, after checkpoint-1.
LORA = {"r": 4, "alpha": 8, "target_modules": ["intermediate_dense", "output_dense"]}
TARGETS = ("feed_forward.intermediate_dense", "feed_forward.output_dense")


def train(config: str, run_dir, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "train.py", "--config", config, "--output-dir", str(run_dir), "--folds", "1"]
    clean = {key: value for key, value in os.environ.items() if key not in (FAULT_ENV, FAULT_LOG_ENV)}
    return subprocess.run(command, cwd=REPO, env={**clean, **(env or {})}, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lora")
    save_plain_backbone("wavlm", folder / "backbone", **FAST_CONV)
    # large adapter learning rates: the adapters move far from zero in one or two steps (an unmerged best/ differed
    # by only 4e-5 in the logits at the default 1e-4)
    config = write_config(
        folder / "run.yaml",
        folder / "backbone",
        model={"lora": LORA},
        stage1={"epochs": 2, "backbone_learning_rate": 1e-2},
        stage2={"backbone_learning_rate": 1e-2},
    )
    process = train(config, folder / "run")
    assert process.returncode == 0, process.stderr[-3000:]
    return folder, config, RunDir(folder / "run")


def batch():
    clips = [load_audio(path) for path, _ in polish3_clips(3)]
    return make_feature_extractor()(clips, sampling_rate=16000, padding=True, return_tensors="pt")


def resolved(config_path: str) -> dict:
    return resolve_checked_config(config_path)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["stage1", "stage2"])
def test_best_is_the_adapter_merged_into_the_unchanged_base(lora_run, stage):
    folder, config_path, run = lora_run
    config = resolved(config_path)
    init = str(folder / "backbone") if stage == "stage1" else str(run.best(1, "stage1"))
    torch.manual_seed(0)
    base = stage_model(config, stage, init, POLISH3_LABELS).eval()
    base_tensors = {name: tensor.detach().clone() for name, tensor in base.state_dict().items()}
    merged = AutoModelForFrameAlignedClassification.from_pretrained(run.best(1, stage)).eval()
    adapted = peft.PeftModel.from_pretrained(base, run.adapter(1, stage)).eval()
    inputs = batch()
    with torch.no_grad():
        torch.testing.assert_close(merged(**inputs).logits, adapted(**inputs).logits, atol=1e-5, rtol=0)

    # by hand: W + (alpha / r)·B·A on the adapted Linear layers, every other backbone tensor exactly the base's
    adapter = load_file(run.adapter(1, stage) / "adapter_model.safetensors")
    layers = [0, 1] if stage == "stage1" else [1]  # stage 2 trains the top layer only (num_trainable_layers: 1)
    adapted_weights = {f"wavlm.encoder.layers.{i}.{target}.weight" for i in layers for target in TARGETS}
    trained = 0
    for name, value in merged.state_dict().items():
        if not name.startswith("wavlm."):
            continue  # the head trains in full
        if name in adapted_weights:
            module = f"base_model.model.{name.removesuffix('.weight')}"
            a, b = adapter[f"{module}.lora_A.weight"], adapter[f"{module}.lora_B.weight"]
            trained += int(b.abs().max() > 0)
            expected = base_tensors[name] + (LORA["alpha"] / LORA["r"]) * b @ a
            torch.testing.assert_close(value, expected, atol=1e-6, rtol=0)
        else:
            assert torch.equal(value, base_tensors[name]), name
    assert trained == len(adapted_weights)  # every adapter moved (B starts at zero)
    assert {key for key in adapter if "lora_A" in key} == {
        f"base_model.model.{name.removesuffix('.weight')}.lora_A.weight" for name in adapted_weights
    }


@pytest.mark.slow
def test_merged_best_reloads_through_remote_code_in_a_fresh_process(lora_run, tmp_path):
    _, _, run = lora_run
    best = run.best(1, "stage2")
    inputs = batch()
    with torch.no_grad():
        expected = AutoModelForFrameAlignedClassification.from_pretrained(best).eval()(**inputs).logits
    torch.save(dict(inputs), tmp_path / "inputs.pt")
    script = textwrap.dedent(
        f"""
        import json, sys
        import torch
        from transformers import AutoModelForAudioClassification
        sys.modules["modeling"] = None  # no package: the checkpoint's own code only
        model = AutoModelForAudioClassification.from_pretrained({str(best)!r}, trust_remote_code=True).eval()
        with torch.no_grad():
            logits = model(**torch.load({str(tmp_path / "inputs.pt")!r})).logits
        print(json.dumps({{"class": type(model).__module__, "logits": logits.tolist()}}))
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    process = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert process.returncode == 0, process.stderr[-3000:]
    output = json.loads(process.stdout.strip().splitlines()[-1])
    assert output["class"].startswith("transformers_modules.")
    torch.testing.assert_close(torch.tensor(output["logits"]), expected, atol=1e-5, rtol=0)


@pytest.mark.heavy  # a second LoRA run (killed, then resumed): about 45 s on one core
@pytest.mark.bad_input
def test_a_killed_lora_run_resumes_to_the_uninterrupted_result(lora_run):
    folder, config, run = lora_run
    resumed = folder / "resumed"
    log = folder / "faults.log"
    killed = train(config, resumed, {FAULT_ENV: "train:step:rank0:step2:kill@1", FAULT_LOG_ENV: str(log)})
    assert killed.returncode < 0 and log.read_text().startswith("fault point train:step:rank0:step2: kill")
    assert [path.name for path in RunDir(resumed).checkpoints(1, "stage1")] == ["checkpoint-1"]
    process = train(config, resumed)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "resuming from" in process.stderr
    for stage in ("stage1", "stage2"):
        for path in (lambda r: r.best(1, stage) / "model.safetensors", lambda r: r.adapter(1, stage)):
            ours, theirs = path(RunDir(resumed)), path(run)
            if ours.is_dir():
                ours, theirs = ours / "adapter_model.safetensors", theirs / "adapter_model.safetensors"
            a, b = load_file(ours), load_file(theirs)
            assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a), (stage, ours)


def tiny_config_file(tmp_path, lora: dict, model: dict | None = None, stage2: dict | None = None, kind="wavlm") -> str:
    """A config with a tiny random backbone (2 layers; stage 2 trains the top one), nothing on disk but the corpus."""
    backbone = {"model_type": kind, **tiny_backbone_settings(kind)}
    config = {
        "data": {"loader": "audio_folder", "root": str(POLISH3)},
        "model": {"random_init": backbone, "lora": lora, **(model or {})},
        "stage2": {"num_trainable_layers": 1, **(stage2 or {})},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_the_trainer_trains_adapters_and_head_in_their_learning_rate_groups(tmp_path):
    from modeling.data.folds import Fold
    from modeling.trainer.trainer import FrameAlignedTrainer
    from modeling.training.stage import training_arguments

    path = tiny_config_file(tmp_path, {"r": 2, "layers": [1]}, stage2={"backbone_learning_rate": 7e-4}, kind="hubert")
    config = resolve_checked_config(path)
    plain = tmp_path / "plain"
    save_plain_backbone("hubert", plain)
    model = stage_model(config, "stage2", str(plain), POLISH3_LABELS, adapted=True)
    args = training_arguments(config, "stage2", Fold(1, (), (), ()), tmp_path / "out")
    trainer = FrameAlignedTrainer(model=model, args=args, eval_dataset=[{}])  # (never evaluated here)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert {name for name in trainable if "lora_" in name} == {
        f"base_model.model.hubert.encoder.layers.1.attention.{proj}.lora_{ab}.default.weight"
        for proj in ("q_proj", "v_proj")
        for ab in "AB"
    }  # the default targets on the one layer asked for
    assert all("lora_" in name or ".modules_to_save." in name for name in trainable)  # the base: all frozen
    rates = {}
    for group in trainer.create_optimizer().param_groups:
        for parameter in group["params"]:
            rates[id(parameter)] = (group["name"].removesuffix("_no_decay"), group["lr"])
    named = dict(model.named_parameters())
    assert {rates[id(named[name])] for name in trainable if "lora_" in name} == {("backbone", 7e-4)}
    assert {rates[id(named[name])][0] for name in trainable if ".pooler.modules_to_save." in name} == {"pooling"}
    assert {rates[id(named[name])][0] for name in trainable if ".classifier.modules_to_save." in name} == {
        "classifier"
    }


@pytest.mark.bad_input
def test_bad_lora_settings_are_all_listed_before_training(tmp_path):
    lora = {"rank": 8, "alpha": 16, "target_modules": ["q_prj", "v_proj"], "layers": [0, 5]}
    path = tiny_config_file(tmp_path, lora, stage2={"cache_frozen_prefix": True})
    with pytest.raises(ConfigError) as raised:
        resolve_checked_config(path)
    messages = [problem.message for problem in raised.value.problems]
    text = "\n".join(messages)
    assert "unknown key 'model.lora.rank'; did you mean 'model.lora.r'?" in text, text
    assert "stage2.cache_frozen_prefix = true cannot train model.lora adapters" in text, text
    assert len(messages) == 2, text  # the mapping is bad: its settings are not checked against the model
    del lora["rank"]
    path = tiny_config_file(tmp_path, lora)
    with pytest.raises(ConfigError) as raised:
        resolve_checked_config(path)
    messages = [problem.message for problem in raised.value.problems]
    text = "\n".join(messages)
    assert (
        "model.lora.target_modules: 'q_prj' names no Linear layer of WavLMForFrameAlignedClassification's "
        "transformer layers (wavlm.encoder.layers.<i>); they have: attention.k_proj, attention.v_proj, "
        "attention.q_proj, attention.out_proj, attention.gru_rel_pos_linear, feed_forward.intermediate_dense, "
        "feed_forward.output_dense." in text
    ), text
    assert "model.lora.layers: [5] outside the backbone's 2 transformer layers (0–1)." in text, text
    assert "model.lora.layers: [0] frozen in stage2 by stage2.num_trainable_layers = 1" in text, text
    assert len(messages) == 3, text  # each said once, though both stages check the targets

    # the defaults (q_proj, v_proj) on WavLM: its attention hands the projections' weights to
    # F.multi_head_attention_forward, so adapters there would stay at zero (found by a forward pass on the meta device)
    with pytest.raises(ConfigError) as raised:
        resolve_checked_config(tiny_config_file(tmp_path, {}))
    assert [problem.message for problem in raised.value.problems] == [
        "model.lora.target_modules: WavLMForFrameAlignedClassification's transformer layers read the weights of "
        "attention.q_proj, attention.v_proj directly instead of calling the module, so a LoRA adapter there would "
        "never train; choose among attention.gru_rel_pos_linear, feed_forward.intermediate_dense, "
        "feed_forward.output_dense."
    ]


@pytest.mark.bad_input
def test_lora_with_the_weighted_layer_sum_is_refused(tmp_path):
    path = tiny_config_file(tmp_path, {}, model={"config_overrides": {"use_weighted_layer_sum": True}})
    with pytest.raises(ConfigError, match="model.lora with use_weighted_layer_sum is not supported"):
        resolve_checked_config(path)


@pytest.fixture(scope="module")
def wavlm_base_plus_config(tmp_path_factory):
    """A WavLM Base+-shaped config.json alone (12 layers, 768 wide): the settings are checked against the modules of
    the backbone's shape, built on the meta device (no weights)."""
    from transformers import WavLMConfig

    folder = tmp_path_factory.mktemp("wavlm-base-plus")
    WavLMConfig().save_pretrained(folder)
    return str(folder)


def test_the_shipped_config_and_the_docs_snippet_pass_every_check_on_wavlm_base_plus(wavlm_base_plus_config, tmp_path):
    from helpers import markdown_blocks

    shipped = resolve_checked_config(
        REPO / "configs" / "iemocap_wavlm_lora.yaml", overrides=[f"model.name_or_path={wavlm_base_plus_config}"]
    )
    assert shipped["model"]["lora"] == {
        "r": 16,
        "alpha": 32,
        "dropout": 0.05,
        "target_modules": ["feed_forward.intermediate_dense", "feed_forward.output_dense"],
        "layers": [6, 7, 8, 9, 10, 11],
    }
    assert shipped["stage2"]["num_trainable_layers"] == 6 and shipped["stage2"]["backbone_learning_rate"] == 1e-4
    (snippet,) = [block for block in markdown_blocks(REPO / "docs" / "training.md", "yaml") if "lora:" in block]
    config = yaml.safe_load(snippet)
    assert config["model"]["lora"] == shipped["model"]["lora"]
    config["model"]["name_or_path"] = wavlm_base_plus_config
    config["data"] = {"loader": "audio_folder", "root": str(POLISH3)}
    (tmp_path / "snippet.yaml").write_text(yaml.safe_dump(config))
    resolve_checked_config(tmp_path / "snippet.yaml")  # no ConfigError
    with pytest.raises(ConfigError, match=r"model.lora.layers: \[4, 5\] frozen in stage2"):
        resolve_checked_config(tmp_path / "snippet.yaml", overrides=["model.lora.layers=[4,5,6]"])


@pytest.mark.bad_input
def test_a_lora_checkpoint_is_complete_with_its_adapter_and_incomplete_without_its_optimizer(tmp_path):
    """A LoRA stage's Trainer checkpoint holds adapter_model.safetensors instead of model.safetensors."""
    from modeling.rundir.integrity import write_manifest
    from modeling.training.checkpoints import checkpoint_state

    folder = tmp_path / "checkpoint-1"
    folder.mkdir()
    for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt"):
        (folder / name).write_bytes(b"x")
    (folder / "trainer_state.json").write_text("{}")
    write_manifest(folder)
    assert checkpoint_state(folder) is None
    (folder / "optimizer.pt").unlink()
    assert checkpoint_state(folder).message == "incomplete (interrupted while saving): no optimizer.pt"
    (folder / "adapter_model.safetensors").unlink()
    assert "no model.safetensors, optimizer.pt" in checkpoint_state(folder).message
