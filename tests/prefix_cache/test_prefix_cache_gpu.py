"""The frozen-prefix cache on GPUs (issue 21, item 6): fp16 storage that would overflow is refused with the fix;
under DDP the cache goes on disk (built once by the main process, memory-mapped by the others)."""

import pytest
import torch
from datasets import Dataset
from helpers import polish3_clips, tiny_config

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.data.folds import Fold
from modeling.prefix_cache.cache import build_prefix_cache
from modeling.rundir.layout import RunDir
from modeling.training.stage import prefix_cache_dirs


def test_fp16_storage_that_would_overflow_is_refused(tmp_path):
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config(num_trainable_layers=1)).eval()
    with torch.no_grad():  # the last frozen layer's output scale: values far above float16's 65504
        model.wav2vec2.encoder.layers[0].final_layer_norm.weight.fill_(1e6)
    clips = polish3_clips(2)
    dataset = Dataset.from_dict({"audio": [p for p, _ in clips], "label": [y for _, y in clips]})
    collator = AudioClassificationCollator(make_feature_extractor())
    with pytest.raises(ValueError, match=r"above float16's largest value \(65504\).*prefix_cache_dtype: bfloat16"):
        build_prefix_cache(model, dataset, collator, batch_size=2, dtype=torch.float16)
    cache = build_prefix_cache(model, dataset, collator, batch_size=2, dtype=torch.bfloat16)
    assert all(torch.isfinite(cache[i]["hidden_states"].float()).all() for i in range(2))


def test_the_cache_goes_on_disk_under_ddp(tmp_path):
    run, fold = RunDir(tmp_path), Fold(1, (), (), ())
    assert prefix_cache_dirs(run, fold, "stage2", {"prefix_cache_on_disk": False}, num_processes=1) is None
    on_disk = prefix_cache_dirs(run, fold, "stage2", {"prefix_cache_on_disk": False}, num_processes=2)
    assert on_disk == {split: run.prefix_cache(1, "stage2", split).resolve() for split in ("train", "validation")}
    assert prefix_cache_dirs(run, fold, "stage2", {"prefix_cache_on_disk": True}, num_processes=1) == on_disk
