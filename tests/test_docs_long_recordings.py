"""docs/long_recordings.md runs as written: its ```python blocks (exec'd) and its ```bash commands (each
`python -m modeling.timeline …` / `python predict.py …` line parsed with shlex and given to the command's `main`, the
same argument parsing as the shell's, without a new interpreter per line) in a folder with a recording, its RTTM and
a tiny model where the page expects runs/demo."""

import contextlib
import io
import os
import shlex

import numpy as np
import pytest
import soundfile as sf
from helpers import REPO, markdown_blocks, polish3_clips, tiny_frame_aligned_model

from modeling.audio import load_audio
from modeling.cli import predict, timeline
from modeling.collator import make_feature_extractor


PAGE = REPO / "docs" / "long_recordings.md"
COMMANDS = {"python -m modeling.timeline": timeline.main, "python predict.py": predict.main}


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    best = tmp_path / "runs" / "demo" / "fold1" / "stage2" / "best"
    tiny_frame_aligned_model("wav2vec2").save_pretrained(best)
    make_feature_extractor().save_pretrained(best)
    gap = np.zeros(8000, np.float32)
    audio = np.concatenate([piece for path, _ in polish3_clips(3) for piece in (gap, load_audio(path))])
    sf.write(tmp_path / "call.wav", audio, 16000)
    (tmp_path / "call.rttm").write_text(
        "SPEAKER call 1 0.40 1.20 <NA> <NA> A <NA> <NA>\nSPEAKER call 1 1.5 1.9 <NA> <NA> B <NA> <NA>\n"
    )
    (tmp_path / "calls").mkdir()
    for name in ("call.wav", "call.rttm"):
        (tmp_path / "calls" / name).symlink_to(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_every_block_runs_as_written(checkout):
    python, bash = markdown_blocks(PAGE, "python"), markdown_blocks(PAGE, "bash")
    assert len(python) == 2 and len(bash) == 1
    for code in python:
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            exec(compile(code, str(PAGE), "exec"), {})
    assert printed.getvalue().split()[:4] == ["0.5", "5.0", "0.0", "0.0"]  # the EDER example's stated values
    assert (checkout / "call.emotions.srt").read_text().startswith("1\n00:00:00,400 --> 00:00:01,600\n[A] ")
    lines = bash[0].replace("\\\n", " ").splitlines()
    assert len(lines) == 3
    for line in lines:
        prefix = next(prefix for prefix in COMMANDS if line.startswith(prefix))
        with contextlib.redirect_stdout(io.StringIO()):
            assert COMMANDS[prefix](shlex.split(line[len(prefix) :])) == 0, line
    for name in ("call.emotions.csv", "call.emotions.rttm", "call.emotions.vtt", "call.lanes.png", "call.vad.jsonl"):
        assert os.path.getsize(checkout / name) > 0, name
    assert len((checkout / "segments.csv").read_text().splitlines()) == 3  # the header and the RTTM's 2 turns
