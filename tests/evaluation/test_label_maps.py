"""score.py's label maps (issue 19): a map entry that fits nothing is an error, a repeated `--label-map` adds up."""

import pytest

from modeling.cli.score import parse_args
from modeling.data import CorpusError
from modeling.data.corpus import build_dataset
from modeling.evaluation.cross_corpus import parse_label_map, target_rows


RUN_CLASSES = ["angry", "happy", "sad", "neutral"]


def corpus(counts: dict[str, int]):
    """A corpus Dataset with `counts[class]` rows per class (paths need not exist: durations are given)."""
    rows = [
        {"audio": f"/corpus/{name}_{i}.wav", "label_text": name, "speaker": "s1", "duration_s": 1.0}
        for name, count in counts.items()
        for i in range(count)
    ]
    return build_dataset(rows, sorted(counts))


EMODB_LIKE = {"anger": 127, "happiness": 71, "sadness": 62, "neutral": 79, "boredom": 81}


def test_a_reversed_map_whose_source_class_the_corpus_lacks_is_an_error():
    """`--label-map angry=anger` on a corpus that has `anger` (the map reversed) was accepted: all anger rows left
    out, an all-zero row, a UA that looked real."""
    with pytest.raises(CorpusError, match=r"--label-map angry=anger: the corpus has no class 'angry'") as error:
        target_rows(corpus(EMODB_LIKE), RUN_CLASSES, parse_label_map(["angry=anger"]), None)
    assert "anger, boredom, happiness, neutral, sadness" in str(error.value)


def test_a_map_whose_target_is_not_a_run_class_is_an_error():
    with pytest.raises(CorpusError, match=r"--label-map anger=angr: 'angr' is not one of the run's classes"):
        target_rows(corpus(EMODB_LIKE), RUN_CLASSES, parse_label_map(["anger=angr"]), None)


def test_every_bad_entry_is_listed_at_once():
    with pytest.raises(CorpusError) as error:
        target_rows(corpus(EMODB_LIKE), RUN_CLASSES, parse_label_map(["angry=anger", "sadness=sadd"]), None)
    assert "angry=anger" in str(error.value) and "sadness=sadd" in str(error.value)


def test_a_repeated_label_map_flag_adds_up():
    """`--label-map a=b --label-map c=d --label-map e=f` kept only the last map: EmoDB was scored on 141 clips
    (sadness and neutral) instead of 339."""
    argv = ["--run-dir", "r", "--config", "c.yaml", "--output-dir", "o"]
    args = parse_args(
        [*argv, "--label-map", "anger=angry", "--label-map", "happiness=happy", "--label-map", "sadness=sad"]
    )
    label_map = parse_label_map(args.label_map)
    assert label_map == {"anger": "angry", "happiness": "happy", "sadness": "sad"}
    rows, left_out, missing = target_rows(corpus(EMODB_LIKE), RUN_CLASSES, label_map, None)
    assert len(rows) == 127 + 71 + 62 + 79 == 339 and left_out == {"boredom": 81} and missing == []
    # one flag with several values, as before, and a mix of both
    assert parse_args([*argv, "--label-map", "a=b", "c=d", "--label-map", "e=f"]).label_map == ["a=b", "c=d", "e=f"]


def test_one_source_mapped_to_two_targets_is_an_error():
    with pytest.raises(CorpusError, match=r"--label-map: 'anger' is mapped twice \(anger=angry, anger=sad\)"):
        parse_label_map(["anger=angry", "anger=sad"])
    assert parse_label_map(["anger=angry", "anger=angry"]) == {"anger": "angry"}  # the same entry twice is fine


def documented_label_maps() -> list[tuple[str, str, str, list[str]]]:
    """[(where, --config, --run-dir, [SRC=DST...])] of every example command with `--label-map` in the entry points'
    docstrings and the docs (continued lines joined)."""
    import ast
    import re

    from helpers import REPO

    sources = {path: ast.get_docstring(ast.parse(path.read_text())) or "" for path in REPO.glob("modeling/cli/*.py")}
    sources.update({path: ast.get_docstring(ast.parse(path.read_text())) or "" for path in REPO.glob("*.py")})
    sources.update({path: path.read_text() for path in REPO.glob("docs/*.md")})
    found = []
    for path, text in sources.items():
        for command in re.sub(r"\\\n\s*", " ", text).splitlines():
            if "--label-map" not in command or "--run-dir" not in command:
                continue
            flag = lambda name: (re.search(rf"{name} (\S+)", command) or [None, ""])[1]  # noqa: E731
            entries = re.search(r"--label-map ((?:\w+=\w+ ?)+)", command)
            found.append((str(path.relative_to(REPO)), flag("--config"), flag("--run-dir"), entries[1].split()))
    return found


def test_every_documented_label_map_fits_the_classes_of_the_corpora_it_names():
    """score.py's --help showed `--run-dir runs/iemocap --config configs/crema_d.yaml --label-map anger=angry`, which
    fails as written: CREMA-D's class is already `angry`. Every example whose config and run name known corpora
    (configs/<name>.yaml, runs/<corpus>) maps a class the corpus has to a class the run has."""
    import yaml
    from helpers import REPO

    from modeling.data.catalog import CORPORA, corpus_info

    checked = []
    for where, config, run_dir, entries in documented_label_maps():
        config_path = REPO / config
        if not config_path.is_file() or run_dir.split("/")[-1] not in CORPORA:
            continue  # a user's own corpus or run: nothing to check it against
        data = yaml.safe_load(config_path.read_text())["data"]
        corpus, run = corpus_info(data["loader"], data.get("root")), CORPORA[run_dir.split("/")[-1]]
        for entry in entries:
            source, target = entry.split("=")
            assert source in corpus.labels, f"{where}: --label-map {entry}: {corpus.name} has no class {source!r}"
            assert target in run.labels, f"{where}: --label-map {entry}: {run.name} has no class {target!r}"
        checked.append(where)
    assert "modeling/cli/score.py" in checked and "docs/evaluation.md" in checked
