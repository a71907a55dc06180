"""One predictions vocabulary (issue 19): `label` = the truth, `predicted` = the predicted class, `prob_<class>` = the
probabilities, in the pipeline's results, predict.py's CSV and JSON lines, the per-utterance predictions CSVs and the
docs/predictions.md's table; "score" never names a probability.

The issue's case: the predicted class was the `label` column of predict.py's CSV but `predicted` in
`predictions_<split>.csv` (where `label` is the truth), and "score" was a probability in predict.py and the
pipelines but a metric in score.py."""

import csv
import json
import re

import numpy as np
import pytest
from helpers import POLISH3_LABELS, REPO, polish3_clips, tiny_frame_aligned_model

from modeling.collator import make_feature_extractor
from modeling.inference import load_pipeline
from modeling.inference.batch import predict_files
from modeling.metrics.predictions import Predictions, predictions_csv, read_predictions
from modeling.prediction_fields import PREDICTED, prediction_record, probabilities_of, softmax


PROBABILITIES = [f"prob_{name}" for name in POLISH3_LABELS]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    tiny_frame_aligned_model("hubert").save_pretrained(folder)
    make_feature_extractor().save_pretrained(folder)
    return folder


def readme_columns() -> dict[str, list[str]]:
    """docs/predictions.md's "Which file has which columns" table: {"<file> (<writer>)": columns}, `prob_<class>...`
    expanded to polish3's classes."""
    text = (REPO / "docs" / "predictions.md").read_text()
    section = text.split("## Which file has which columns", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[2].startswith("`"):
            columns = re.match(r"`([^`]*)`", cells[2]).group(1)
            names = [name.strip() for name in columns.split(",")]
            expanded = []
            for name in names:
                expanded += PROBABILITIES if name == "prob_<class>..." else [name]
            table[f"{cells[0]} ({cells[1]})"] = expanded
    return table


def test_the_pipeline_result_predict_csv_and_the_readme_agree(checkpoint, tmp_path):
    pipe = load_pipeline(checkpoint)
    clips = [path for path, _ in polish3_clips(2)]
    result = pipe(clips[0])
    assert set(result) == {
        PREDICTED,
        *PROBABILITIES,
        "duration_s",
        "frame_duration_s",
        "num_frames",
        "timeline",
        "windows",
    }
    assert result[PREDICTED] == max(probabilities_of(result), key=probabilities_of(result).get)
    for segment in result["timeline"]:
        assert set(segment) == {"start_s", "end_s", PREDICTED, *PROBABILITIES, "weight"}
    for part in result["windows"]:
        assert set(part) == {"start_s", "end_s", PREDICTED, *PROBABILITIES, "share"}

    output, timeline = tmp_path / "out.csv", tmp_path / "out.jsonl"
    predict_files(pipe, clips, output, timeline_path=timeline)
    with open(output, newline="") as f:
        header = next(csv.reader(f))
    table = readme_columns()
    assert header == ["file", "duration_s", PREDICTED, *PROBABILITIES] == table["the `--output` CSV (`predict.py`)"]
    record = json.loads(timeline.read_text().splitlines()[0])
    timeline_columns = table["the `--timeline` JSON lines (`predict.py`)"]
    assert list(record) == timeline_columns == ["file", "duration_s", PREDICTED, "timeline"]

    truth = Predictions(["a.wav"], ["s1"], np.array([0]), softmax(np.array([[0.1, 2.0, 0.3]])), POLISH3_LABELS)
    written = predictions_csv(truth).splitlines()
    assert written[0].split(",") == table["`fold<k>/predictions_{validation,test}.csv` (`train.py`)"]
    assert written[1].startswith("a.wav,s1,anger,fear,")  # label = the truth (anger), predicted = fear
    long = Predictions(**{**truth.__dict__, "extra": {"model": ["ensemble"]}})
    assert predictions_csv(long).splitlines()[0].split(",") == table["`OUT/predictions.csv` (`score.py`)"]
    (tmp_path / "p.csv").write_text("\n".join(written) + "\n")
    assert read_predictions(tmp_path / "p.csv").predicted.tolist() == [1]


def test_prediction_records_are_built_one_way():
    record = prediction_record(np.array([0.2, 0.5, 0.3]), POLISH3_LABELS)
    assert record == {"predicted": "fear", "prob_anger": 0.2, "prob_fear": 0.5, "prob_neutral": 0.3}
    assert probabilities_of({"file": "x", **record}) == {"anger": 0.2, "fear": 0.5, "neutral": 0.3}
    with pytest.raises(ValueError, match=r"a distribution over 3 classes has shape \(3,\), got \(2,\)"):
        prediction_record(np.array([0.5, 0.5]), POLISH3_LABELS)
    np.testing.assert_allclose(softmax(np.array([[1000.0, 0.0]])), [[1.0, 0.0]])  # stable


def test_score_never_names_a_probability_in_the_package():
    """Outside the predictions vocabulary's own docstring and the comparisons with transformers' audio-classification
    pipeline (its format), no module writes or reads a "score"/"scores" key."""
    found = []
    for path in sorted(REPO.glob("modeling/**/*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if re.search(r"[\"']scores?[\"']", line) and path.name != "prediction_fields.py":
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert found == []
