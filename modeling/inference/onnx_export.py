"""Export a frame-aligned checkpoint to ONNX (dynamic batch and time axes) and quantise it to int8.

Files are written next to the checkpoint, as the Hub's ONNX convention (Optimum, transformers.js) expects:

    <checkpoint>/onnx/model.onnx        fp32, from `export_onnx`
    <checkpoint>/onnx/model_int8.onnx   dynamic int8 (MatMul/Gemm weights), from `quantize_int8`
    <checkpoint>/onnx/model_int8_static.onnx   static (calibrated) QDQ int8 of the convolutions and matrix products,
                                        from `quantize_int8_static` on real speech clips

`push_to_hub.py` uploads them with the checkpoint when they exist.
"""

import copy
import os
import warnings
from pathlib import Path

import torch
from torch import nn


ONNX_DIR = "onnx"
BACKEND_FILE = "backend.json"  # onnx/backend.json: the measured backend choice (`backend_choice`)
FP32_NAME = "model.onnx"
INT8_NAME = "model_int8.onnx"
INT8_STATIC_NAME = "model_int8_static.onnx"
INPUT_NAMES = ["input_values", "attention_mask"]
OUTPUT_NAMES = ["logits", "frame_logits", "frame_weights", "frame_mask"]
DEFAULT_OPSET = 17
# The int8 path that helps on CPUs: weights of the transformer's and the head's matrix products. Quantising the
# convolutions too (the feature encoder) was measured slower than fp32 PyTorch here (ecosystem-notes.md).
QUANTIZED_OP_TYPES = ("MatMul", "Gemm")
# Static (calibrated) quantisation: activation ranges are measured once on real speech, so the convolutions of the
# feature encoder can run in int8 without quantising their inputs on the fly (the cost that made dynamic int8 slower).
STATIC_OP_TYPES = ("Conv", "MatMul", "Gemm")
CALIBRATION_MAX_S = 6.0  # each calibration clip is cut to this many seconds (the ranges saturate on short clips)


def onnx_path(checkpoint: str | os.PathLike, int8: bool = False, static: bool = False) -> Path:
    """Where the export of `checkpoint` lives: `<checkpoint>/onnx/model.onnx` (or `model_int8.onnx`, or with
    `static=True` `model_int8_static.onnx`)."""
    return Path(checkpoint) / ONNX_DIR / (INT8_STATIC_NAME if static else INT8_NAME if int8 else FP32_NAME)


class _ExportedOutputs(nn.Module):
    """The model as ONNX sees it: (input_values (B, N) float32, attention_mask (B, N) int64) →
    logits (B, C), frame_logits (B, T, C), frame_weights (B, T), frame_mask (B, T) bool."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor):
        output = self.model(input_values=input_values, attention_mask=attention_mask, return_dict=True)
        return output.logits, output.frame_logits, output.frame_weights, output.frame_mask


def export_model(model: nn.Module, path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Export a loaded `*ForFrameAlignedClassification` model to `path` (TorchScript-based exporter,
    `dynamo=False`: it traces this model with dynamic axes; see docs). Axes `batch` and `samples` (inputs),
    `frames` (outputs) are dynamic. The file is written under a temporary name and renamed. Returns `path`.

    The caller's model is left as it was: a copy is put in eval mode and float32 and exported (the exporter restores
    the traced module's training mode recursively, and `.float()` would convert a bf16 model in place).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).eval().float()
    wrapper = _ExportedOutputs(model)
    # Two clips of different lengths (1 s and 0.75 s, zero-padded): the trace sees a real padded batch.
    mask = torch.ones(2, 16_000, dtype=torch.long)
    mask[1, 12_000:] = 0
    example = torch.randn(2, 16_000) * 0.1 * mask
    dynamic_axes = {
        "input_values": {0: "batch", 1: "samples"},
        "attention_mask": {0: "batch", 1: "samples"},
        "logits": {0: "batch"},
        "frame_logits": {0: "batch", 1: "frames"},
        "frame_weights": {0: "batch", 1: "frames"},
        "frame_mask": {0: "batch", 1: "frames"},
    }
    temporary = path.with_name(path.name + ".tmp")
    # The tracer's warnings (a tensor read as a Python value: the short-clip padding, transformers' mask helpers) and
    # the exporter's constant-folding notes flood every export (12 lines per model, each app.py start-up). They are
    # expected: clips reach an exported model padded to one frame (load_audio), and the trace is checked against
    # PyTorch on other lengths and padded batches (tests/inference/test_inference.py), so they are silenced here only.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        torch.onnx.export(
            wrapper,
            (example, mask),
            str(temporary),
            input_names=INPUT_NAMES,
            output_names=OUTPUT_NAMES,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
        )
    os.replace(temporary, path)
    return path


def export_onnx(
    checkpoint: str | os.PathLike, output: str | os.PathLike | None = None, opset: int = DEFAULT_OPSET
) -> Path:
    """Load the checkpoint folder `checkpoint` (a `save_pretrained` directory) and export it to
    `output` (default `<checkpoint>/onnx/model.onnx`). Returns the path written.

    Raises:
        FileNotFoundError: `checkpoint` has no config.json.
    """
    from ..auto_frame_aligned import AutoModelForFrameAlignedClassification

    if not (Path(checkpoint) / "config.json").is_file():
        raise FileNotFoundError(f"{checkpoint}: not a checkpoint folder (no config.json)")
    # Eager attention: one graph for every exporter/runtime version (SDPA exports too, but as a decomposed graph).
    model = AutoModelForFrameAlignedClassification.from_pretrained(checkpoint, attn_implementation="eager")
    return export_model(model, output or onnx_path(checkpoint), opset=opset)


def quantize_int8(fp32_path: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Dynamic int8 quantisation (onnxruntime.quantization.quantize_dynamic) of the MatMul/Gemm weights of an
    exported model: weights stored as int8 (per tensor), activations quantised on the fly in each call; the
    convolutions, norms and softmaxes stay fp32. Output default: `model_int8.onnx` beside `fp32_path`. Returns the
    path written."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32_path = Path(fp32_path)
    output = Path(output) if output else fp32_path.with_name(INT8_NAME)
    temporary = output.with_name(output.name + ".tmp")
    quantize_dynamic(
        fp32_path,
        temporary,
        op_types_to_quantize=list(QUANTIZED_OP_TYPES),
        per_channel=False,
        weight_type=QuantType.QInt8,
    )
    os.replace(temporary, output)
    return output


class _CalibrationClips:
    """onnxruntime's `CalibrationDataReader` over real clips: one clip (1, N) per call, normalised by the checkpoint's
    feature extractor as the pipelines do."""

    def __init__(self, clips: list, feature_extractor):
        from ..audio import load_audio

        self.feature_extractor = feature_extractor
        rate = int(feature_extractor.sampling_rate)
        self._waveforms = iter(
            [load_audio(clip, target_sampling_rate=rate)[: int(CALIBRATION_MAX_S * rate)] for clip in clips]
        )

    def get_next(self) -> dict | None:
        waveform = next(self._waveforms, None)
        if waveform is None:
            return None
        features = self.feature_extractor(
            [waveform],
            sampling_rate=self.feature_extractor.sampling_rate,
            return_attention_mask=True,
            return_tensors="np",
        )
        return {
            "input_values": features["input_values"].astype("float32"),
            "attention_mask": features["attention_mask"].astype("int64"),
        }


def quantize_int8_static(
    fp32_path: str | os.PathLike,
    clips: list,
    output: str | os.PathLike | None = None,
    feature_extractor=None,
) -> Path:
    """Static int8 quantisation (onnxruntime.quantization.quantize_static, QDQ format) of an exported model:
    Conv, MatMul and Gemm weights int8 per output channel, their input activations uint8 with ranges calibrated
    (MinMax) on `clips` (audio files or arrays at 16 kHz: real speech, each cut to `CALIBRATION_MAX_S` seconds).
    The model is shape-inferred first (`quant_pre_process`, without its own optimisation: ONNX Runtime fuses at load).
    Output default: `model_int8_static.onnx` beside `fp32_path`. Returns the path written.

    Raises:
        ValueError: no calibration clips.
    """
    import tempfile

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from ..collator import make_feature_extractor

    if not clips:
        raise ValueError("static int8 quantisation needs calibration clips (real speech); got none")
    fp32_path = Path(fp32_path)
    output = Path(output) if output else fp32_path.with_name(INT8_STATIC_NAME)
    temporary = output.with_name(output.name + ".tmp")
    reader = _CalibrationClips(list(clips), feature_extractor or make_feature_extractor())
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_optimization=True, skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(temporary),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(STATIC_OP_TYPES),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"CalibTensorRangeSymmetric": False},
        )
    os.replace(temporary, output)
    return output
