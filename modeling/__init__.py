"""Frame- and utterance-aligned speech emotion recognition (Byun & Lee 2025) for Hugging Face transformers.

The package face. `import modeling` registers the config and model with the Auto classes and the
"frame-aligned-emotion" pipeline task, and marks the classes so that `save_pretrained` writes `auto_map` and copies
the remote code (loadable with `trust_remote_code=True`). See docs/architecture.md for the layout:

    modeling/*.py        the remote-code core (config, model, losses, pipeline, audio input, collator, frames)
    modeling/data/       corpora, folds, dataset checks
    modeling/metrics/    UA/WA (a local `evaluate` module)
    modeling/training/   the two-stage cross-validated experiment, trainer, run directory, results
    modeling/publishing/ finished run → model cards → Hub (needs no torch)
    modeling/cli/        command-line front ends

Without torch (e.g. a machine that only publishes finished runs), the torch-free parts stay importable: the
config, the corpus loaders, `load_audio` and the publishing wing.
"""

import importlib.util

from .audio import load_audio
from .configuration_frame_aligned import POOLING_TYPES, Wav2Vec2FrameAlignedConfig
from .data import load_audio_folder, load_corpus, load_crema_d, load_hub_dataset, load_iemocap, load_ravdess


__all__ = [
    "POOLING_TYPES",
    "Wav2Vec2FrameAlignedConfig",
    "load_audio",
    "load_corpus",
    "load_audio_folder",
    "load_crema_d",
    "load_hub_dataset",
    "load_iemocap",
    "load_ravdess",
]

if importlib.util.find_spec("torch") is not None:
    from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

    from .losses import emotional_attention_loss, frame_utterance_alignment_loss
    from .modeling_frame_aligned import FrameAlignedClassifierOutput, Wav2Vec2ForFrameAlignedClassification
    from .pipeline_frame_aligned import FrameAlignedEmotionPipeline  # registers the "frame-aligned-emotion" task
    from .training.trainer import FrameAlignedTrainer, FrameAlignedTrainingArguments

    AutoConfig.register(Wav2Vec2FrameAlignedConfig.model_type, Wav2Vec2FrameAlignedConfig, exist_ok=True)
    AutoModel.register(Wav2Vec2FrameAlignedConfig, Wav2Vec2ForFrameAlignedClassification, exist_ok=True)
    AutoModelForAudioClassification.register(
        Wav2Vec2FrameAlignedConfig, Wav2Vec2ForFrameAlignedClassification, exist_ok=True
    )
    Wav2Vec2FrameAlignedConfig.register_for_auto_class()
    Wav2Vec2ForFrameAlignedClassification.register_for_auto_class("AutoModelForAudioClassification")

    __all__ += [
        "Wav2Vec2ForFrameAlignedClassification",
        "FrameAlignedClassifierOutput",
        "emotional_attention_loss",
        "frame_utterance_alignment_loss",
        "FrameAlignedTrainer",
        "FrameAlignedTrainingArguments",
        "FrameAlignedEmotionPipeline",
    ]
