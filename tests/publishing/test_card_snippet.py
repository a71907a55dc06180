"""The model card's usage snippets run as written on files of any rate and channel count (8 kHz stereo, 48 kHz),
in a fresh process without this package, from a checkpoint folder laid out as a published one; `auto_map` has
`AutoModel`."""

import ast
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from helpers import polish3_clips
from runs import save_published

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.audio import load_audio
from modeling.collator import make_feature_extractor
from modeling.publishing.model_card import _usage


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    return save_published(tmp_path_factory.mktemp("published"))


@pytest.fixture(scope="module")
def odd_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("odd")
    mono, rate = sf.read(polish3_clips(2)[1][0], dtype="float32")
    low = soxr.resample(mono, rate, 8000)
    sf.write(folder / "phone_8k_stereo.wav", np.stack([low, -0.5 * low], axis=1), 8000)
    sf.write(folder / "studio_48k.flac", soxr.resample(mono, rate, 48000), 48000)
    return [folder / "phone_8k_stereo.wav", folder / "studio_48k.flac"]


def expected_scores(checkpoint, path) -> dict[str, float]:
    model = Wav2Vec2ForFrameAlignedClassification.from_pretrained(checkpoint).eval()
    inputs = make_feature_extractor()(load_audio(path), sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        probabilities = model(**inputs).logits.softmax(-1)[0]
    return {model.config.id2label[i]: p.item() for i, p in enumerate(probabilities)}


def test_auto_map_names_auto_model(published):
    auto_map = json.loads((published / "config.json").read_text())["auto_map"]
    assert auto_map["AutoModel"] == auto_map["AutoModelForAudioClassification"]


def test_card_snippets_run_on_8k_stereo_and_48k_files(published, odd_files, tmp_path):
    card = _usage("ORG/NAME-fold1", None)
    blocks = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    assert len(blocks) == 2
    auto_model = re.search(r"`(AutoModel\.from_pretrained\(.*?\))`", card).group(1)
    runs = []
    for path in odd_files:
        for number, block in enumerate(blocks):
            code = block.replace("ORG/NAME-fold1", str(published)).replace("speech.wav", str(path))
            runs.append(f"print('@@', {number}, {str(path)!r})\n{code}")
    script = "import sys\nsys.modules['modeling'] = None  # the Hub user's view: remote code only\n"
    script += "\n".join(runs) + "\nfrom transformers import AutoModel\n"
    script += f"print('@@ automodel', type({auto_model.replace('ORG/NAME-fold1', str(published))}).__name__)\n"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sections = result.stdout.split("@@ ")[1:]
    assert sections[-1].strip() == "automodel Wav2Vec2ForFrameAlignedClassification"
    for section in sections[:-1]:
        header, output = section.split("\n", 1)
        number, path = header.split(" ", 1)
        expected = expected_scores(published, path)
        if number == "0":  # frame-aligned-emotion: the predicted class, then its prob_<class> fields
            predicted, probabilities = output.strip().split(" ", 1)
            probabilities = ast.literal_eval(probabilities)
            assert {k.removeprefix("prob_"): v for k, v in probabilities.items()} == pytest.approx(expected, abs=1e-4)
            assert predicted == max(expected, key=expected.get)
        else:
            scores = ast.literal_eval(output.strip())
            assert {item["label"]: item["score"] for item in scores} == pytest.approx(expected, abs=1e-4)


def test_the_overview_cards_ensemble_reads_audio_as_the_fold_cards_snippet_does():
    """The --revision-per-fold overview card's ensemble snippet passed `sf.read` output at the file's own rate and
    channels to the audio-classification pipeline (a 44.1 kHz or stereo file failed: the verifier re-ran it); it
    must read and resample with the lines of the fold card's snippet, which run above on 8 kHz stereo and 48 kHz."""
    from modeling.publishing.model_card import OVERVIEW_TEMPLATE

    overview = OVERVIEW_TEMPLATE.read_text()
    lines = [line for line in _usage("org/ser", "fold1").splitlines() if "sf.read" in line or "soxr.resample" in line]
    assert len(lines) == 2 and all(line in overview.splitlines() for line in lines)
    assert '"sampling_rate": 16000}' in overview
