"""The scoring harness of `benchmarks/emotion_diarization.py` with a constant model, against hand-computed EDERs:
recordings with exact clip boundaries (with and without silences), every system scored over the same reference.
The speed/memory part (fresh processes, an hour of audio) is not run here: it is the benchmark's own job."""

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import POLISH3, POLISH3_LABELS, layer_norm_overrides, tiny_config
from transformers import pipeline

from benchmarks.emotion_diarization import build_recordings, held_out_clips, score, write_long_recording
from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.collator import make_feature_extractor


WAV2VEC2_CONV = dict(conv_dim=(16,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2))


@pytest.fixture(scope="module")
def always_fear(tmp_path_factory):
    folder = tmp_path_factory.mktemp("always_fear")
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config(**WAV2VEC2_CONV, **layer_norm_overrides())).eval()
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 3.0, 0.0]))  # fear, everywhere
    model.save_pretrained(folder)
    make_feature_extractor().save_pretrained(folder)
    return pipeline("frame-aligned-emotion", model=str(folder), device="cpu")


@pytest.mark.skipif(POLISH3 is None, reason="needs the bundled clips")
def test_constant_model_scores_equal_hand_computation(always_fear, tmp_path):
    labels, by_speaker = held_out_clips("polish3", ["m5"])
    assert labels == POLISH3_LABELS and list(by_speaker) == ["m5"]
    for silences in (False, True):
        (recording,) = build_recordings(by_speaker, 1, silences, seed=3, folder=tmp_path)
        audio, _ = sf.read(recording["path"])
        reference = recording["reference"]
        assert recording["duration_s"] == len(audio) / 16000 == reference[-1][1]
        assert [label for _, _, label in reference][:2] == ["neutral", "neutral"] and reference[2][2] != "neutral"
        spoken = sum(end - start for start, end, _ in reference)
        fear = sum(end - start for start, end, label in reference if label == "fear")
        silence = recording["duration_s"] - spoken
        assert (silence > 0.3 * 4) == silences  # 4 gaps of 0.3-1.2 s, or none
        systems = score([recording], always_fear)
        # Everything is "fear": the timeline and the baseline cover the silences too (false alarms); the reference
        # segments cover exactly the speech.
        for name in ("whole_recording", "timeline[median 0.2 s, min 0.2 s]", "timeline[none 0.02 s, min 0.02 s]"):
            assert systems[name]["eder"] == pytest.approx((spoken - fear + silence) / spoken, abs=1e-3), name
        assert systems["per_segment_reference"]["eder"] == pytest.approx((spoken - fear) / spoken, abs=1e-3)
        assert systems["per_segment_reference"]["false_alarm_s"] == 0.0


def test_long_recording_is_written_to_length(tmp_path):
    _, by_speaker = held_out_clips("polish3", ["m5"])
    assert write_long_recording(tmp_path / "long.flac", by_speaker, 12.5, seed=0) == 12.5
    assert sf.info(tmp_path / "long.flac").duration == 12.5
    assert np.abs(sf.read(tmp_path / "long.flac")[0]).max() > 0.01
