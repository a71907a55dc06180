"""An ONNX Runtime backend for the pipelines: `OnnxFrameAlignedModel` stands in for the PyTorch model.

```python
from modeling.inference import load_pipeline
timeline = load_pipeline("runs/demo/fold1/stage2/best", backend="onnx")        # or "onnx-int8", "torch"
timeline("speech.flac")["predicted"]
```

The ONNX graph (see `onnx_export`) takes `input_values` (B, N) float32 and `attention_mask` (B, N) int64 and returns
`logits` (B, C), `frame_logits` (B, T, C), `frame_weights` (B, T) and `frame_mask` (B, T) bool; the wrapper returns
them as a `FrameAlignedClassifierOutput` of torch tensors, so `FrameAlignedEmotionPipeline` and transformers'
`audio-classification` pipeline run it unchanged. No PyTorch weights are loaded (only the config).

transformers' pipelines check the model's class name against the Auto mapping of their task and log an error for
any other ("The model 'X' is not supported for audio-classification"). The wrapper is registered with
`AutoModelForAudioClassification` the way transformers expects a custom model to be (`register`, under a config class
of its own, `OnnxFrameAlignedConfig`, so the PyTorch models stay what the frame-aligned configs map to): the check
passes and transformers' logging is left alone.
"""

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForAudioClassification, PreTrainedConfig

from ..modeling_frame_aligned import FrameAlignedClassifierOutput
from ..rundir.atomic import atomic_write_json
from .job_record import WEIGHT_SUFFIXES, model_fingerprint
from .onnx_export import BACKEND_FILE, ONNX_DIR, OUTPUT_NAMES, export_onnx, onnx_path, quantize_int8


logger = logging.getLogger(__name__)
BACKENDS = ("torch", "onnx", "onnx-int8", "onnx-int8-static")
# `load_pipeline` keyword arguments that go to the model's `from_pretrained` (the rest go to the pipeline).
MODEL_KWARGS = ("dtype", "attn_implementation", "device_map")


def cuda_device_index(device) -> int | None:
    """The CUDA device index `device` asks for (a pipeline's `device`: -1, "cpu", 0, "cuda", "cuda:1",
    `torch.device`), or None for the CPU. Raises `ValueError` for another kind of device."""
    if device is None:
        return None
    if isinstance(device, int):
        return device if device >= 0 else None
    device = torch.device(device)
    if device.type == "cpu":
        return None
    if device.type != "cuda":
        raise ValueError(f"device {str(device)!r}: the ONNX backends run on the CPU or a CUDA GPU")
    return device.index or 0


def execution_providers(device=None, available: list[str] | None = None) -> list:
    """ONNX Runtime's execution providers for `device` (see `cuda_device_index`): the CUDA provider on that GPU
    (with the CPU provider for the operators it lacks, e.g. int8 `MatMulInteger`), or the CPU provider.

    Raises:
        ValueError: a GPU is asked for but this ONNX Runtime has no CUDA provider (`pip install onnxruntime-gpu`).
    """
    index = cuda_device_index(device)
    if index is None:
        return ["CPUExecutionProvider"]
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise ValueError(
            f"device={device!r} asks for a GPU, but this ONNX Runtime has no CUDAExecutionProvider (installed: "
            f"{available}): pip install onnxruntime-gpu, or pass device=-1 for the CPU."
        )
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def _session(path: Path, num_threads: int | None, providers: list | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if num_threads:
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options, providers=providers or ["CPUExecutionProvider"])


class OnnxFrameAlignedModel(nn.Module):
    """A frame-aligned model run by ONNX Runtime (CPU or CUDA), with the PyTorch model's call signature.

    Inputs and outputs are CPU tensors whatever the device (ONNX Runtime copies them to and from the GPU).

    Args:
        path: the `.onnx` file.
        config: the checkpoint's `Wav2Vec2FrameAlignedConfig` (labels, conv geometry for the pipelines).
        num_threads: ONNX Runtime intra-op threads (default: ONNX Runtime's choice, all cores).
        providers: ONNX Runtime execution providers (default: the CPU's; see `execution_providers`).
    """

    main_input_name = "input_values"

    def __init__(self, path: str | os.PathLike, config, num_threads: int | None = None, providers: list | None = None):
        super().__init__()
        self.path = Path(path)
        self.config = config
        self.session = _session(self.path, num_threads, providers)
        self.name_or_path = getattr(config, "_name_or_path", str(self.path))

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def can_generate(self) -> bool:
        return False

    def forward(self, input_values, attention_mask=None, **unused) -> FrameAlignedClassifierOutput:
        """input_values (B, N) float, attention_mask (B, N) (default: all ones) → the four outputs as tensors."""
        values = np.ascontiguousarray(torch.as_tensor(input_values).float().numpy())
        if attention_mask is None:
            mask = np.ones(values.shape, dtype=np.int64)
        else:
            mask = np.ascontiguousarray(torch.as_tensor(attention_mask).numpy().astype(np.int64))
        outputs = self.session.run(OUTPUT_NAMES, {"input_values": values, "attention_mask": mask})
        named = {name: torch.from_numpy(np.asarray(array)) for name, array in zip(OUTPUT_NAMES, outputs)}
        return FrameAlignedClassifierOutput(**named)


class OnnxFrameAlignedConfig(PreTrainedConfig):
    """The key `OnnxFrameAlignedModel` is registered under in `AutoModelForAudioClassification`'s mapping, for the
    pipelines' supported-model check. The wrapper itself carries the checkpoint's own config, never this one."""

    model_type = "frame-aligned-onnx"


AutoModelForAudioClassification.register(OnnxFrameAlignedConfig, OnnxFrameAlignedModel, exist_ok=True)


SOURCE_FILE = "source.json"  # onnx/source.json: the fingerprint of the checkpoint files the ONNX files come from


def ensure_onnx(checkpoint: str | os.PathLike, int8: bool = False) -> Path:
    """The checkpoint's ONNX file (`onnx/model.onnx` or `onnx/model_int8.onnx`), exported/quantised first if absent
    — or again if the checkpoint's weights changed since the export (`onnx/source.json` records the fingerprint of
    the files exported, `job_record.model_fingerprint`: a checkpoint retrained or replaced at the same path would
    otherwise run on its old ONNX files, with no error). An export without that record (older ones) is kept, as is
    a folder without weights (ONNX files downloaded from the Hub)."""
    _remove_stale_export(Path(checkpoint))
    path = onnx_path(checkpoint, int8=int8)
    if path.is_file():
        return path
    fp32 = onnx_path(checkpoint)
    if not fp32.is_file():
        export_onnx(checkpoint, fp32)
        atomic_write_json(fp32.parent / SOURCE_FILE, model_fingerprint(Path(checkpoint)))
    return quantize_int8(fp32, path) if int8 else fp32


def _remove_stale_export(checkpoint: Path) -> None:
    """Delete the ONNX files, and the backend choice measured on them, exported from other weights than the
    checkpoint's (see `ensure_onnx`)."""
    source = checkpoint / ONNX_DIR / SOURCE_FILE
    if not source.is_file():
        return
    current = model_fingerprint(checkpoint)
    if not any(name.endswith(WEIGHT_SUFFIXES) for name in current) or json.loads(source.read_text()) == current:
        return
    logger.warning("%s: the weights changed since its ONNX export: exporting again", checkpoint)
    for stale in [*source.parent.glob("*.onnx"), *source.parent.glob("*.onnx.data"), source.parent / BACKEND_FILE]:
        stale.unlink(missing_ok=True)
    source.unlink()


# What an ONNX backend needs of a Hub repository (push_to_hub.py uploads a fold's onnx/ beside its weights): the
# config (labels, conv geometry), the feature extractor and the ONNX files; never the PyTorch weights.
ONNX_HUB_PATTERNS = ("config.json", "preprocessor_config.json", f"{ONNX_DIR}/*")
SNAPSHOT_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "force_download")


def hub_onnx_checkpoint(model: str, path_in_checkpoint: Path, **hub_kwargs) -> Path:
    """The local copy (huggingface_hub's cache, `snapshot_download` with `ONNX_HUB_PATTERNS`) of a Hub
    repository's config and ONNX files.

    Raises:
        ValueError: the repository holds no `path_in_checkpoint` (e.g. onnx/model.onnx): how to export it is said.
    """
    from huggingface_hub import snapshot_download

    options = {key: hub_kwargs[key] for key in SNAPSHOT_KWARGS if key in hub_kwargs}
    folder = Path(snapshot_download(str(model), allow_patterns=list(ONNX_HUB_PATTERNS), **options))
    if not (folder / path_in_checkpoint).is_file():
        present = sorted(p.name for p in (folder / ONNX_DIR).glob("*.onnx"))
        raise ValueError(
            f"{model}: the Hub repository holds no {path_in_checkpoint.as_posix()} "
            f"({'its ONNX files: ' + ', '.join(present) if present else 'no ONNX files'}). Export it from a local "
            f"copy of the checkpoint (python predict.py --export-onnx --model CHECKPOINT_FOLDER writes "
            f"{ONNX_DIR}/model.onnx and model_int8.onnx), then publish them with push_to_hub.py (it uploads "
            f"{ONNX_DIR}/ beside the weights); or use --backend torch."
        )
    return folder


def load_pipeline(model: str | os.PathLike, backend: str = "torch", num_threads: int | None = None, **kwargs):
    """A `FrameAlignedEmotionPipeline` for the checkpoint `model` (a folder or a Hub id), run by PyTorch (`"torch"`)
    or ONNX Runtime (`"onnx"`: fp32, `"onnx-int8"`: dynamic int8, `"onnx-int8-static"`: calibrated QDQ int8, made
    first by `backend_choice`). For a local folder the fp32 and dynamic int8 ONNX files are created next to the
    checkpoint on first use; a Hub repository must hold them (`onnx/`, as push_to_hub.py publishes them): they are
    downloaded (`hub_onnx_checkpoint`), the PyTorch weights are not.
    `num_threads` sets torch's or ONNX Runtime's intra-op threads; `kwargs` go to `pipeline(...)`. `device` (-1 or
    "cpu", a GPU index, "cuda:1") places the PyTorch model, or picks ONNX Runtime's CUDA execution provider.

    Raises:
        ValueError: an unknown backend; a GPU `device` for an ONNX backend without ONNX Runtime's CUDA provider; a
            Hub repository without the backend's ONNX file.
        CheckpointNotFoundError: `model` is not a checkpoint (a `ValueError`; what was given and what is expected).
    """
    from transformers import AutoFeatureExtractor
    from transformers.pipelines import pipeline

    from ..auto_frame_aligned import HUB_KWARGS, AutoModelForFrameAlignedClassification, checkpoint_model_type
    from ..collator import make_feature_extractor
    from ..pipeline_frame_aligned import TASK, FrameAlignedEmotionPipeline

    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r}: expected one of {list(BACKENDS)}")
    hub_kwargs = {key: kwargs.pop(key) for key in HUB_KWARGS if key in kwargs}
    checkpoint_model_type(model, **hub_kwargs)  # not a checkpoint: said first (what was given, what is expected)
    try:
        extractor = AutoFeatureExtractor.from_pretrained(str(model), **hub_kwargs)
    except (OSError, ValueError):
        config = AutoModelForFrameAlignedClassification.config_from_pretrained(model, **hub_kwargs)
        extractor = make_feature_extractor(config)  # Whisper's: not normalised
    if backend == "torch":
        if num_threads:
            torch.set_num_threads(num_threads)
        model_kwargs = {key: kwargs.pop(key) for key in MODEL_KWARGS if key in kwargs}
        loaded = AutoModelForFrameAlignedClassification.from_pretrained(model, **hub_kwargs, **model_kwargs)
        return pipeline(
            TASK, model=loaded, feature_extractor=extractor, pipeline_class=FrameAlignedEmotionPipeline, **kwargs
        )
    static, int8 = backend == "onnx-int8-static", backend == "onnx-int8"
    if not Path(model).is_dir():  # a Hub id: its published ONNX files
        model = hub_onnx_checkpoint(str(model), onnx_path("", int8=int8, static=static), **hub_kwargs)
    if static and not onnx_path(model, static=True).is_file():
        raise FileNotFoundError(
            f"{onnx_path(model, static=True)}: no static int8 model yet; it needs calibration clips: "
            "modeling.inference.backend_choice.backend_choice(checkpoint, clips) (or onnx_export.quantize_int8_static)"
        )
    providers = execution_providers(kwargs.pop("device", None))  # the pipeline itself stays on the CPU
    config = AutoModelForFrameAlignedClassification.config_from_pretrained(model)
    path = onnx_path(model, static=True) if static else ensure_onnx(model, int8=int8)
    onnx_model = OnnxFrameAlignedModel(path, config, num_threads, providers)
    return FrameAlignedEmotionPipeline(model=onnx_model, feature_extractor=extractor, device=-1, **kwargs)
