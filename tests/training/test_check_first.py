"""Check everything first: structured problems grouped by cause, nothing written before the checks pass (so the
corrected command runs in the same output directory), the example's settings checked before stage 1, one evaluation
order and the trainer's evaluation collator, and the package face."""

import importlib.util

import numpy as np
import pytest
import yaml
from datasets import Dataset
from helpers import POLISH3, REPO, polish3_clips, save_plain_backbone, tiny_config

import modeling
from modeling.cli.train import main
from modeling.data.problems import CheckError, Problem, report


def test_one_cause_is_one_entry_with_a_count_and_examples():
    problems = [Problem(f"f{i}.wav", f"f{i}.wav: unknown label 'x'", cause="unknown label 'x'") for i in range(301)]
    problems.append(Problem("stage2.epochs", "stage2.epochs must be a number > 0, got 0.", 0))
    text = report(problems, "run.yaml")
    assert text.splitlines() == [
        "2 problem(s) in run.yaml (nothing trained):",
        "  - unknown label 'x' (301 times), e.g.:",
        "      f0.wav: unknown label 'x'",
        "      f1.wav: unknown label 'x'",
        "      f2.wav: unknown label 'x'",
        "      … and 298 more",
        "  - stage2.epochs must be a number > 0, got 0.",
    ]
    error = CheckError(problems, "run.yaml")
    assert str(error) == text and len(error.problems) == 302 and len(error.blocking_problems) == 302


def write_configs(tmp_path, labels) -> str:
    """base.yaml holds the label list; run.yaml inherits it through `extends:` (the issue's case)."""
    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    base = {**demo, "data": {"loader": "audio_folder", "root": str(POLISH3), "loader_args": {"labels": labels}}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"extends": "base.yaml", "data": {"max_per_speaker": 6}}))
    return str(tmp_path / "run.yaml")


class Stop(Exception):
    pass


def test_a_failed_check_writes_nothing_and_the_corrected_command_is_accepted(tmp_path, capsys, monkeypatch):
    """An inherited label list that misses a class: one grouped line per unknown label (not one per file), exit 2,
    no output directory; the same command with the labels corrected then passes its checks in the same folder."""
    config, output = write_configs(tmp_path, ["angry", "fear", "neutral"]), tmp_path / "run"
    assert main(["--config", config, "--output-dir", str(output)]) == 2
    error = capsys.readouterr().err
    assert "2 problem(s) found before training:" in error, error
    # The list is named where it was set: the inherited file, not run.yaml, which does not spell it
    origin = f"(data.loader_args.labels, from {tmp_path / 'base.yaml'} (via extends: of {tmp_path / 'run.yaml'}))"
    unknown = "unknown label 'anger' (did you mean 'angry'?); expected one of ['angry', 'fear', 'neutral']"
    assert f"{unknown} {origin} (10 times)" in error
    assert re_count(r"class\(es\) \['angry'\] absent from the training split of a fold.* \(5 times\)", error)
    assert len([line for line in error.splitlines() if line.startswith("  - ")]) == 2, error
    assert not output.exists()  # no config.yaml to refuse the corrected command with

    import modeling.training.experiment as experiment

    def stop(*args, **kwargs):
        raise Stop

    monkeypatch.setattr(experiment, "run_fold", stop)  # past every check: the first fold would train now
    with pytest.raises(Stop):
        main(
            ["--config", config, "--output-dir", str(output), "--set", "data.loader_args.labels=[anger,fear,neutral]"]
        )
    recorded = yaml.safe_load((output / "config.yaml").read_text())
    assert recorded["data"]["loader_args"]["labels"] == ["anger", "fear", "neutral"]


def re_count(pattern: str, text: str) -> int:
    import re

    return len(re.findall(pattern, text))


def test_example_checks_num_trainable_layers_before_stage_one(tmp_path, capsys):
    from fake_corpora import make_split_folders

    make_split_folders(tmp_path / "corpus")
    save_plain_backbone("wav2vec2", tmp_path / "backbone")
    spec = importlib.util.spec_from_file_location("finetune", REPO / "examples" / "finetune_audio_dataset.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = ["--data", str(tmp_path / "corpus"), "--backbone", str(tmp_path / "backbone")]
    argv += ["--output-dir", str(tmp_path / "out"), "--num-trainable-layers", "99"]
    with pytest.raises(CheckError, match=r"stage 2 with --backbone .*num_trainable_layers.*99") as caught:
        example.run(example.parse_args(argv))
    assert [problem.key for problem in caught.value.problems] == ["stage 2"]
    assert not (tmp_path / "out").exists()  # stage 1 never started
    # The command: the listing on stderr and exit status 2, as train.py (no traceback)
    assert example.main(argv) == 2
    err = capsys.readouterr().err  # after the progress bars of datasets' filter
    assert "Traceback" not in err and err[err.index("error: ") :] == (
        "error: 1 problem(s) in the command line (nothing trained):\n"
        f"  - stage 2 with --backbone {tmp_path / 'backbone'} --num-trainable-layers 99: Wav2Vec2FrameAlignedConfig: "
        "`num_trainable_layers` "
        "must be between 0 and num_hidden_layers=2, got 99.\n"
    )


def test_package_face_exports_what_users_catch_and_build_with():
    from modeling.audio import AudioInputError
    from modeling.collator import AudioClassificationCollator, make_feature_extractor
    from modeling.configuration_frame_aligned import label_names
    from modeling.trainer.sampling import longest_first

    assert modeling.AudioInputError is AudioInputError and modeling.CheckError is CheckError
    assert modeling.AudioClassificationCollator is AudioClassificationCollator
    assert modeling.make_feature_extractor is make_feature_extractor and modeling.label_names is label_names
    assert modeling.longest_first is longest_first
    assert {"AudioInputError", "AudioClassificationCollator", "make_feature_extractor", "label_names"} <= set(
        modeling.__all__
    )
    assert modeling.label_names({"1": "sad", "0": "angry"}) == ["angry", "sad"]
    assert modeling.longest_first([1.0, 3.0, 2.0, 3.0]) == [1, 3, 2, 0]  # ties by row
    with pytest.raises(modeling.AudioInputError):
        modeling.load_audio(str(POLISH3 / "no such file.wav"))


def test_trainer_evaluates_with_its_eval_collator_longest_first(tmp_path):
    """`eval_data_collator` serves evaluate and predict (whole clips where training crops); batches longest first."""
    import soundfile as sf

    clips = polish3_clips(4)
    dataset = Dataset.from_dict({"audio": [path for path, _ in clips], "label": [label for _, label in clips]})
    extractor = modeling.make_feature_extractor()
    args = modeling.FrameAlignedTrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_eval_batch_size=2,
        report_to=[],
        remove_unused_columns=False,
        eval_longest_first=True,
        use_cpu=True,
    )
    trainer = modeling.FrameAlignedTrainer(
        model=modeling.Wav2Vec2ForFrameAlignedClassification(tiny_config()),
        args=args,
        data_collator=modeling.AudioClassificationCollator(extractor, max_length_seconds=0.1, random_crop=True),
        eval_data_collator=modeling.AudioClassificationCollator(extractor),
    )
    durations = [sf.info(path).duration for path, _ in clips]
    order = sorted(range(len(clips)), key=lambda i: (-durations[i], i))
    for loader in (trainer.get_eval_dataloader(dataset), trainer.get_test_dataloader(dataset)):
        lengths = [batch["input_values"].shape[1] for batch in loader]
        assert lengths == [round(16000 * durations[order[k]]) for k in (0, 2)]  # whole clips, longest first
    assert trainer.data_collator.max_length_seconds == 0.1  # training keeps its crops
    assert np.all(np.diff([durations[i] for i in order]) <= 0)


@pytest.mark.parametrize(
    "loader, root, name",
    [
        ("emodb", "/data/EmoDB", "emodb"),
        ("msp_podcast", "/data/MSP-PODCAST-1.11", "msp_podcast"),
        ("iemocap", "/data/IEMOCAP_full_release", "iemocap"),
        ("audio_folder", "data/polish3", "polish3"),
        ("hub", "user/polish3", "user/polish3"),
    ],
)
def test_a_run_names_every_corpus_with_a_loader_of_its_own_by_that_loader(loader, root, name):
    """One list of corpora (data.catalog.CORPORA): EmoDB and MSP-Podcast were named by their folder."""
    from modeling.publishing.run import Run

    assert Run(path=REPO, results={}, config={"data": {"loader": loader, "root": root}}).corpus == name


def test_one_file_hasher(tmp_path):
    import hashlib

    from modeling.publishing.hub import _sha256
    from modeling.rundir.integrity import sha256_of

    path = tmp_path / "blob.bin"
    path.write_bytes(b"\x00\x01" * 700_000)  # over one read chunk
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert _sha256(path) == sha256_of(path) == _sha256(path.read_bytes()) == expected


def test_one_owner_per_helper_name():
    """One `corpus_info` (the corpus facts lookup, data/catalog.py), one `longest_first`, one `sha256_of`."""
    import ast

    defined = {}
    for path in sorted((REPO / "modeling").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name in ("corpus_info", "longest_first", "sha256_of"):
                defined.setdefault(node.name, []).append(str(path.relative_to(REPO)))
    assert defined == {
        "corpus_info": ["modeling/data/catalog.py"],
        "longest_first": ["modeling/trainer/sampling.py"],
        "sha256_of": ["modeling/rundir/integrity.py"],
    }


@pytest.mark.bad_input
def test_a_random_init_key_another_backbone_has_is_a_listed_problem_not_a_traceback():
    """The fresh-user try extended configs/demo.yaml with `model_type: whisper`: the wav2vec 2.0 keys it inherited
    raised a raw AttributeError (`intermediate_size` has no setter on the Whisper config)."""
    from modeling.training.config_checks import backbone_config

    config, problems = backbone_config({"model": {"random_init": {"model_type": "whisper", "intermediate_size": 64}}})
    assert config is None and [p.key for p in problems] == ["model.random_init"]
    assert "intermediate_size" in problems[0].message
