"""Frame- and utterance-aligned speech emotion recognition (Byun & Lee 2025) for Hugging Face transformers.

The package face. `import modeling` registers the config and model of every backbone (wav2vec 2.0, HuBERT, WavLM,
data2vec-audio) with the Auto classes and the "frame-aligned-emotion" pipeline task, and marks the classes so that
`save_pretrained` writes `auto_map` and copies the remote code (loadable with `trust_remote_code=True`).
See docs/architecture.md for the layout:

    modeling/*.py        the remote-code core (config, model, losses, pipeline, audio input, collator, frames)
    modeling/data/       corpora, folds, dataset checks
    modeling/metrics/    UA / WA / macro-F1 (a local `evaluate` module), predictions CSVs
    modeling/training/   the two-stage cross-validated experiment, trainer, run directory, results
    modeling/evaluation/ score.py and compare_runs.py: other corpora, fold ensembles, run comparison
    modeling/inference/  batch prediction, ONNX export and ONNX Runtime backend, int8
    modeling/publishing/ finished run → model cards → Hub (needs no torch)
    modeling/cli/        command-line front ends

Without torch (e.g. a machine that only publishes finished runs), the torch-free parts stay importable: the
config, the corpus loaders, `load_audio` and the publishing wing.
"""

import importlib.util

from .audio import AudioInputError, load_audio
from .configuration_frame_aligned import (
    FRAME_ALIGNED_CONFIGS,
    POOLING_TYPES,
    Data2VecAudioFrameAlignedConfig,
    HubertFrameAlignedConfig,
    Wav2Vec2FrameAlignedConfig,
    WavLMFrameAlignedConfig,
    WhisperFrameAlignedConfig,
    label_names,
)
from .data import (
    load_audio_folder,
    load_corpus,
    load_crema_d,
    load_emodb,
    load_hub_dataset,
    load_iemocap,
    load_msp_podcast,
    load_ravdess,
)
from .data.problems import CheckError, Problem


__all__ = [
    "POOLING_TYPES",
    "Wav2Vec2FrameAlignedConfig",
    "HubertFrameAlignedConfig",
    "WavLMFrameAlignedConfig",
    "Data2VecAudioFrameAlignedConfig",
    "WhisperFrameAlignedConfig",
    "AudioInputError",
    "CheckError",
    "Problem",
    "label_names",
    "load_audio",
    "load_corpus",
    "load_audio_folder",
    "load_crema_d",
    "load_emodb",
    "load_msp_podcast",
    "load_hub_dataset",
    "load_iemocap",
    "load_ravdess",
]

if importlib.util.find_spec("torch") is not None:
    from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

    from .auto_frame_aligned import (
        FRAME_ALIGNED_MODELS,
        AutoModelForFrameAlignedClassification,
        BackboneWeightsError,
        HeadWeightsError,
    )
    from .collator import AudioClassificationCollator, make_feature_extractor
    from .losses import emotional_attention_loss, frame_utterance_alignment_loss
    from .modeling_frame_aligned import (
        Data2VecAudioForFrameAlignedClassification,
        FrameAlignedClassifierOutput,
        HubertForFrameAlignedClassification,
        Wav2Vec2ForFrameAlignedClassification,
        WavLMForFrameAlignedClassification,
    )
    from .modeling_whisper_frame_aligned import WhisperForFrameAlignedClassification
    from .pipeline_frame_aligned import FrameAlignedEmotionPipeline  # registers the "frame-aligned-emotion" task
    from .trainer.sampling import evaluation_batches, longest_first
    from .trainer.trainer import FrameAlignedTrainer, FrameAlignedTrainingArguments

    for _model_type, _config_class in FRAME_ALIGNED_CONFIGS.items():  # one pair per backbone
        _model_class = FRAME_ALIGNED_MODELS[_model_type]
        AutoConfig.register(_model_type, _config_class, exist_ok=True)
        AutoModel.register(_config_class, _model_class, exist_ok=True)
        AutoModelForAudioClassification.register(_config_class, _model_class, exist_ok=True)
        _config_class.register_for_auto_class()
        _model_class.register_for_auto_class("AutoModelForAudioClassification")

    __all__ += [
        "AutoModelForFrameAlignedClassification",
        "BackboneWeightsError",
        "HeadWeightsError",
        "Wav2Vec2ForFrameAlignedClassification",
        "HubertForFrameAlignedClassification",
        "WavLMForFrameAlignedClassification",
        "Data2VecAudioForFrameAlignedClassification",
        "WhisperForFrameAlignedClassification",
        "FrameAlignedClassifierOutput",
        "emotional_attention_loss",
        "frame_utterance_alignment_loss",
        "FrameAlignedTrainer",
        "FrameAlignedTrainingArguments",
        "FrameAlignedEmotionPipeline",
        "AudioClassificationCollator",
        "make_feature_extractor",
        "longest_first",
        "evaluation_batches",
    ]
