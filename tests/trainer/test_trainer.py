"""FrameAlignedTrainer: loss composition, logged terms, parameter groups, freezing, gradient accumulation."""

import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from helpers import layer_norm_overrides, polish3_clips, tiny_config

from modeling import FrameAlignedTrainer, FrameAlignedTrainingArguments, Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.losses import emotional_attention_loss, frame_utterance_alignment_loss
from modeling.trainer.sampling import LengthSortedSampler
from modeling.trainer.trainer import auxiliary_losses


@pytest.fixture(scope="module")
def clips():
    return polish3_clips(4)


@pytest.fixture(scope="module")
def dataset(clips):
    return Dataset.from_dict({"audio": [path for path, _ in clips], "label": [label for _, label in clips]})


def make_trainer(tmp_path, model, dataset=None, **args):
    settings = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=1e-3,
        report_to=[],
        remove_unused_columns=False,
        save_strategy="no",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )
    settings.update(args)
    return FrameAlignedTrainer(
        model=model,
        args=FrameAlignedTrainingArguments(**settings),
        train_dataset=dataset,
        eval_dataset=dataset,
        data_collator=AudioClassificationCollator(make_feature_extractor()),
    )


def make_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return Wav2Vec2ForFrameAlignedClassification(tiny_config(**overrides))


def sgd_step(tmp_path, model, dataset, batch_size: int, accumulation: int, **args):
    """One optimizer step of plain SGD (constant rate) with `batch_size` × `accumulation` clips; returns the
    trainer."""
    trainer = make_trainer(
        tmp_path / f"{batch_size}",
        model,
        dataset,
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        optim="sgd",
        lr_scheduler_type="constant",
        **args,
    )
    trainer.train()
    return trainer


def collate(clips):
    return AudioClassificationCollator(make_feature_extractor())([{"audio": p, "label": y} for p, y in clips])


def test_compute_loss_is_ce_plus_weighted_eal_and_fual(tmp_path, clips):
    model = make_model(pooling="cls_attention", eal_weight=0.3, fual_weight=0.7, eal_margin=0.5).eval()
    trainer = make_trainer(tmp_path, model)
    batch = collate(clips)
    loss, outputs = trainer.compute_loss(model, batch, return_outputs=True)

    with torch.no_grad():
        out = model(**batch)
    eal = emotional_attention_loss(out.utterance_embedding, out.frame_embeddings, out.frame_mask, 0.5)
    fual = frame_utterance_alignment_loss(out.logits, out.frame_logits, out.frame_weights, out.frame_mask)
    assert loss.item() == pytest.approx((out.loss + 0.3 * eal + 0.7 * fual).item(), rel=1e-5)
    assert outputs.loss.item() == pytest.approx(loss.item())
    assert eal > 0 and fual > 0


def test_stage1_pooling_trains_on_cross_entropy_only(tmp_path, clips):
    model = make_model(pooling="attentive", eal_weight=0.3, fual_weight=0.7).eval()
    trainer = make_trainer(tmp_path, model)
    batch = collate(clips)
    loss = trainer.compute_loss(model, batch)
    with torch.no_grad():
        assert loss.item() == pytest.approx(model(**batch).loss.item(), rel=1e-6)


def test_loss_terms_are_logged_as_window_averages_for_train_and_eval(tmp_path, dataset):
    model = make_model(pooling="cls_attention", eal_weight=0.5, fual_weight=0.25)
    trainer = make_trainer(
        tmp_path,
        model,
        dataset,
        per_device_train_batch_size=2,
        max_steps=4,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=4,
    )
    trainer.train()
    train_logs = [log for log in trainer.state.log_history if "loss" in log and "loss_ce" in log]
    assert len(train_logs) == 2
    for log in train_logs:
        # the logged loss is the window mean of CE + λ·EAL + λ·FUAL, and the terms are window means too
        assert log["loss"] == pytest.approx(log["loss_ce"] + 0.5 * log["loss_eal"] + 0.25 * log["loss_fual"], abs=2e-4)
    eval_log = next(log for log in trainer.state.log_history if "eval_loss" in log)
    assert eval_log["eval_loss"] == pytest.approx(
        eval_log["eval_loss_ce"] + 0.5 * eval_log["eval_loss_eal"] + 0.25 * eval_log["eval_loss_fual"], abs=1e-5
    )


def test_optimizer_has_one_group_per_part_with_its_learning_rate_and_decay(tmp_path):
    model = make_model(pooling="cls_attention", num_trainable_layers=1)
    trainer = make_trainer(
        tmp_path,
        model,
        backbone_learning_rate=1e-5,
        pooling_learning_rate=3e-4,
        classifier_learning_rate=2e-4,
        weight_decay=0.01,
        classifier_weight_decay=0.05,
    )
    optimizer = trainer.create_optimizer()
    groups = {group["name"]: group for group in optimizer.param_groups}
    assert {name: group["lr"] for name, group in groups.items()} == {
        "backbone": 1e-5,
        "backbone_no_decay": 1e-5,
        "pooling": 3e-4,
        "pooling_no_decay": 3e-4,
        "classifier": 2e-4,
        "classifier_no_decay": 2e-4,
    }
    assert groups["backbone"]["weight_decay"] == 0.01 and groups["classifier"]["weight_decay"] == 0.05
    assert groups["pooling_no_decay"]["weight_decay"] == 0.0

    names = {id(p): n for n, p in model.named_parameters()}
    grouped = {names[id(p)]: group["name"] for group in optimizer.param_groups for p in group["params"]}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(grouped) == trainable  # frozen parameters are not handed to the optimizer
    assert grouped["classifier.weight"] == "classifier" and grouped["classifier.bias"] == "classifier_no_decay"
    assert grouped["pooler.cls_token"].startswith("pooling")
    assert grouped["wav2vec2.encoder.layers.1.attention.q_proj.weight"] == "backbone"
    assert not any(n.startswith(("wav2vec2.encoder.layers.0.", "wav2vec2.feature_extractor.")) for n in grouped)


def test_unset_group_learning_rates_fall_back_to_learning_rate(tmp_path):
    trainer = make_trainer(tmp_path, make_model(), learning_rate=7e-4)
    assert {group["lr"] for group in trainer.create_optimizer().param_groups} == {7e-4}


@pytest.mark.parametrize("pooling", ["attentive", "cls_attention"])
def test_gradient_accumulation_gives_the_same_update_as_the_bigger_batch(tmp_path, dataset, pooling):
    """4 clips in one batch vs 2 × 2 with accumulation: same weights after one optimizer step.

    A layer-norm backbone (it receives the attention mask) makes outputs independent of batch composition.
    SGD makes the update the gradient itself (Adam would blow up float noise in gradients that are exactly zero
    in theory, such as the attentive score's bias, to full-size steps).
    """
    weights = []
    for batch_size, accumulation in ((4, 1), (2, 2)):
        model = make_model(pooling=pooling, num_trainable_layers=1, **layer_norm_overrides())
        sgd_step(tmp_path, model, dataset, batch_size, accumulation, learning_rate=0.5)
        weights.append({n: p.detach().clone() for n, p in model.named_parameters()})
    changed = 0
    for name, tensor in weights[0].items():
        torch.testing.assert_close(weights[1][name], tensor, atol=1e-6, rtol=1e-4, msg=name)
        changed += not torch.equal(tensor, make_model(pooling=pooling, **layer_norm_overrides()).state_dict()[name])
    assert changed > 0


def reference_sgd_update(model, batch, learning_rate):
    """-lr · ∇(CE + λ_EAL·EAL + λ_FUAL·FUAL) on `batch`, computed here without the Trainer: the one-step SGD update."""
    model = model.train()
    model.freeze_for_training()
    model.zero_grad()
    out = model(**batch)
    loss = out.loss
    if model.config.uses_alignment_losses:
        loss = (
            loss
            + model.config.eal_weight
            * emotional_attention_loss(
                out.utterance_embedding, out.frame_embeddings, out.frame_mask, model.config.eal_margin
            )
            + model.config.fual_weight
            * frame_utterance_alignment_loss(out.logits, out.frame_logits, out.frame_weights, out.frame_mask)
        )
    loss.backward()
    return {n: -learning_rate * p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("pooling", ["attentive", "cls_attention"])
def test_unclipped_gradient_accumulation_has_the_scale_of_the_bigger_batch(tmp_path, dataset, clips, pooling):
    """Without gradient clipping (which rescales any gradient to norm ≤ 1 and so hides a wrong scale): one SGD step of
    4 clips, and of 2 × 2 clips with accumulation, both move the weights by exactly -lr · ∇(mean loss over the 4
    clips), computed here without the Trainer. If the Trainer stopped dividing the loss by the accumulation steps
    (`accepts_loss_kwargs = True` on the model), the accumulated update would be 2× too large.
    """
    overrides = dict(
        pooling=pooling, num_trainable_layers=1, eal_weight=0.5, fual_weight=0.25, **layer_norm_overrides()
    )
    learning_rate = 0.5
    initial = make_model(**overrides).state_dict()
    expected = reference_sgd_update(make_model(**overrides), collate(clips), learning_rate)
    assert len(expected) > 0
    deltas = {}
    for batch_size, accumulation in ((4, 1), (2, 2)):
        model = make_model(**overrides)
        trainer = sgd_step(
            tmp_path, model, dataset, batch_size, accumulation, learning_rate=learning_rate, max_grad_norm=0.0
        )
        assert trainer.state.global_step == 1
        deltas[accumulation] = {n: p.detach() - initial[n] for n, p in model.named_parameters()}

    reference = torch.cat([expected[n].flatten() for n in sorted(expected)])
    # The update is large enough that clipping at norm 1 would have changed it (the regime that hid the bug).
    assert reference.norm() / learning_rate > 1.0
    for accumulation, delta in deltas.items():
        for name, tensor in delta.items():
            if name not in expected:  # frozen: never moves
                assert torch.equal(tensor, torch.zeros_like(tensor)), (accumulation, name)
        update = torch.cat([delta[n].flatten() for n in sorted(expected)])
        # the scale of the update: 1, not 2 (loss not divided by the accumulation steps) nor 1/2 (divided twice)
        scale = float(update @ reference / (reference @ reference))
        assert scale == pytest.approx(1.0, abs=1e-5), (accumulation, scale)
        for name in expected:
            torch.testing.assert_close(delta[name], expected[name], atol=1e-6, rtol=1e-4, msg=f"{accumulation} {name}")


def test_bf16_training_on_cpu_runs_the_head_in_bf16_and_computes_the_losses_in_fp32(tmp_path, dataset):
    """`training.bf16` (README) on CPU: accelerate runs the model's forward under bf16 autocast and hands back fp32
    outputs; EAL and FUAL must then be computed in fp32, outside autocast. Under CPU autocast, FUAL (a KL between
    nearly equal distributions) computed from bf16 log-probabilities is off by ~25 % and EAL by ~0.5 % on this
    model, so each logged step is compared with the losses recomputed here in fp32 from that step's outputs.
    """
    model = make_model(pooling="cls_attention", eal_weight=0.5, fual_weight=0.25)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    steps, head_dtypes = [], []
    model.classifier.register_forward_hook(
        lambda module, args, output: head_dtypes.append((args[0].dtype, output.dtype)) if module.training else None
    )
    model.register_forward_hook(
        lambda module, args, kwargs, output: steps.append((kwargs["labels"], output)) if module.training else None,
        with_kwargs=True,
    )
    trainer = make_trainer(
        tmp_path,
        model,
        dataset,
        per_device_train_batch_size=2,
        max_steps=3,
        logging_steps=1,
        bf16=True,
        learning_rate=1e-2,
    )
    trainer.train()

    # autocast was on in the pooling and classifier path: bf16 in and out of the classifier at every call
    assert len(head_dtypes) == 2 * 3  # utterance and frames, 3 steps
    assert set(head_dtypes) == {(torch.bfloat16, torch.bfloat16)}
    logs = [log for log in trainer.state.log_history if "loss" in log and "loss_ce" in log]
    assert [log["step"] for log in logs] == [1, 2, 3] and len(steps) == 3
    for log, (labels, out) in zip(logs, steps):
        assert all(math.isfinite(log[name]) for name in ("loss", "loss_ce", "loss_eal", "loss_fual"))
        # the outputs handed to the loss are fp32, holding bf16 values (computed under autocast)
        assert out.logits.dtype == torch.float32 and torch.equal(out.logits.bfloat16().float(), out.logits)
        eal = emotional_attention_loss(out.utterance_embedding, out.frame_embeddings, out.frame_mask, 0.8)
        fual = frame_utterance_alignment_loss(out.logits, out.frame_logits, out.frame_weights, out.frame_mask)
        ce = torch.nn.functional.cross_entropy(out.logits, labels)
        assert log["loss_ce"] == pytest.approx(ce.item(), abs=2e-6), log
        assert log["loss_eal"] == pytest.approx(eal.item(), abs=2e-6), log
        assert log["loss_fual"] == pytest.approx(fual.item(), abs=2e-6), log
        assert log["loss_fual"] > 1e-4
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert any(n.startswith("pooler.") for n in changed) and "classifier.weight" in changed
    assert any(n.startswith("wav2vec2.encoder.layers.1.") for n in changed)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # fp32 master weights, bf16 only in autocast


def test_loss_terms_are_computed_in_fp32_under_a_callers_bf16_autocast(tmp_path, clips):
    """`compute_loss` inside `torch.autocast` (a custom loop, `benchmarks/gpu.py`): the model's outputs are then bf16,
    and EAL/FUAL must still be the fp32 values of those outputs. On the CPU, FUAL computed in bf16 was 25 % off here.
    """
    model = make_model(pooling="cls_attention", eal_weight=0.5, fual_weight=0.25).train()
    trainer = make_trainer(tmp_path, model)
    outputs = []
    model.register_forward_hook(lambda module, args, output: outputs.append(output))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = trainer.compute_loss(model, collate(clips))
    (out,) = outputs
    assert out.logits.dtype == out.frame_logits.dtype == out.frame_embeddings.dtype == torch.bfloat16
    with torch.no_grad():
        eal = emotional_attention_loss(
            out.utterance_embedding.float(), out.frame_embeddings.float(), out.frame_mask, 0.8
        ).item()
        fual = frame_utterance_alignment_loss(
            out.logits.float(), out.frame_logits.float(), out.frame_weights.float(), out.frame_mask
        ).item()
    terms = trainer.loss_terms.pop("train")
    assert terms["loss_eal"] == pytest.approx(eal, rel=1e-5)
    assert terms["loss_fual"] == pytest.approx(fual, rel=1e-5) and fual > 1e-4
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(terms["loss_ce"] + 0.5 * eal + 0.25 * fual, rel=1e-5)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_trainer_freezes_what_the_config_says(tmp_path, dataset):
    model = make_model(pooling="cls_attention", num_trainable_layers=1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    make_trainer(tmp_path, model, dataset, max_steps=2, learning_rate=1e-2).train()
    for name, parameter in model.named_parameters():
        frozen = name.startswith(
            (
                "wav2vec2.feature_extractor.",
                "wav2vec2.feature_projection.",
                "wav2vec2.encoder.pos_conv_embed.",
                "wav2vec2.encoder.layers.0.",
                "wav2vec2.encoder.layer_norm.",
            )
        )
        assert torch.equal(before[name], parameter.detach()) == frozen, name


def test_a_term_with_zero_weight_is_logged_but_builds_no_graph(tmp_path, clips):
    model = make_model(pooling="cls_attention", eal_weight=0.0, fual_weight=0.2).train()
    batch = collate(clips)
    outputs = model(**batch)
    terms = auxiliary_losses(outputs, model.config)
    assert not terms["loss_eal"].requires_grad and terms["loss_eal"] > 0
    assert terms["loss_fual"].requires_grad
    loss = make_trainer(tmp_path, model).compute_loss(model, batch)
    assert loss.requires_grad


def test_group_by_length_sorts_the_whole_training_set(tmp_path, dataset):
    lengths = [float(d) for d in (1.0, 3.0, 2.0, 4.0)]
    with_lengths = dataset.add_column("duration_s", lengths)
    trainer = make_trainer(
        tmp_path,
        make_model(),
        with_lengths,
        per_device_train_batch_size=2,
        train_sampling_strategy="group_by_length",
        length_column_name="duration_s",
    )
    sampler = trainer._get_train_sampler()
    assert isinstance(sampler, LengthSortedSampler)
    batches = [sorted(lengths[i] for i in list(sampler)[k : k + 2]) for k in (0, 2)]
    assert sorted(batches) == [[1.0, 2.0], [3.0, 4.0]]  # no batch mixes a short and a long clip


def test_group_by_length_evaluates_longest_first_without_a_length_column(tmp_path, dataset, clips):
    """The README's recipe (`train_sampling_strategy="group_by_length"`, no `length_column_name`) evaluates too:
    transformers' own eval sampler would raise for want of an `input_ids` column; ours runs longest first."""
    import soundfile as sf

    trainer = make_trainer(
        tmp_path, make_model(), dataset, train_sampling_strategy="group_by_length", per_device_eval_batch_size=2
    )
    durations = [sf.info(path).duration for path, _ in clips]
    assert list(trainer._get_eval_sampler(dataset)) == sorted(range(len(clips)), key=lambda i: (-durations[i], i))
    metrics = trainer.evaluate()
    assert np.isfinite(metrics["eval_loss"])
