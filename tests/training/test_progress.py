"""Progress bars (tqdm) on scoring and on the frozen-prefix cache: shown on a terminal, silent otherwise."""

import io

import pytest
import torch
from datasets import Dataset
from helpers import polish3_clips, tiny_config

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.training.scoring import predict


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream, shown", [(Terminal, True), (io.StringIO, False)])
def test_scoring_shows_a_bar_only_on_a_terminal(monkeypatch, stream, shown):
    clips = polish3_clips(3)
    dataset = Dataset.from_dict(
        {"audio": [p for p, _ in clips], "label": [y for _, y in clips], "duration_s": [1.0, 2.0, 3.0]}
    )
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config())
    err = stream()
    monkeypatch.setattr("sys.stderr", err)
    prediction = predict(model, dataset, batch_size=2)
    assert prediction.logits.shape == (3, 3)
    # one clip per batch: the tiny backbone's group norm sees padding (`evaluation_batch_size`)
    assert ("Scoring" in err.getvalue() and "3/3" in err.getvalue()) == shown, err.getvalue()
