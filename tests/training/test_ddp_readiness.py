"""Multi-GPU readiness on two gloo ranks (issue 21): the config's `ddp_timeout` reaches the process group; DDP's
`find_unused_parameters` comes from the parameters that really get gradients. The ranks are forked
(`gloo_ranks.run_ranks`): seconds each."""

import copy
import time

import numpy as np
import pytest
import torch
from datasets import Dataset
from gloo_ranks import run_ranks
from helpers import polish3_clips, tiny_config

from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.trainer.distributed import parameters_without_gradient
from modeling.training.run_config import DEFAULTS
from modeling.training.stage import ddp_settings


TIMEOUT_S = 3
MAIN_PROCESS_WORK_S = 8  # rank 0 works alone this long; rank 1 waits at a barrier


def _wait_for_a_busy_main_process(rank, out_dir):
    from modeling.training.experiment import distributed_state

    config = copy.deepcopy(DEFAULTS)
    config["training"]["ddp_timeout"] = TIMEOUT_S
    state = distributed_state(config)
    if rank == 0:
        time.sleep(MAIN_PROCESS_WORK_S)
        return {"waited_s": None, "error": None}
    start = time.monotonic()
    try:
        state.wait_for_everyone()
        error = None
    except Exception as exception:  # gloo: "Timed out waiting ... for recv" (a DistBackendError / RuntimeError)
        error = f"{type(exception).__name__}: {exception}"
    return {"waited_s": time.monotonic() - start, "error": error}


def test_ddp_timeout_of_the_config_is_the_process_groups(tmp_path):
    """`training.ddp_timeout: 3` applies to the run's process group (before the fix the experiment's first
    `PartialState()` created it with torch's default, and the waiting rank waited the whole 8 s)."""
    ranks = run_ranks(_wait_for_a_busy_main_process, tmp_path, timeout_s=MAIN_PROCESS_WORK_S + 60)
    waiting = ranks[1]
    assert waiting["error"] is not None, waiting
    assert TIMEOUT_S - 0.5 <= waiting["waited_s"] < MAIN_PROCESS_WORK_S - 2, waiting


def spec_embed_config():
    """wav2vec2-base's SpecAugment probability with SpecAugment off: `masked_spec_embed` trains but is never used."""
    return tiny_config(apply_spec_augment=False, mask_time_prob=0.05, pooling="attentive")


def test_parameters_without_gradient_are_found_by_running_a_step():
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(spec_embed_config()).eval()
    assert parameters_without_gradient(model) == ["wav2vec2.masked_spec_embed"]
    assert not model.training and all(p.grad is None for p in model.parameters())  # nothing of the probe remains

    used = Wav2Vec2ForFrameAlignedClassification(tiny_config(mask_time_prob=0.05, pooling="attentive"))
    torch.manual_seed(1), np.random.seed(1)
    expected = torch.rand(3), np.random.rand(3)
    torch.manual_seed(1), np.random.seed(1)
    assert parameters_without_gradient(used) == []  # SpecAugment on: masked_spec_embed gets its gradient
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])


def _train_two_steps(rank, out_dir):
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(spec_embed_config())
    clips = polish3_clips(8)
    dataset = Dataset.from_dict({"audio": [p for p, _ in clips], "label": [y for _, y in clips]})
    settings = ddp_settings(model)
    args = FrameAlignedTrainingArguments(
        output_dir=str(out_dir / "trainer"),
        per_device_train_batch_size=2,
        max_steps=2,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        remove_unused_columns=False,
        **settings,
    )
    collator = AudioClassificationCollator(make_feature_extractor(), max_length_seconds=0.5)
    trainer = FrameAlignedTrainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    trainer.train()
    return {"steps": trainer.state.global_step, **settings}


@pytest.mark.slow
def test_ddp_trains_with_a_trainable_parameter_that_gets_no_gradient(tmp_path, monkeypatch):
    """Two ranks, 2 steps: before the fix `find_unused_parameters` stayed off (SpecAugment's fields looked
    enabled) and step 2 failed with "Expected to have finished reduction in the prior iteration"."""
    ranks = run_ranks(_train_two_steps, tmp_path)
    assert [r["steps"] for r in ranks] == [2, 2]
    assert all(r["ddp_find_unused_parameters"] for r in ranks)


def _eval_model():
    torch.manual_seed(3)  # group-norm CNN (tiny_config's default, as wav2vec2-base): no attention mask, padding shows
    return Wav2Vec2ForFrameAlignedClassification(tiny_config(eal_weight=0.3, fual_weight=0.7))


def _eval_dataset():
    import soundfile

    clips = polish3_clips(5)  # eval batches of 2: [2, 2, 1] → under 2 ranks accelerate pads the last one
    durations = [soundfile.info(path).duration for path, _ in clips]
    return Dataset.from_dict({"audio": [p for p, _ in clips], "label": [y for _, y in clips], "duration_s": durations})


def _evaluate_in_bf16(rank, out_dir):
    seen = {}

    def compute_metrics(prediction):
        seen["logits"] = prediction.predictions.tolist()
        return {"ua": 0.0}

    args = FrameAlignedTrainingArguments(
        output_dir=str(out_dir / "trainer"),
        per_device_eval_batch_size=2,
        bf16=True,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        remove_unused_columns=False,
        train_sampling_strategy="group_by_length",
        length_column_name="duration_s",
    )
    trainer = FrameAlignedTrainer(
        model=_eval_model(),
        args=args,
        eval_dataset=_eval_dataset(),
        data_collator=AudioClassificationCollator(make_feature_extractor()),
        compute_metrics=compute_metrics,
    )
    metrics = trainer.evaluate()
    return {"logits": seen["logits"], "metrics": metrics}


@pytest.mark.slow
def test_ddp_bf16_evaluation_gives_the_final_scorings_predictions(tmp_path):
    """The UA a checkpoint is selected on is computed from the predictions the fold's report gives: two ranks,
    bf16, a padded last batch → the logits of `scoring.predict` (fp32, one process, whole clips, longest first).
    Before the fix the clip of the last batch was padded to the longest clip's length and all ran under autocast."""
    from modeling.losses import emotional_attention_loss, frame_utterance_alignment_loss
    from modeling.trainer.sampling import evaluation_batches, longest_first
    from modeling.training.scoring import predict

    ranks = run_ranks(_evaluate_in_bf16, tmp_path)
    dataset = _eval_dataset()
    model = _eval_model().eval()
    reference = predict(model, dataset, batch_size=2)
    order = longest_first(dataset)
    for rank in ranks:
        np.testing.assert_allclose(np.asarray(rank["logits"]), reference.logits[order], rtol=1e-5, atol=1e-6)
    scores = [{k: v for k, v in r["metrics"].items() if "_runtime" not in k and "_per_second" not in k} for r in ranks]
    assert scores[0] == scores[1]

    # eval_loss and its terms: sample-weighted means over the single-process batches, in fp32 (one clip each: this
    # group-norm backbone sees padding)
    collator = AudioClassificationCollator(make_feature_extractor())
    sums = np.zeros(4)
    assert evaluation_batches(dataset, 2, model.config) == [[row] for row in order]
    with torch.no_grad():
        for rows in evaluation_batches(dataset, 2, model.config):
            out = model(**collator([dataset[i] for i in rows]))
            eal = emotional_attention_loss(
                out.utterance_embedding, out.frame_embeddings, out.frame_mask, model.config.eal_margin
            )
            fual = frame_utterance_alignment_loss(out.logits, out.frame_logits, out.frame_weights, out.frame_mask)
            terms = [out.loss + 0.3 * eal + 0.7 * fual, out.loss, eal, fual]
            sums += np.array([float(term) for term in terms]) * len(rows)
    expected = sums / len(order)
    metrics = ranks[0]["metrics"]
    got = [metrics[key] for key in ("eval_loss", "eval_loss_ce", "eval_loss_eal", "eval_loss_fual")]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=2e-6)


def test_the_start_up_audio_check_is_shared_by_the_processes(tmp_path, monkeypatch):
    """Each of 2 processes decodes every other clip (not the whole corpus each); the gathered findings equal the
    single-process check's, in row order."""
    from types import SimpleNamespace

    from modeling.data import checks
    from modeling.training.experiment import find_bad_audio_in_parallel

    (tmp_path / "empty.wav").write_bytes(b"")
    paths = [p for p, _ in polish3_clips(4)]
    paths[1:1] = [str(tmp_path / "missing.wav")]
    paths.append(str(tmp_path / "empty.wav"))
    dataset = Dataset.from_dict({"audio": paths})
    expected = checks.find_bad_audio(dataset, progress=False)
    assert [bad.row for bad in expected] == [1, 5]

    decoded, load_audio = [], checks.load_audio
    monkeypatch.setattr(checks, "load_audio", lambda audio: decoded.append(audio) or load_audio(audio))
    found = {}
    for rank in (1, 0):
        state = SimpleNamespace(process_index=rank, num_processes=2)
        decoded.clear()
        found[rank] = find_bad_audio_in_parallel(
            dataset, state, progress=False, gather=lambda mine: mine + found.get(1, [])
        )
        assert decoded == paths[rank::2]
    assert found[0] == expected


def _build_longer_than_the_timeout(rank, out_dir):
    from modeling.prefix_cache.trainer import main_process_builds_first
    from modeling.training.experiment import distributed_state

    config = copy.deepcopy(DEFAULTS)
    config["training"]["ddp_timeout"] = TIMEOUT_S
    state = distributed_state(config)
    cache_dir = out_dir / "prefix_cache" / "train"

    def build():
        if rank == 0:
            time.sleep(TIMEOUT_S + 3)  # the main process builds the cache for longer than ddp_timeout
            (out_dir / "built.txt").write_text("cache")
        return (out_dir / "built.txt").read_text()

    return {"loaded": main_process_builds_first(state, build, cache_dir)}


def test_the_others_wait_for_the_prefix_cache_without_a_collective(tmp_path):
    """The main process builds the frozen-prefix cache for longer than `ddp_timeout`; the others load it after
    (they waited in a barrier before, which the watchdog ends after `ddp_timeout`)."""
    assert [r["loaded"] for r in run_ranks(_build_longer_than_the_timeout, tmp_path)] == ["cache", "cache"]
