"""Frame- and utterance-aligned speech emotion recognition on wav2vec 2.0, the Hugging Face way.

`import modeling` registers the config and model with the Auto classes, and marks them so that
`save_pretrained` writes `auto_map` and copies the two code files (loadable with `trust_remote_code=True`).
"""

from transformers import AutoConfig, AutoModel, AutoModelForAudioClassification

from .configuration_frame_aligned import POOLING_TYPES, Wav2Vec2FrameAlignedConfig
from .losses import emotional_attention_loss, frame_utterance_alignment_loss
from .modeling_frame_aligned import FrameAlignedClassifierOutput, Wav2Vec2ForFrameAlignedClassification
from .timeline import FrameAlignedEmotionPipeline  # registers the "frame-aligned-emotion" pipeline task
from .trainer import FrameAlignedTrainer, FrameAlignedTrainingArguments


AutoConfig.register(Wav2Vec2FrameAlignedConfig.model_type, Wav2Vec2FrameAlignedConfig, exist_ok=True)
AutoModel.register(Wav2Vec2FrameAlignedConfig, Wav2Vec2ForFrameAlignedClassification, exist_ok=True)
AutoModelForAudioClassification.register(
    Wav2Vec2FrameAlignedConfig, Wav2Vec2ForFrameAlignedClassification, exist_ok=True
)
Wav2Vec2FrameAlignedConfig.register_for_auto_class()
Wav2Vec2ForFrameAlignedClassification.register_for_auto_class("AutoModelForAudioClassification")


__all__ = [
    "POOLING_TYPES",
    "Wav2Vec2FrameAlignedConfig",
    "Wav2Vec2ForFrameAlignedClassification",
    "FrameAlignedClassifierOutput",
    "emotional_attention_loss",
    "frame_utterance_alignment_loss",
    "FrameAlignedTrainer",
    "FrameAlignedTrainingArguments",
    "FrameAlignedEmotionPipeline",
]
