"""Frame-level emotion timeline pipeline: which emotion the model hears, second by second, and which moments drove
its decision.

The stage-2 model computes per-frame emotion distributions p_t = softmax(classifier(f_t)) and frame weights α_t (the
CLS-to-frame attention used by FUAL). `FrameAlignedEmotionPipeline` turns them into a timeline of segments:

```python
>>> import modeling  # registers the "frame-aligned-emotion" task
>>> from transformers import pipeline
>>> timeline = pipeline("frame-aligned-emotion", model="path/to/checkpoint")
>>> result = timeline("speech.flac")
>>> result["predicted"], result["prob_angry"], result["timeline"][0]
('angry', 0.64, {'start_s': 0.0, 'end_s': 0.62, 'predicted': 'neutral', 'prob_angry': 0.21, ..., 'weight': 0.0123})
```

This file is part of the remote-code core: it imports only its siblings (`.audio`, `.collator`,
`.configuration_frame_aligned`, `.frames`, `.timeline_segments`) besides torch/numpy/transformers, so
`FrameAlignedEmotionPipeline.save_pretrained` (and `modeling.publishing.remote_code`) can ship it to the Hub. The
command line (`python -m modeling.cli.timeline`, alias `python -m modeling.timeline`) and plotting live in
`modeling/cli/`.
"""

import math
import os
import warnings
from dataclasses import dataclass

import numpy as np
from transformers import AutoModelForAudioClassification, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.utils import logging

from .audio import (
    AudioInputError,
    describe_source,
    iter_audio_blocks,
    load_audio,
    open_audio_file,
    torchcodec_available,
)
from .collator import make_feature_extractor
from .configuration_frame_aligned import label_names
from .frames import frame_geometry
from .loading_frame_aligned import refuse_new_head
from .prediction_fields import calibration_temperature, prediction_record, softmax, tempered
from .timeline_recording import iter_segment_results
from .timeline_segments import (
    SMOOTHING_METHODS,
    WINDOW_LENGTH_S,
    WINDOW_OVERLAP_S,
    WindowPrediction,
    build_timeline,
    iter_windows,
    stitch_windows,
    window_problems,
)


logger = logging.get_logger(__name__)

TASK = "frame-aligned-emotion"


# ----------------------------------------------------------------------------------------------------------------
# The pipeline
# ----------------------------------------------------------------------------------------------------------------


def _given(**parameters) -> dict:
    """The parameters a caller gave (`None` means "not given")."""
    return {name: value for name, value in parameters.items() if value is not None}


def _renamed(kwargs: dict, old: str, new: str, value):
    """A deprecated parameter name (`chunk_*`, renamed `window_*`): its value with a FutureWarning."""
    if old not in kwargs:
        return value
    old_value = kwargs.pop(old)
    if value is not None:
        raise TypeError(f"`{old}` is the deprecated name of `{new}`: give only `{new}`.")
    warnings.warn(f"`{old}` is deprecated and will be removed: use `{new}`.", FutureWarning, stacklevel=4)
    return old_value


@dataclass(eq=False)  # identity comparison: the fields hold arrays
class _AudioSource:
    """One pipeline input before decoding: files are decoded (or streamed) only when their batch runs."""

    index: int
    name: str
    num_samples: int  # at the model's rate; estimated from the header for files
    path: str | None = None
    array: np.ndarray | None = None


class FrameAlignedEmotionPipeline(Pipeline):
    r"""
    Utterance emotion plus a frame-level emotion timeline from a [`Wav2Vec2ForFrameAlignedClassification`] model.

    Inputs (one, or a list): a path to any file soundfile reads (resampled to the model's rate, channels averaged);
    a numpy array or torch tensor (at `sampling_rate`, by default the feature extractor's, as in transformers' audio
    pipelines); a dict `{"raw" | "array": samples, "sampling_rate": sr}` or `{"path"}`/`{"bytes"}`. A bad input raises
    [`~modeling.audio.AudioInputError`] naming it.

    Output per input:
        - `predicted`, `prob_<class>` (one per class, the model's label order): the utterance prediction (the
          project's predictions vocabulary, `prediction_fields.py`). For an input longer than `window_length_s` the
          probabilities are the duration-weighted mean of the windows' distributions (see `stitch_windows`).
        - `timeline`: [{"start_s", "end_s", "predicted", "prob_<class>"..., "weight"}]: contiguous segments covering
          0..`duration` seconds; `prob_<class>` is the mean (smoothed) distribution over the segment (on the scale
          of T: `calibrated`), `predicted` its most probable class, `weight` the mean α over the segment (α sums to 1
          over the whole input, so `weight × number of frames` > 1 means "more important than average").
        - `windows`: [{"start_s", "end_s", "predicted", "prob_<class>"..., "share"}]: the utterance prediction of every
          window (one entry for a short input) and its share of the overall result.
        - `duration` (seconds), `frame_duration` (seconds per frame: Π conv strides / sampling rate; 0.02 for
          wav2vec2), `num_frames` (T).
        - `frames` (only with `return_frames=True`): {"time" (T,), "probabilities" (T, C), "smoothed" (T, C),
          "weights" (T,), "classes" [C names]} as numpy arrays.

    Parameters (at construction or per call):
        window_length_s (`float`, defaults to 20.0): inputs longer than this run in overlapping windows of this
            length (the last one runs to the input's end: up to one frame hop longer, so that the windows give every
            frame of the whole input), in bounded memory (files are streamed). `0` runs every input whole.
        window_overlap_s (`float`, defaults to 4.0): overlap of consecutive windows (at least the receptive field);
            it must be shorter than `window_length_s` (a short window needs a shorter overlap: nothing is clamped).
            Settings that break these rules (`window_problems`) raise `ValueError` before any input is read.
            (`chunk_length_s`, `chunk_overlap_s`: their deprecated names, accepted with a FutureWarning.)
        smoothing (`str`, defaults to `"median"`): "median", "mean" or "none" smoothing of the frame distributions
            before the segments are cut (the utterance result and `frames["probabilities"]` are not smoothed).
        smoothing_window_s (`float`, defaults to 0.2): its window (rounded to an odd number of frames).
        min_segment_s (`float`, defaults to 0.2): shorter segments are absorbed by a neighbour.
        batch_size (`int`, defaults to 1): inputs (or windows) per forward pass; inputs are sorted by length first.
        padded_batches (`bool`, *optional*): whether inputs of different lengths may share a (zero-padded) batch.
            `None`: only when padding cannot change a clip's outputs (`config.padding_independent`). Group-norm
            backbones (wav2vec2-base) see padding, so by default only equal-length inputs (e.g. a long input's
            windows) share a batch, as in train.py's scores; `True` batches them anyway (faster, batch-dependent).
        return_frames (`bool`, defaults to `False`): add the per-frame arrays (for plots).
        segments (per call, one input only): the stretches of a long recording to label, each a `Segment`, a mapping
            `{"start_s", "end_s"[, "speaker"]}` or a tuple `(start_s, end_s[, speaker])` (seconds; files:
            `modeling.segments.read_segments`). Then the result is a list with one dict per segment, in the given
            order: `start_s`, `end_s`, `speaker`, and the result above of the model run on that segment alone
            (`timeline` and `windows` in recording seconds). The audio is read one segment at a time (a file by
            seeking), never whole. A segment ending past the audio's end is clipped with a warning; one starting at
            or after it raises `SegmentError` (`timeline_recording.clip_segments`). No segments: `[]` and a warning.
        sampling_rate (`int`, *optional*, per call): the rate of array inputs.
        calibrated (`bool`, defaults to `True`, at construction): every probability of a result, frames included, on
            the scale of the checkpoint's `calibration_temperature` T (`False`: T = 1); T changes no segment or label.

    `__call__` is overridden: the base class's DataLoader neither sorts by length nor streams a long input window by
    window; `preprocess` (feature extraction of a batch), `_forward` and `postprocess` (stitching + timeline of one
    input) keep their usual roles.
    """

    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = None  # optional: `make_feature_extractor()` when the checkpoint has none
    _load_tokenizer = False

    def __init__(self, *args, calibrated: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.temperature = calibration_temperature(self.model.config, calibrated)
        if self.feature_extractor is None:
            logger.warning("No feature extractor with the model: using the project's default (16 kHz).")
            self.feature_extractor = make_feature_extractor(self.model.config)
        refuse_new_head(self.model, getattr(self.model, "name_or_path", "the model"))  # random head: no predictions
        self.model.eval()
        self.hop, self.receptive_field = frame_geometry(self.model.config)
        self.sampling_rate = int(self.feature_extractor.sampling_rate)
        self.classes = label_names(self.model.config.id2label)  # the class names, in label-id order
        self.id2label = dict(enumerate(self.classes))

    @property
    def frame_duration(self) -> float:
        """Seconds per frame (0.02 for wav2vec2 at 16 kHz)."""
        return self.hop / self.sampling_rate

    def _sanitize_parameters(
        self,
        window_length_s=None,
        window_overlap_s=None,
        padded_batches=None,
        sampling_rate=None,
        smoothing=None,
        smoothing_window_s=None,
        min_segment_s=None,
        return_frames=None,
        segments=None,
        **kwargs,
    ):
        window_length_s = _renamed(kwargs, "chunk_length_s", "window_length_s", window_length_s)
        window_overlap_s = _renamed(kwargs, "chunk_overlap_s", "window_overlap_s", window_overlap_s)
        if kwargs:
            raise TypeError(f"Unknown arguments for the {TASK} pipeline: {sorted(kwargs)}.")
        preprocess_params = _given(
            window_length_s=window_length_s,
            window_overlap_s=window_overlap_s,
            padded_batches=padded_batches,
            sampling_rate=sampling_rate,
            segments=segments,
        )
        if window_length_s == 0:
            preprocess_params["window_length_s"] = None  # 0: never cut into windows (None means "not given" here)
        if smoothing is not None and smoothing not in SMOOTHING_METHODS:
            raise ValueError(f"`smoothing` must be one of {SMOOTHING_METHODS}, got {smoothing!r}.")
        postprocess_params = _given(
            smoothing=smoothing,
            smoothing_window_s=smoothing_window_s,
            min_segment_s=min_segment_s,
            return_frames=return_frames,
        )
        return preprocess_params, {}, postprocess_params

    # -- the three pipeline stages ------------------------------------------------------------------------------

    def preprocess(self, audios: list[np.ndarray]):
        """Normalise and zero-pad a batch of waveforms → {"input_values" (B, N), "attention_mask" (B, N)}."""
        return self.feature_extractor(
            audios,
            sampling_rate=self.sampling_rate,
            padding=True,
            return_attention_mask=True,
            return_tensors="pt",
        )

    def _forward(self, model_inputs):
        """→ logits (B, C), frame_logits (B, T, C), frame_weights (B, T), frame_mask (B, T)."""
        outputs = self.model(
            input_values=model_inputs["input_values"].to(self.model.dtype),
            attention_mask=model_inputs["attention_mask"],
        )
        return {
            "logits": outputs.logits.float(),
            "frame_logits": outputs.frame_logits.float(),
            "frame_weights": outputs.frame_weights.float(),
            "frame_mask": outputs.frame_mask,
        }

    def postprocess(
        self,
        windows: list[WindowPrediction],
        num_samples: int,
        smoothing: str = "median",
        smoothing_window_s: float = 0.2,
        min_segment_s: float = 0.2,
        return_frames: bool = False,
    ) -> dict:
        """The windows of one input → utterance result, per-window results and the timeline."""
        windows = sorted(windows, key=lambda part: part.start)
        probabilities, weights, utterance, shares = stitch_windows(windows, self.hop)
        duration = num_samples / self.sampling_rate
        timeline, smoothed = build_timeline(
            probabilities,
            weights,
            self.id2label,
            self.frame_duration,
            duration,
            smoothing=smoothing,
            smoothing_frames=max(1, round(smoothing_window_s / self.frame_duration)),
            min_segment_frames=max(1, round(min_segment_s / self.frame_duration)),
            temperature=self.temperature,
        )
        result = {
            **prediction_record(utterance, self.classes),
            "duration_s": round(duration, 6),
            "frame_duration_s": self.frame_duration,
            "num_frames": len(weights),
            "timeline": timeline,
            "windows": [self._window_result(part, share) for part, share in zip(windows, shares)],
        }
        if return_frames:
            result["frames"] = {
                "time": np.arange(len(weights)) * self.frame_duration,
                "probabilities": tempered(probabilities, self.temperature),  # = softmax(frame_logits / T)
                "smoothed": tempered(smoothed, self.temperature),
                "weights": weights,
                "classes": list(self.classes),
            }
        return result

    def _window_result(self, part: WindowPrediction, share: float) -> dict:
        return {
            "start_s": round(part.start / self.sampling_rate, 6),
            "end_s": round((part.start + part.num_samples) / self.sampling_rate, 6),
            **prediction_record(part.probabilities, self.classes),
            "share": float(share),
        }

    # -- scheduling: sources, length-sorted batches, windows ---------------------------------------------------

    def __call__(self, inputs, batch_size: int | None = None, num_workers: int | None = None, **kwargs):
        """One input → a dict; a list of inputs → a list of dicts in input order. See the class docstring."""
        preprocess_params, _, postprocess_params = self._sanitize_parameters(**kwargs)
        preprocess_params = {**self._preprocess_params, **preprocess_params}
        postprocess_params = {**self._postprocess_params, **postprocess_params}
        batch_size = batch_size or self._batch_size or 1
        single = not isinstance(inputs, (list, tuple))
        if "segments" in preprocess_params:
            if not single:
                raise TypeError("`segments` describe one recording: pass one audio input with them, not a list.")
            return list(self._iter_segments(inputs, batch_size, postprocess_params, **preprocess_params))
        results = self._run([inputs] if single else list(inputs), batch_size, postprocess_params, **preprocess_params)
        return results[0] if single else results

    def _run(
        self,
        inputs: list,
        batch_size: int,
        postprocess_params: dict,
        window_length_s: float | None = WINDOW_LENGTH_S,
        window_overlap_s: float = WINDOW_OVERLAP_S,
        padded_batches: bool | None = None,
        sampling_rate: int | None = None,
    ) -> list[dict]:
        window, step = self.window_and_step(window_length_s, window_overlap_s)
        if padded_batches is None:
            config = self.model.config
            if hasattr(config, "padding_independent"):  # every frame-aligned config
                padded_batches = config.padding_independent
            else:
                padded_batches = config.feat_extract_norm == "layer"
        sources = [self._open(item, index, len(inputs), sampling_rate) for index, item in enumerate(inputs)]
        results: list[dict | None] = [None] * len(sources)
        long_sources = [source for source in sources if window is not None and source.num_samples > window]
        # Longest first: similar lengths share a batch (little padding) and an out-of-memory error shows at once.
        short_sources = sorted(
            (source for source in sources if source not in long_sources), key=lambda s: -s.num_samples
        )
        for start in range(0, len(short_sources), batch_size):
            batch = short_sources[start : start + batch_size]
            audios = [self._decode(source) for source in batch]
            for source, audio in zip(batch, audios):
                source.num_samples = len(audio)
                source.array = audio
            runnable = [s for s in batch if window is None or s.num_samples <= window]
            long_sources += [s for s in batch if s not in runnable]  # longer than its header said
            predictions = self._predict([s.array for s in runnable], padded_batches)
            for source, prediction in zip(runnable, predictions):
                results[source.index] = self.postprocess([prediction], source.num_samples, **postprocess_params)
                source.array = None  # free the audio once its result exists
        for source in long_sources:
            results[source.index] = self._run_long(
                source, window, step, batch_size, padded_batches, postprocess_params
            )
        return results

    def iter_segments(self, audio, segments, batch_size: int | None = None, **kwargs):
        """Like `pipeline(audio, segments=segments, ...)`, one segment's result at a time (write them as they come)."""
        preprocess_params, _, postprocess_params = self._sanitize_parameters(segments=segments, **kwargs)
        preprocess_params = {**self._preprocess_params, **preprocess_params}
        postprocess_params = {**self._postprocess_params, **postprocess_params}
        yield from self._iter_segments(
            audio, batch_size or self._batch_size or 1, postprocess_params, **preprocess_params
        )

    def _iter_segments(self, audio, batch_size, postprocess_params, segments, sampling_rate=None, **window_params):
        """Segment by segment (`timeline_recording.iter_segment_results`), `batch_size` segments per batch."""
        if not isinstance(audio, (str, os.PathLike)):
            rate = sampling_rate if sampling_rate is not None else self.sampling_rate
            audio = load_audio(audio, rate, target_sampling_rate=self.sampling_rate, name=describe_source(audio))

        def run(cuts: list[np.ndarray]) -> list[dict]:
            return self._run(cuts, len(cuts), postprocess_params, **window_params)

        yield from iter_segment_results(
            run, audio, segments, self.sampling_rate, self.receptive_field, batch_size, logger.warning
        )

    def window_and_step(
        self, window_length_s: float | None = WINDOW_LENGTH_S, window_overlap_s: float = WINDOW_OVERLAP_S
    ) -> tuple[int | None, int | None]:
        """(window, step) in samples for the window settings in seconds (None, None: no windows), as a call with
        them would cut its inputs; a batch job calls it once before reading any file. Raises `ValueError` with every
        problem `window_problems` finds for this model's sampling rate and receptive field."""
        problems = window_problems(window_length_s, window_overlap_s, self.sampling_rate, self.receptive_field)
        if problems:
            raise ValueError(" ".join(problems))
        if not window_length_s:
            return None, None
        window = int(round(window_length_s * self.sampling_rate))
        overlap = max(int(round((window_overlap_s or 0) * self.sampling_rate)), self.receptive_field)
        step = max(self.hop, (window - overlap) // self.hop * self.hop)  # windows start on the frame grid
        return window, step

    def _open(self, item, index: int, count: int, sampling_rate: int | None) -> _AudioSource:
        """Name an input and find its length; arrays are converted now, files only probed (header)."""
        name = describe_source(item)
        if not isinstance(item, (str, os.PathLike)):
            name = f"input {index}: {name}" if count > 1 else name
            audio = load_audio(
                item,
                sampling_rate if sampling_rate is not None else self.sampling_rate,
                target_sampling_rate=self.sampling_rate,
                min_samples=self.receptive_field,
                name=name,
            )
            return _AudioSource(index, name, len(audio), array=audio)
        try:
            with open_audio_file(item, name) as info:  # header only: files are decoded when their batch runs
                frames, samplerate = info.frames, info.samplerate
        except AudioInputError:
            if not (torchcodec_available() and os.path.isfile(item)):
                raise
            audio = load_audio(
                item, target_sampling_rate=self.sampling_rate, min_samples=self.receptive_field, name=name
            )  # a format only torchcodec decodes: whole, in memory
            return _AudioSource(index, name, len(audio), array=audio)
        if frames == 0:
            raise AudioInputError(f"{name}: contains no samples (empty audio).")
        num_samples = math.ceil(frames * self.sampling_rate / samplerate)
        return _AudioSource(index, name, max(num_samples, self.receptive_field), path=os.fspath(item))

    def _decode(self, source: _AudioSource) -> np.ndarray:
        if source.array is not None:
            return source.array
        return load_audio(
            source.path, target_sampling_rate=self.sampling_rate, min_samples=self.receptive_field, name=source.name
        )

    def _run_long(self, source, window, step, batch_size, padded_batches, postprocess_params) -> dict:
        """Windows of one long input, `batch_size` at a time; only one batch of audio is held in memory."""
        if source.array is not None:
            blocks = [source.array]
        else:
            blocks = iter_audio_blocks(source.path, target_sampling_rate=self.sampling_rate, name=source.name)
        total = 0

        def counted(blocks):  # the exact length of a streamed file is known only at its end
            nonlocal total
            for block in blocks:
                total += len(block)
                yield block

        predictions, batch = [], []
        for start, audio in iter_windows(counted(blocks), window, step, self.hop):
            batch.append((start, audio))
            if len(batch) == batch_size:
                predictions += self._predict_windows(batch, padded_batches)
                batch = []
        if batch:
            predictions += self._predict_windows(batch, padded_batches)
        source.array = None
        return self.postprocess(predictions, total, **postprocess_params)

    def _predict_windows(self, batch: list[tuple[int, np.ndarray]], padded_batches: bool) -> list[WindowPrediction]:
        predictions = self._predict([audio for _, audio in batch], padded_batches)
        for (start, _), prediction in zip(batch, predictions):
            prediction.start = start
        return predictions

    def _predict(self, audios: list[np.ndarray], padded_batches: bool) -> list[WindowPrediction]:
        """Forward passes over `audios` (one batch, split into equal-length groups unless padding is allowed)."""
        if not audios:
            return []
        if padded_batches:
            groups = [list(range(len(audios)))]
        else:
            by_length: dict[int, list[int]] = {}
            for i, audio in enumerate(audios):
                by_length.setdefault(len(audio), []).append(i)
            groups = list(by_length.values())
        predictions: list[WindowPrediction | None] = [None] * len(audios)
        for group in groups:
            outputs = self.forward(self.preprocess([audios[i] for i in group]))
            for row, i in enumerate(group):
                predictions[i] = self._unbatch(outputs, row, len(audios[i]))
        return predictions

    def _unbatch(self, outputs: dict, row: int, num_samples: int) -> WindowPrediction:
        valid = outputs["frame_mask"][row].bool()
        return WindowPrediction(
            start=0,
            num_samples=num_samples,
            probabilities=softmax(outputs["logits"][row].numpy(), self.temperature),
            frame_probabilities=softmax(outputs["frame_logits"][row][valid].numpy()),
            frame_weights=outputs["frame_weights"][row][valid].numpy().astype(np.float64),
        )


def register_pipeline() -> None:
    """Register the "frame-aligned-emotion" task (done on import of this module).

    Registering also lets `FrameAlignedEmotionPipeline.save_pretrained` / `push_to_hub` write `custom_pipelines` into
    the config and copy this file (with the core files it imports relatively), so that
    `pipeline(model=HUB_ID, trust_remote_code=True)` works without this package.
    """
    registered = PIPELINE_REGISTRY.supported_tasks.get(TASK, {}).get("impl")
    if registered is not None and registered.__qualname__ == FrameAlignedEmotionPipeline.__qualname__:
        return  # already registered (e.g. this file loaded again as Hub remote code)
    PIPELINE_REGISTRY.register_pipeline(
        TASK,
        pipeline_class=FrameAlignedEmotionPipeline,
        pt_model=AutoModelForAudioClassification,
        type="audio",
    )


register_pipeline()
