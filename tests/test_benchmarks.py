"""`python -m benchmarks` runs end to end (toy `--smoke` profile) and writes well-formed results; the numbers of the
README's Performance section that involve no timing are recomputed and checked against values computed by hand.

Timed ratios of a toy model on a shared CPU mean nothing, so none is asserted. What is asserted:
- padding per epoch (`benchmarks/padding.py`, full mode: 10 epochs, seeded lengths and samplers): the README's
  percentages, the ≤ 2 % claim, and the fully sorted floor against a sort done here;
- FLOPs per training step (`benchmarks/head_overhead.py`, `benchmarks/frozen_prefix.py`): `FlopCounterMode`'s count
  equals a FLOP model written out below, term by term, at two small shapes; the same model at the wav2vec2-base
  shape of full mode gives the README's ratios (pooling head vs HF's classifier, frozen-prefix cache speed-up).
"""

import json
from dataclasses import replace

import numpy as np
import pytest

from benchmarks import frozen_prefix, head_overhead, padding
from benchmarks.__main__ import BENCHMARKS, main
from benchmarks.common import PROFILES


ROW_KEYS = {"name", "measured", "target", "target_kind", "reference", "met", "noise", "config", "note", "benchmark"}


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench") / "results.json"
    assert main(["--smoke", "--output", str(output)]) == 0
    return json.loads(output.read_text()), output.with_suffix(".md").read_text()


# heavy: the benchmarks' smoke run (105 s); make bench runs them
@pytest.mark.heavy
def test_entry_point_writes_json_and_markdown(smoke_report):
    report, markdown = smoke_report
    assert report["mode"] == "smoke"
    assert {"cpu", "cpu_cores", "torch", "transformers", "date"} <= set(report["machine"])
    assert list(report["benchmarks"]) == list(BENCHMARKS)
    for name, outcome in report["benchmarks"].items():
        assert not str(outcome.get("status", "")).startswith("failed"), (name, outcome.get("status"))
    assert report["summary"], "no ratio was measured"
    for row in report["summary"]:
        assert ROW_KEYS <= set(row)
        assert row["target_kind"] in ("<=", ">=", "within")
        assert isinstance(row["measured"], float) and row["met"] in (True, False)
    benchmarks_with_rows = {row["benchmark"] for row in report["summary"]}
    assert {"head_overhead", "padding", "frozen_prefix", "inference", "data_loading"} <= benchmarks_with_rows
    assert "| Benchmark | Measured | Target | Met |" in markdown
    assert markdown.count("\n| ") >= len(report["summary"]) + 1


def test_gpu_dry_run_runs_every_row_without_host_syncs(tmp_path):
    """`python -m benchmarks.gpu --dry-run`: every row of the GPU benchmark at toy size on the CPU, no host sync in
    any training step, the markdown table rendered from it (issue 21). Without CUDA the section says "not run"
    (`test_gpu_page.py`)."""
    from test_gpu_page import page_command

    from benchmarks import gpu
    from benchmarks.common import machine_description
    from benchmarks.report import render_markdown

    argv = page_command("--dry-run")  # docs/gpu.md's command, as written (its output file under tmp_path)
    assert argv[:3] == ["python", "-m", "benchmarks.gpu"]
    output = tmp_path / argv[argv.index("--output") + 1]
    argv[argv.index("--output") + 1] = str(output)
    assert gpu.main(argv[3:]) == 0
    dry = json.loads(output.read_text())
    assert dry["status"].startswith("dry run on cpu")
    assert set(dry["training"]) == {f"{stage}/{precision}" for stage in gpu.STAGES for precision in gpu.PRECISIONS}
    assert all(row["ms_per_step"] > 0 and row["host_syncs_per_step"] == 0 for row in dry["training"].values())
    assert dry["config"]["batch_size"] == gpu.DRY_BATCH and "polish3" in dry["clips"] or "nemo4" in dry["clips"]
    assert dry["evaluation"]["samples_per_second"] > 0 and dry["prefix_cache"]["clips_per_second"] > 0
    machine = machine_description() | {"torch_threads": 1, "load_average_at_start": None}
    markdown = render_markdown({"mode": "smoke", "machine": machine, "benchmarks": {"gpu": dry}, "summary": []})
    assert "| stage2/bf16+checkpointing |" in markdown


def test_gpu_benchmark_clips_are_real_speech_of_exactly_8_s(tmp_path):
    """32 × 8 s steps need 8 s clips: nEMO's long ones, or the corpus's clips joined end to end (and said so)."""
    import soundfile

    from benchmarks import gpu
    from benchmarks.common import corpus_rows

    corpus, rows = corpus_rows()
    clips = gpu.long_clips(3, 8.0, tmp_path)
    for path in clips["files"]:
        audio, rate = soundfile.read(path)
        assert rate == 16000 and audio.shape == (128000,) and np.abs(audio).max() > 0.01
    if sum(row["duration_s"] >= 8.0 for row in rows) < 3:
        assert "joined end to end" in clips["source"] and corpus in clips["source"]
        first = soundfile.read(rows[0]["path"], dtype="float32")[0]  # the first clip opens the first joined one
        np.testing.assert_allclose(
            soundfile.read(clips["files"][0], dtype="float32")[0][: len(first)], first, atol=1e-4
        )


def test_unknown_benchmark_is_rejected(tmp_path):
    assert main(["--smoke", "--only", "nope", "--output", str(tmp_path / "r.json")]) == 2


# ------------------------------------------------------------------------------------------------------------------
# Padding (no timing: seeded lengths, seeded samplers)
# ------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def padding_full():
    """`benchmarks/padding.py` in full mode (10 epochs per sampler), as the committed run; ~15 s."""
    outcome = padding.run(PROFILES["full"], {})
    by_prefix = {}
    for name, values in outcome["distributions"].items():
        key = "cropped" if "max_length_seconds" in name else "iemocap" if name.startswith("IEMOCAP") else "corpus"
        by_prefix[key] = (name, values)
    return outcome, by_prefix


def sorted_floor(durations: list[float], batch_size: int = padding.BATCH_SIZE) -> float:
    """Padding of the best batches of a fixed size, by hand: sort, cut into consecutive batches, pad each to its
    longest clip."""
    lengths = np.sort(np.asarray(durations, dtype=np.float64))
    padded = sum(len(batch) * batch.max() for batch in np.split(lengths, range(batch_size, len(lengths), batch_size)))
    return float((padded - lengths.sum()) / padded)


def percent(fraction: float, decimals: int) -> float:
    return round(100 * fraction, decimals)


def test_padding_floor_is_a_plain_sort_and_ours_stays_within_a_hair_of_it(padding_full):
    outcome, by_prefix = padding_full
    iemocap_like = padding.iemocap_like_durations()
    durations = {
        "iemocap": iemocap_like,
        "cropped": [min(d, padding.CROP_SECONDS) for d in iemocap_like],
    }
    for key, lengths in durations.items():
        name, values = by_prefix[key]
        assert values["num_clips"] == len(lengths) == padding.IEMOCAP_SIZE
        floor = sorted_floor(lengths)
        assert values["sorted"]["padding_fraction_mean"] == pytest.approx(floor, abs=1e-12), name
        assert floor <= values["ours"]["padding_fraction_mean"] <= floor + 0.001, name
        # ours: the same sort with 0.3 % length noise, so batch-mates change between epochs (not a fixed order)
        assert values["ours"]["batchmates_kept_next_epoch"] < 0.9, name
        assert values["random"]["padding_fraction_mean"] > 0.5, name
    for seed, draw in outcome["iemocap_like_other_draws"].items():
        lengths = padding.iemocap_like_durations(seed=seed)
        assert draw["sorted"] == pytest.approx(sorted_floor(lengths), abs=1e-12)
        assert draw["max_s"] == max(lengths)


def test_padding_numbers_of_the_readme(padding_full):
    """README, Performance: "padding per epoch, batch 32" rows and notes ¹ ²."""
    outcome, by_prefix = padding_full
    name, iemocap = by_prefix["iemocap"]
    assert percent(iemocap["ours"]["padding_fraction_mean"], 2) == 1.93  # "IEMOCAP-like durations: ours / …"
    assert percent(iemocap["transformers"]["padding_fraction_mean"], 2) == 8.29
    assert percent(iemocap["random"]["padding_fraction_mean"], 1) == 68.3
    assert iemocap["ours"]["padding_fraction_mean"] <= 0.02  # "≤ 2 %: yes²" (on the seed-0 draw)
    draws = outcome["iemocap_like_other_draws"]
    assert sorted(draws) == [0, 1, 2, 3, 4]
    ours = [draw["ours"] for draw in draws.values()]
    assert (percent(min(ours), 2), percent(max(ours), 2)) == (1.93, 2.38)  # "over seeds 0–4 ours pads 1.93–2.38 %"
    # "within 0.05 points of perfect sorting" (rounded: the largest gap, seed 2, is 0.054 points)
    assert max(percent(draw["ours"] - draw["sorted"], 2) for draw in draws.values()) <= 0.05
    _, cropped = by_prefix["cropped"]
    assert percent(cropped["ours"]["padding_fraction_mean"], 1) == 1.2  # "with max_length_seconds=20 … 1.2 %"
    corpus_name, corpus = by_prefix["corpus"]
    for row in outcome["results"]:  # the README's rows: IEMOCAP-like draws, and nEMO where it is present
        if "LengthSortedSampler" in row["name"] and (
            corpus_name.startswith("nemo4") or corpus_name not in row["name"]
        ):
            assert row["met"] is True and row["target"] == 0.02, row["name"]

    if not corpus_name.startswith("nemo4"):
        pytest.skip(f"nEMO (../shared/data/nemo4) not present: its README row is not checked ({corpus_name})")
    assert corpus["num_clips"] == 3076
    assert percent(corpus["ours"]["padding_fraction_mean"], 2) == 0.95  # "nEMO durations: … 0.95 % ≤ 2 %: yes"
    assert percent(corpus["transformers"]["padding_fraction_mean"], 2) == 3.84
    assert percent(corpus["random"]["padding_fraction_mean"], 1) == 39.4
    assert corpus["ours"]["padding_fraction_mean"] <= 0.02


# ------------------------------------------------------------------------------------------------------------------
# FLOPs per training step (no timing: counted from the shapes)
# ------------------------------------------------------------------------------------------------------------------


def flop_model(config, batch_size: int, num_samples: int) -> dict[str, int]:
    """FLOPs of one training step (forward + backward) as `FlopCounterMode` counts them, written out by hand.

    A matmul of (m × k)·(k × n) is 2mkn; its backward computes the input's gradient (2mkn) only when the input needs
    one and the weight's (2mkn) only when the weight trains. Convolutions likewise; element-wise ops, norms, softmax
    and the losses' reductions count 0. With H hidden, I feed-forward, T frames, B clips:
    - CNN (frozen: forward only): Σ_i 2·B·L_i·C_i·C_{i-1}·k_i; feature projection 2·B·T·C·H; positional
      convolution (grouped, padded by k/2) 2·B·(T+1)·H·(H/groups)·k;
    - a transformer layer's forward: Q, K, V, O 8·B·T·H², feed-forward 4·B·T·H·I, QKᵀ and AV 4·B·T²·H;
      a trained layer costs 3× (both gradients of every matmul), except that the lowest trained layer gets no
      gradient for its input (its Q, K, V projections: −3·2·B·T·H²);
    - the backbone's attention has dropout in training, so torch's CPU SDPA runs the math path (bmm: backward 2×
      forward); the pooling layer's has none and runs the fused CPU kernel, counted with torch's SDPA formulas
      (backward recomputes the scores: 5 bmm, 2.5× forward);
    - the CLS pooling layer runs on T+1 tokens and trains; α's scores c·f_t: 2·B·T·H, ×3; classifier on the
      utterance 2·B·H·C and on every frame 2·B·T·H·C, ×3 — except where the loss does not reach them: with
      λ_EAL = λ_FUAL = 0 (and for CE alone) the frame logits and α are outside the graph (forward only);
    - HF's `Wav2Vec2ForSequenceClassification`: the same backbone, then projector 2·B·T·H·P and classifier
      2·B·P·C (P = classifier_proj_size), ×3; mean pooling counts 0.
    The frozen-prefix cache skips everything below the first trained layer (`cached`).
    """
    B, H, I, C = batch_size, config.hidden_size, config.intermediate_size, config.num_labels
    P_pool = config.pooling_intermediate_size or I
    trained = config.num_trainable_layers
    frozen = config.num_hidden_layers - trained
    assert config.pooling == "cls_attention" and 0 < trained < config.num_hidden_layers
    assert config.attention_dropout > 0 and config.pooling_dropout == 0  # which SDPA kernel runs, see above

    cnn, length, channels = 0, num_samples, 1
    for dim, kernel, stride in zip(config.conv_dim, config.conv_kernel, config.conv_stride):
        length = (length - kernel) // stride + 1
        cnn += 2 * B * length * dim * channels * kernel
        channels = dim
    T = length
    k, groups = config.num_conv_pos_embeddings, config.num_conv_pos_embedding_groups
    positional = 2 * B * (T + 2 * (k // 2) - k + 1) * H * (H // groups) * k
    projection = 2 * B * T * channels * H

    layer_linear = 8 * B * T * H * H + 4 * B * T * H * I
    layer_attention = 4 * B * T * T * H
    prefix = cnn + projection + positional + frozen * (layer_linear + layer_attention)
    top_layers = trained * 3 * (layer_linear + layer_attention) - 3 * 2 * B * T * H * H

    S = T + 1
    pooling = 3 * (8 * B * S * H * H + 4 * B * S * H * P_pool) + (4 + 10) * B * S * S * H
    utterance_classifier = 3 * 2 * B * H * C
    frame_side = 2 * B * T * H + 2 * B * T * H * C  # α's scores and the frame classifier, forward
    head = pooling + utterance_classifier + 3 * frame_side
    head_without_frame_losses = pooling + utterance_classifier + frame_side

    projector = config.classifier_proj_size
    hf_head = 3 * (2 * B * T * H * projector + 2 * B * projector * C)
    return {
        "eal_fual": prefix + top_layers + head,
        "lambda0": prefix + top_layers + head_without_frame_losses,
        "ce_only": prefix + top_layers + head_without_frame_losses,
        "hf_sequence_classification": prefix + top_layers + hf_head,
        "cached": top_layers + head,
    }


CHECK_PROFILES = [
    PROFILES["smoke"],  # 2 layers (1 trained), hidden 32, 2 clips × 1 s
    replace(  # 4 layers (2 trained), a pooling feed-forward of its own size, 3 clips × 1.5 s
        PROFILES["smoke"],
        name="smoke-4-layers",
        backbone=dict(PROFILES["smoke"].backbone, num_hidden_layers=4, pooling_intermediate_size=48),
        batch_size=3,
        clip_seconds=1.5,
        epoch_clips=3,
    ),
]


@pytest.mark.parametrize("profile", CHECK_PROFILES, ids=lambda p: p.name)
def test_counted_flops_equal_the_flop_model(profile):
    config = profile.backbone_config()
    expected = flop_model(config, profile.batch_size, round(profile.clip_seconds * 16_000))
    step = head_overhead.step_flops(profile)
    assert step == {name: expected[name] for name in step}
    cache = frozen_prefix.step_flops(profile)
    assert cache == {"uncached": expected["eal_fual"], "cached": expected["cached"]}
    assert head_overhead.flop_ratio(step) == expected["eal_fual"] / expected["hf_sequence_classification"]
    assert frozen_prefix.flop_ratio(cache) == expected["eal_fual"] / expected["cached"]


def test_flop_ratios_of_the_readme_at_the_wav2vec2_base_shape():
    """Full mode (wav2vec2-base: 768 hidden, 12 layers, 6 trained; 4 clips × 3 s = 149 frames each)."""
    full = PROFILES["full"]
    config = full.backbone_config()
    assert (config.hidden_size, config.num_hidden_layers, config.num_trainable_layers) == (768, 12, 6)
    flops = flop_model(config, full.batch_size, round(full.clip_seconds * 16_000))
    # "counted, the ratio is 1.65×" (frozen-prefix cache: uncached / cached step)
    assert round(flops["eal_fual"] / flops["cached"], 2) == 1.65
    # the pooling head vs HF's classifier: the target of the timed "our stage-2 step / HF" row (≤ FLOP ratio + 0.02)
    assert flops["eal_fual"] / flops["hf_sequence_classification"] == pytest.approx(1.0945, abs=1e-4)
    # EAL + FUAL add no matmul of their own: their backward reaches the frame classifier and α's scores only
    assert flops["eal_fual"] - flops["lambda0"] == 2 * (2 * 4 * 149 * 768 * 4 + 2 * 4 * 149 * 768)
