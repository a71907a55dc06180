"""The timing-free parts of `benchmarks/cpu_inference.py` (throughput arithmetic, targets, label agreement, the
FLOP counts it divides by); its timings are never asserted. The whole benchmark runs in `test_benchmarks.py`'s smoke
run."""

import pytest
import torch

from benchmarks.common import PROFILES
from benchmarks.cpu_inference import _forward_flops, _rows, agreement_row, label_agreement, throughput
from benchmarks.head_overhead import hf_baseline
from modeling import Wav2Vec2ForFrameAlignedClassification


def test_throughput_arithmetic_against_hand_computed_values():
    times = {"peer": [2.0, 4.0, 3.0], "ours_torch": [1.0, 1.5, 2.0]}
    wall = {"peer": [6.0, 6.0, 9.0], "ours_torch": [4.0, 3.0, 5.0]}
    got = throughput(times, wall, audio_seconds=30.0, flops={"peer": 3e10, "ours_torch": 3.3e10}, peak=1e11)
    assert got["peer"]["audio_s_per_cpu_s"] == pytest.approx(10.0)  # 30 s of audio / median 3 s
    assert got["peer"]["audio_s_per_wall_s"] == pytest.approx(5.0)  # 30 / median 6 s
    assert got["peer"]["flop_per_s"] == pytest.approx(1e10)
    assert got["peer"]["fraction_of_matmul_peak"] == pytest.approx(0.1)
    assert got["ours_torch"]["audio_s_per_cpu_s"] == pytest.approx(20.0)
    assert got["ours_torch"]["fraction_of_matmul_peak"] == pytest.approx(0.22)


def fake_details(ours_over_peer, onnx_over_ours, int8_over_ours, flop_ratio=1.25):
    def stats(value):
        return {"median": value, "min": value * 0.9, "max": value * 1.1}

    variant = {"audio_s_per_cpu_s": 1.0, "fraction_of_matmul_peak": 0.5}
    details = {
        "throughput": {v: variant for v in ("peer", "ours_torch", "ours_onnx", "ours_int8")},
        "ratios": {
            "ours_torch/peer": stats(ours_over_peer),
            "ours_onnx/ours_torch": stats(onnx_over_ours),
            "ours_int8/ours_torch": stats(int8_over_ours),
        },
        "profile_split_ours_torch": {
            "cnn": {"share": 0.4},
            "transformer": {"share": 0.5},
            "head": {"share": 0.05},
            "io": {"share": 0.05},
        },
        "flop_ratio_ours_over_peer": flop_ratio,
        "label_agreement": {"int8_vs_onnx_fp32": 0.98},
    }
    return details


def test_targets_follow_the_issue():
    # ours ≥ peer ÷ FLOP ratio − 0.02: with a FLOP ratio of 1.25 the bar is 0.8 − 0.02 = 0.78
    rows = _rows(fake_details(0.79, 1.19, 2.0), "cfg")
    assert [row["target"] for row in rows] == [0.78, 1.2, 2.0]
    assert [row["met"] for row in rows] == [True, False, True]
    assert "cnn 40 %" in rows[1]["note"] and "transformer 50 %" in rows[1]["note"]  # the split shows where time goes
    rows = _rows(fake_details(0.77, 1.3, 2.1), "cfg")
    assert [row["met"] for row in rows] == [False, True, True]
    demo = {
        "run": "runs/demo",
        "agreement": 0.965,
        "folds": {"fold1": {"agreement": 0.96, "clips": 450}, "fold2": {"agreement": 0.97, "clips": 450}},
    }
    row = agreement_row(demo)
    assert (row["target"], row["met"]) == (0.97, False) and row["note"] == "fold1 96.0 %, fold2 97.0 %"


def test_label_agreement():
    a = [("x", {}), ("y", {}), ("x", {}), ("z", {})]
    b = [("x", {}), ("x", {}), ("x", {}), ("z", {})]
    assert label_agreement(a, b) == 0.75


def test_flop_ratio_is_the_head_difference_only():
    """Ours and the peer share the backbone: the FLOP difference is exactly the heads', counted by hand here."""
    config = PROFILES["smoke"].backbone_config(num_labels=4)
    torch.manual_seed(0)
    ours = Wav2Vec2ForFrameAlignedClassification(config).eval()
    peer = hf_baseline(ours).eval()
    array = torch.randn(16_000).numpy()
    frames = ours(torch.from_numpy(array)[None]).frame_mask.shape[1]
    hidden, classes, ff = config.hidden_size, 4, config.pooling_intermediate_size or config.intermediate_size
    projector = peer.config.classifier_proj_size
    # peer head: projector (T·H·P) + classifier (P·C), 2 FLOPs per multiply-add
    peer_head = 2 * (frames * hidden * projector + projector * classes)
    # ours (cls_attention, 1 layer): q/k/v/out projections and the FFN over T+1 tokens, attention scores and
    # weighted sum ((T+1)²·H each), α = CLS·frames (T·H), classifier on the CLS and every frame ((T+1)·H·C)
    tokens = frames + 1
    ours_head = 2 * (
        4 * tokens * hidden * hidden
        + 2 * tokens * hidden * ff
        + 2 * tokens * tokens * hidden
        + frames * hidden
        + tokens * hidden * classes
    )
    assert _forward_flops(ours, [array]) - _forward_flops(peer, [array]) == ours_head - peer_head
