"""CPU inference at scale: ONNX export and int8 quantisation (`onnx_export`), an ONNX Runtime backend for the
pipelines (`onnx_backend`), and the resumable batch prediction job over thousands of files (`batch`).

A wing: it imports the core (`modeling/*.py`) and `modeling.rundir` (fault points, atomic writes); nothing imports it
but the
CLI (`modeling/cli/predict.py`) and the benchmarks. onnx/onnxruntime are needed only for the ONNX parts
(`pip install -e ".[onnx]"`).
"""

from .onnx_backend import BACKENDS, OnnxFrameAlignedModel, load_pipeline


__all__ = ["BACKENDS", "OnnxFrameAlignedModel", "load_pipeline"]
