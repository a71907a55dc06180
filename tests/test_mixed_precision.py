"""Mixed precision as on a GPU (issue 21, item 7): under CPU bf16 autocast the frame weights α are a softmax
computed in fp32 (CUDA autocast promotes softmax to fp32; CPU autocast did not: α summed to 1 within 1e-3 only),
so FUAL, a KL divergence against α, is never negative."""

import pytest
import torch
from helpers import polish3_clips, tiny_config

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.losses import frame_utterance_alignment_loss


@pytest.mark.parametrize("pooling", ["cls_attention", "attentive", "self_attention"])
def test_frame_weights_are_an_fp32_softmax_under_bf16_autocast(pooling):
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config(pooling=pooling)).eval()
    clips = polish3_clips(3)
    batch = AudioClassificationCollator(make_feature_extractor())([{"audio": p, "label": y} for p, y in clips])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(**batch)
    assert out.logits.dtype == torch.bfloat16  # the model does run in bf16
    assert out.frame_weights.dtype == torch.float32
    sums = out.frame_weights.sum(-1)
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-6)
    assert (out.frame_weights[~out.frame_mask] == 0).all()
    fual = frame_utterance_alignment_loss(
        out.logits.float(), out.frame_logits.float(), out.frame_weights, out.frame_mask
    )
    assert fual >= 0


def test_a_bf16_config_is_accepted_on_a_machine_without_a_gpu(tmp_path):
    """`training.bf16: true` runs as CPU autocast where there is no GPU (the check refused it: "Your setup doesn't
    support bf16/gpu"), with the stage's TrainingArguments on the CPU."""
    from runs import write_config

    from modeling.data.folds import Fold
    from modeling.training.config_checks import check_training_setup
    from modeling.training.run_config import resolve_config
    from modeling.training.stage import training_arguments

    config = resolve_config(write_config(tmp_path / "bf16.yaml", training={"bf16": True}))
    assert check_training_setup(config) == []
    if not torch.cuda.is_available():
        args = training_arguments(config, "stage2", Fold(1, (), (), ()), tmp_path / "stage2")
        assert args.bf16 and args.use_cpu and args.device.type == "cpu"
