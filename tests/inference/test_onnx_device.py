"""Devices of the inference entry points (issue 21, item 10): the ONNX backends take the pipeline's `device` and
pick ONNX Runtime's CUDA provider for a GPU (a clear error where it is not installed); `predict.py` uses the GPU
with batches of 16 when there is one."""

import pytest
import torch

from modeling.cli.predict import GPU_BATCH_SIZE, device_and_batch_size
from modeling.inference import load_pipeline
from modeling.inference.onnx_backend import execution_providers


CUDA_AND_CPU = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(
    "device, expected",
    [
        (None, ["CPUExecutionProvider"]),
        (-1, ["CPUExecutionProvider"]),
        ("cpu", ["CPUExecutionProvider"]),
        (0, [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]),
        ("cuda", [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]),
        ("cuda:1", [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"]),
        (torch.device("cuda", 2), [("CUDAExecutionProvider", {"device_id": 2}), "CPUExecutionProvider"]),
    ],
)
def test_execution_providers_follow_the_device(device, expected):
    assert execution_providers(device, available=CUDA_AND_CPU) == expected


def test_a_gpu_without_onnx_runtimes_cuda_provider_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match=r"device=0 asks for a GPU.*onnxruntime-gpu"):
        execution_providers(0, available=["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="CPU or a CUDA GPU"):
        execution_providers("mps", available=CUDA_AND_CPU)
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():  # was: TypeError, device passed twice
        from helpers import tiny_frame_aligned_model

        from modeling.collator import make_feature_extractor

        tiny_frame_aligned_model("wav2vec2").save_pretrained(tmp_path)  # a checkpoint: the loader checks that first
        make_feature_extractor().save_pretrained(tmp_path)
        with pytest.raises(ValueError, match="onnxruntime-gpu"):
            load_pipeline(tmp_path, backend="onnx", device=0)


def test_predict_uses_the_gpu_with_bigger_batches_when_there_is_one(monkeypatch):
    assert device_and_batch_size("cpu", None) == ("cpu", 1)
    assert device_and_batch_size("cuda:1", None) == ("cuda:1", GPU_BATCH_SIZE)
    assert device_and_batch_size(None, 4) == ("cuda:0" if torch.cuda.is_available() else "cpu", 4)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_and_batch_size(None, None) == ("cuda:0", GPU_BATCH_SIZE)
    assert device_and_batch_size(None, None, engine="ray") == ("cpu", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_and_batch_size(None, None) == ("cpu", 1)
