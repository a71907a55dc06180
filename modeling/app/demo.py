"""The Gradio demo: one page that takes a recording (upload or microphone) and shows the utterance emotion with its
probability bars, the frame timeline figure and the table of segments, for one fold model or the fold ensemble.

This file is SELF-CONTAINED (numpy, soundfile, matplotlib, torch; gradio imported only inside `build_demo`): it is
uploaded verbatim as `demo.py` of the Hugging Face Space (`modeling.publishing.space`), where the package is not
installed, and imported by the local launcher (`python -m modeling.app`). It works on any object that behaves like
`FrameAlignedEmotionPipeline` (`classes`, `model`, `__call__(waveform, sampling_rate=..., return_frames=True)` → the
predictions vocabulary of `prediction_fields.py`: `predicted`, `prob_<class>`, `timeline`, `frames`).

The limits of a public demo (all in `read_upload`): a file of more than `max_duration_s` seconds is CUT to its first
`max_duration_s` seconds with a message in the page (only that much is read from disk: one request's memory is
bounded by the limit, not by the file); an unreadable, empty (0 samples) or silent (peak below `SILENCE_PEAK`) file
gives a message in the page instead of a result, and the server keeps serving.
"""

import copy
import os
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import soundfile as sf
import torch
from torch import nn


TASK = "frame-aligned-emotion"
MAX_DURATION_S = 60.0  # a public CPU Space: ~5 s of compute per minute of audio on 2 vCPUs (benchmarks/app_latency)
MAX_FILE_SIZE = "200mb"  # gradio refuses bigger uploads before they reach the server's disk
SILENCE_PEAK = 1e-4  # -80 dBFS: below the quantisation noise of 16-bit audio (3e-5 is one 16-bit step)
BACKEND_FILE = "onnx/backend.json"  # the measured backend choice stored beside a checkpoint (and on the Hub)
ONNX_OUTPUTS = ("logits", "frame_logits", "frame_weights", "frame_mask")  # modeling.inference.onnx_export's order
ENSEMBLE = "fold ensemble"


class DemoInputError(ValueError):
    """An upload the demo cannot analyse; the message is shown in the page."""


@dataclass
class DemoModel:
    """One choice of the model menu: a pipeline and the words that say how it runs."""

    name: str
    pipeline: object
    backend: str  # "torch", "onnx", "onnx-int8", "onnx-int8-static"
    note: str = ""  # why this backend (the measured agreement), shown in the page
    folds: list = field(default_factory=list)  # for the ensemble: the names of its members


# ----------------------------------------------------------------------------------------------------------------
# Models: fold ensemble, an ONNX Runtime stand-in for the Space
# ----------------------------------------------------------------------------------------------------------------
class _CpuModel(nn.Module):
    """What the pipelines ask of a model besides `config` and `__call__`: CPU, float32, no generation."""

    main_input_name = "input_values"

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def can_generate(self) -> bool:
        return False


class FoldEnsemble(_CpuModel):
    """The fold models as one model: the utterance distribution is the mean of the folds' calibrated softmax,
    softmax(logits / T_k) with each fold's `calibration_temperature` T_k (score.py's ensemble), each frame's
    distribution the mean of the folds' calibrated frame softmax (the same T_k), α the mean of the folds' α. Returned
    as logits = log(mean probability) under a config without a temperature (T = 1: the means are already on the
    folds' calibrated scale), so the pipeline's softmax gives the mean back exactly.

    Args:
        models: the folds' models (PyTorch or ONNX stand-ins), same classes and frame geometry.
    Raises:
        ValueError: the folds' classes differ.
    """

    def __init__(self, models):
        super().__init__()
        self.members = list(models)
        if not self.members:
            raise ValueError("a fold ensemble needs at least one model")
        labels = [dict(m.config.id2label) for m in self.members]
        if any(other != labels[0] for other in labels[1:]):
            raise ValueError(f"the folds' classes differ: {labels}")
        self.temperatures = [getattr(m.config, "calibration_temperature", None) or 1.0 for m in self.members]
        self.config = copy.deepcopy(self.members[0].config)
        self.config.calibration_temperature = None  # the members' temperatures are applied in `forward`
        self.name_or_path = ENSEMBLE

    def eval(self):
        for member in self.members:
            member.eval()
        return super().eval()

    def forward(self, input_values, attention_mask=None, **unused):
        """input_values (B, N), attention_mask (B, N) → logits (B, C), frame_logits (B, T, C), frame_weights (B, T),
        frame_mask (B, T) of the mean distributions."""
        outputs = [m(input_values=input_values, attention_mask=attention_mask) for m in self.members]
        mask = outputs[0].frame_mask
        if any(not torch.equal(o.frame_mask, mask) for o in outputs[1:]):
            raise ValueError("the folds' frame masks differ: their models have different frame geometries")

        def mean_log(name):
            tempered = [getattr(o, name).float().div(t).softmax(-1) for o, t in zip(outputs, self.temperatures)]
            return torch.stack(tempered).mean(0).log()

        weights = torch.stack([o.frame_weights.float() for o in outputs]).mean(0)
        return SimpleNamespace(
            logits=mean_log("logits"), frame_logits=mean_log("frame_logits"), frame_weights=weights, frame_mask=mask
        )


class OnnxModel(_CpuModel):
    """An exported checkpoint run by ONNX Runtime on the CPU, with the PyTorch model's call signature (the Space's
    copy of `modeling.inference.onnx_backend.OnnxFrameAlignedModel`, which the Space cannot import)."""

    def __init__(self, path, config):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        self.config = config
        self.name_or_path = getattr(config, "_name_or_path", str(path))

    def forward(self, input_values, attention_mask=None, **unused):
        values = np.ascontiguousarray(torch.as_tensor(input_values).float().numpy())
        mask = np.ones(values.shape, np.int64) if attention_mask is None else np.asarray(attention_mask, np.int64)
        arrays = self.session.run(list(ONNX_OUTPUTS), {"input_values": values, "attention_mask": mask})
        return SimpleNamespace(**{name: torch.from_numpy(np.asarray(a)) for name, a in zip(ONNX_OUTPUTS, arrays)})


def ensemble_of(models: list[DemoModel]) -> DemoModel:
    """One `DemoModel` averaging `models` (their pipelines' models), with the first one's feature extractor."""
    first = models[0].pipeline
    pipeline = type(first)(
        model=FoldEnsemble([m.pipeline.model for m in models]), feature_extractor=first.feature_extractor
    )
    backends = sorted({m.backend for m in models})
    note = f"mean of {len(models)} folds' probabilities ({', '.join(backends)})"
    return DemoModel(ENSEMBLE, pipeline, "+".join(backends), note, [m.name for m in models])


def load_hub_models(repo_ids: list[str]) -> list[DemoModel]:
    """The published folds `repo_ids` (`ORG/NAME`, or `ORG/NAME@branch` for a fold on a branch), each through its
    remote code (`pipeline(TASK, trust_remote_code=True)`) and run
    by the backend its repository's `onnx/backend.json` names (the measured choice made before publishing; PyTorch
    when there is none)."""
    import json

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError
    from transformers import pipeline

    models = []
    for ref in repo_ids:
        repo_id, _, revision = ref.partition("@")
        revision = revision or None
        pipe = pipeline(TASK, model=repo_id, revision=revision, trust_remote_code=True)
        backend, note = "torch", "PyTorch fp32 (the repository has no measured ONNX choice)"
        try:
            with open(hf_hub_download(repo_id, BACKEND_FILE, revision=revision), encoding="utf-8") as f:
                choice = json.load(f)
        except EntryNotFoundError:
            choice = None
        if choice:
            path = hf_hub_download(repo_id, choice["file"], revision=revision)
            pipe.model = OnnxModel(path, pipe.model.config)
            backend, note = choice["backend"], choice["reason"]
        models.append(DemoModel(revision or repo_id.split("/")[-1], pipe, backend, note))
    return models


# ----------------------------------------------------------------------------------------------------------------
# One request
# ----------------------------------------------------------------------------------------------------------------
def seconds_of(result: dict, key: str) -> float:
    """`result[key]` (`duration_s`, `frame_duration_s`) of a pipeline result; a checkpoint published before the keys
    took their `_s` carries remote code that returns `duration` / `frame_duration` (the Space loads any)."""
    return result[key] if key in result else result[key.removesuffix("_s")]


def read_upload(path, max_duration_s: float = MAX_DURATION_S) -> tuple[np.ndarray, int, str]:
    """The uploaded file `path` → (mono float32 samples of at most `max_duration_s` seconds, sampling rate, note).

    Only the first `max_duration_s` seconds are read from disk (a longer file is cut, and `note` says so).

    Raises:
        DemoInputError: no file, a 0-byte file, a file soundfile cannot decode, no samples, non-finite samples, or
            silence (peak amplitude below `SILENCE_PEAK`); the message names the file.
    """
    if not path:
        raise DemoInputError("No audio: upload a file or record with the microphone, then press Analyse.")
    name = os.path.basename(str(path))
    if os.path.getsize(path) == 0:
        raise DemoInputError(f"`{name}` is empty (0 bytes): nothing to analyse.")
    try:
        with sf.SoundFile(path) as audio:
            rate, total = audio.samplerate, audio.frames
            samples = audio.read(frames=min(total, int(max_duration_s * rate)), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        reason = str(error).replace(f"'{path}'", "it").replace(str(path), name)  # no server paths in the page
        raise DemoInputError(
            f"`{name}` is not an audio file this demo can decode (WAV, FLAC, OGG or MP3): {reason}"
        ) from error
    if samples.shape[0] == 0:
        raise DemoInputError(f"`{name}` is an empty recording (0 samples): nothing to analyse.")
    waveform = samples.mean(axis=1)
    if not np.isfinite(waveform).all():
        raise DemoInputError(f"`{name}` contains non-finite samples (NaN or Inf).")
    peak = float(np.abs(waveform).max())
    if peak < SILENCE_PEAK:
        raise DemoInputError(f"`{name}` is silent (peak amplitude {peak:.1e}): there is no speech to analyse.")
    note = ""
    if total > len(waveform):
        note = (
            f"`{name}` lasts {format_seconds(total / rate)}: the demo analyses its first "
            f"{format_seconds(max_duration_s)} (the limit of this demo; `predict.py` or the pipeline take any length)."
        )
    return waveform, rate, note


def format_seconds(seconds: float) -> str:
    """12.5 → "12.5 s", 60 → "1 min", 1203.4 → "20 min 3.4 s"."""
    minutes, rest = divmod(round(seconds, 1), 60)
    if not minutes:
        return f"{rest:g} s"
    return f"{int(minutes)} min" + (f" {rest:g} s" if rest else "")


def analyse(model: DemoModel, waveform: np.ndarray, sampling_rate: int) -> dict:
    """The pipeline's result (`predicted`, `prob_<class>`, `timeline`, `frames`) for one waveform."""
    return model.pipeline(waveform, sampling_rate=sampling_rate, return_frames=True)


def probabilities(result: dict, classes) -> dict[str, float]:
    """{class: probability} in the model's class order (the `prob_<class>` fields)."""
    return {name: float(result[f"prob_{name}"]) for name in classes}


def segment_rows(result: dict) -> tuple[list[str], list[list]]:
    """The timeline's segments as (header, rows), times and probabilities rounded for reading."""
    segments = result.get("timeline") or []
    header = list(segments[0]) if segments else ["start_s", "end_s", "predicted"]
    rows = [[float(f"{v:.4g}") if isinstance(v, float) else v for v in segment.values()] for segment in segments]
    return header, rows


def timeline_figure(result: dict, title: str = ""):
    """Frame probabilities (stacked, smoothed as the segments were cut) over time, the segments as a coloured band,
    and the frame weights α below. Returns a matplotlib Figure."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure  # not pyplot: no global registry holding every request's figure

    frames = result["frames"]
    classes = list(frames["classes"])
    colors = colormaps["tab10"].colors
    color = {name: colors[i % len(colors)] for i, name in enumerate(classes)}
    time = np.asarray(frames["time"]) + seconds_of(result, "frame_duration_s") / 2
    smoothed = np.asarray(frames["smoothed"])
    figure = Figure(figsize=(9, 4.2))
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.stackplot(time, smoothed.T, labels=classes, colors=[color[c] for c in classes], alpha=0.85)
    for segment in result.get("timeline") or []:
        top.axvspan(
            segment["start_s"], segment["end_s"], ymin=1.0, ymax=1.06, color=color[segment["predicted"]], clip_on=False
        )
    top.set_ylim(0, 1)
    top.set_ylabel("probability")
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    top.set_title(title or f"utterance: {result['predicted']}", loc="left", pad=14)
    bottom.plot(time, np.asarray(frames["weights"]), color="black", linewidth=1)
    bottom.set_ylabel("weight α")
    bottom.set_xlabel("time (s)")
    bottom.set_xlim(0, max(seconds_of(result, "duration_s"), 1e-3))
    figure.tight_layout()
    return figure


def run_request(models: dict[str, DemoModel], audio_path, choice: str, max_duration_s: float = MAX_DURATION_S):
    """One click of Analyse → (label dict or None, figure or None, table rows, header, status Markdown). Bad input
    gives (None, None, [], header, message): never an exception, so the page shows it and the server keeps serving."""
    model = models.get(choice) or next(iter(models.values()))
    try:
        waveform, rate, note = read_upload(audio_path, max_duration_s)
        result = analyse(model, waveform, rate)
    except DemoInputError as error:
        return None, None, [], ["start_s", "end_s", "predicted"], f"⚠️ {error}"
    except Exception as error:  # a decoder or model failure on one upload must not take the page down
        return None, None, [], ["start_s", "end_s", "predicted"], f"⚠️ Could not analyse this file: {error}"
    label = probabilities(result, model.pipeline.classes)
    figure = timeline_figure(result)
    header, rows = segment_rows(result)
    status = (
        f"**{result['predicted']}** ({label[result['predicted']]:.0%}) · "
        f"{seconds_of(result, 'duration_s'):.2f} s analysed · "
        f"{len(rows)} segment(s) · model: {model.name} · backend: `{model.backend}` ({model.note})"
    )
    return label, figure, rows, header, status + (f"\n\n⚠️ {note}" if note else "")


# ----------------------------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------------------------
def build_demo(
    models: list[DemoModel],
    example: str | None = None,
    max_duration_s: float = MAX_DURATION_S,
    title: str = "Frame- and utterance-aligned speech emotion recognition",
):
    """The Gradio Blocks page over `models` (the first is the default; with several fold models, add their
    `ensemble_of` first). Element ids for tests and scripts: `audio`, `model`, `analyse`, `emotion`, `timeline`,
    `segments`, `status`; the API endpoint is `/analyse` (audio file, model name) → (label, plot, table, status)."""
    import gradio as gr

    by_name = {m.name: m for m in models}
    classes = list(models[0].pipeline.classes)

    def on_click(audio_path, choice):
        import pandas as pd

        label, figure, rows, header, status = run_request(by_name, audio_path, choice, max_duration_s)
        return label, figure, pd.DataFrame(rows, columns=header), status

    with gr.Blocks(title=title) as demo:
        gr.Markdown(
            f"# {title}\n"
            f"Upload or record speech (up to {format_seconds(max_duration_s)} are analysed; longer files are cut). "
            f"Classes: {', '.join(classes)}. The model labels the whole utterance and every 20 ms frame "
            "(Byun & Lee 2025, *Frame and Utterance Emotional Alignment for Speech Emotion Recognition*)."
        )
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="speech", elem_id="audio")
                choice = gr.Dropdown([m.name for m in models], value=models[0].name, label="model", elem_id="model")
                button = gr.Button("Analyse", variant="primary", elem_id="analyse")
                if example:
                    gr.Examples([[example]], inputs=[audio], label="example clip")
            with gr.Column():
                emotion = gr.Label(num_top_classes=len(classes), label="utterance emotion", elem_id="emotion")
                status = gr.Markdown(
                    "Backends: " + "; ".join(f"{m.name}: `{m.backend}` ({m.note})" for m in models),
                    elem_id="status",
                    label="status",
                )
        plot = gr.Plot(label="frame timeline", elem_id="timeline")
        table = gr.Dataframe(
            # the frame classifier's segments: on an uncertain clip their class can differ from the utterance's
            label="frame-timeline segments (the frame classifier; may differ from the utterance emotion)",
            elem_id="segments",
            interactive=False,
        )
        button.click(on_click, [audio, choice], [emotion, plot, table, status], api_name="analyse")
    return demo
