"""Whisper's encoder behind the frame-aligned head, on each clip's own length (not padded to 30 s).

transformers' `WhisperEncoder.forward` accepts only 3000 mel frames (30 s) and `WhisperForAudioClassification` pools
all 1500 encoder frames, padding included: a 4 s clip costs 7.5× the encoder compute it needs. Here the encoder's own
submodules run on the clip's frames: log-mel → conv1 → conv2 (stride 2: 20 ms frames, like the other backbones) →
positional embeddings 0..T-1 → layers (padded frames masked in attention) → layer_norm.

The input is the 16 kHz waveform (`input_values`, not normalised: `make_feature_extractor(config)`), like every other
backbone's, so the collator, pipelines, timeline windows, ONNX export and predict.py are unchanged. The log-mel is
computed inside the model by Whisper's feature-extractor recipe (`WhisperFeatureExtractor`: 400-sample periodic Hann
window, hop 160, reflect-padded centred STFT with its last frame dropped, Slaney mel filters, log10 floored at 1e-10,
floored at max − 8, (x + 4) / 4), per clip in a padded batch: each clip is reflected at its own end and floored at
its own maximum, so a padded batch gives each clip's one-by-one output. The DFT is a matrix product (exportable to
ONNX); tests compare it with `WhisperFeatureExtractor`. A clip longer than 30 s (Whisper's position table) is encoded
in consecutive 30 s windows (`WhisperFrameEncoder.forward`).

Self-contained (relative imports only): uploaded with every Whisper checkpoint as remote code.
"""

import functools

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedConfig
from transformers.audio_utils import mel_filter_bank
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_outputs import BaseModelOutput
from transformers.models.whisper.modeling_whisper import WhisperEncoder, WhisperModel, WhisperPreTrainedModel

from .configuration_frame_aligned import WhisperFrameAlignedConfig
from .frames import WHISPER_MEL_HOP
from .modeling_frame_aligned import FrameAlignedModelMixin, adapter_parameter_ids


# `WhisperForAudioClassification`'s projector in a plain checkpoint, renamed so that the load report names it unused.
# (Its `classifier` is replaced: our pooling is new, see `_start_new_head_if_pooling_changed`; its `layer_weights`, a
# weighting of the same encoder's layers, load into ours when `use_weighted_layer_sum` is on.)
WHISPER_AUDIO_CLASSIFICATION_HEAD = {r"^projector": "whisper_audio_classification_head.projector"}
# `from_pretrained` arguments that say where a checkpoint is (to read its config.json).
HUB_KWARGS = ("revision", "token", "cache_dir", "local_files_only", "subfolder", "force_download", "proxies")
SAMPLING_RATE = 16_000
N_FFT = 400  # Whisper's STFT window: 25 ms


@functools.lru_cache(maxsize=4)
def log_mel_constants(num_mel_bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(windowed DFT basis (N_FFT, 2·(N_FFT/2+1)): cosines then sines, Slaney mel filters (N_FFT/2+1, num_mel_bins)),
    float32 on CPU: the constants of `WhisperFeatureExtractor`'s log-mel."""
    n = np.arange(N_FFT)[:, None]
    k = np.arange(N_FFT // 2 + 1)[None, :]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann (torch.hann_window)
    angle = 2 * np.pi * n * k / N_FFT
    basis = np.concatenate([np.cos(angle), np.sin(angle)], axis=1) * window[:, None]
    filters = mel_filter_bank(
        num_frequency_bins=N_FFT // 2 + 1,
        num_mel_filters=num_mel_bins,
        min_frequency=0.0,
        max_frequency=8000.0,
        sampling_rate=SAMPLING_RATE,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.tensor(basis, dtype=torch.float32), torch.tensor(filters, dtype=torch.float32)


def whisper_log_mel(waveforms: torch.Tensor, lengths: torch.Tensor, num_mel_bins: int) -> torch.Tensor:
    """Whisper's normalised log-mel spectrogram of each clip of a padded batch, computed at the clip's own length.

    Args:
        waveforms: (B, S) 16 kHz waveforms, right-padded.
        lengths: (B,) samples of each clip (≥ 1).
        num_mel_bins: 80 (or 128 for large-v3).
    Returns:
        (B, num_mel_bins, S // 160): clip b has lengths[b] // 160 mel frames; its later frames are 0.
    """
    basis, filters = (tensor.to(waveforms.device) for tensor in log_mel_constants(num_mel_bins))
    num_samples = waveforms.shape[-1]
    lengths = lengths.to(waveforms.device).long()[:, None]
    # Frame t covers samples t·160 − 200 .. t·160 + 199 of the centred STFT, reflected at each clip's own ends into
    # [0, length) (period 2·(length − 1), as np.pad / torch.stft's "reflect"); the STFT's last frame is dropped.
    # One gather (no unfold: exportable to ONNX with a dynamic length).
    starts = torch.arange(num_samples // WHISPER_MEL_HOP, device=waveforms.device)[:, None] * WHISPER_MEL_HOP
    position = (starts + torch.arange(N_FFT, device=waveforms.device)[None, :] - N_FFT // 2).reshape(1, -1)
    period = (2 * (lengths - 1)).clamp(min=1)
    index = torch.remainder(position, period)
    index = torch.where(index >= lengths, period - index, index)
    frames = torch.gather(waveforms, 1, index).reshape(waveforms.shape[0], -1, N_FFT)  # (B, S // 160, N_FFT)
    spectrum = frames @ basis
    bins = N_FFT // 2 + 1
    power = spectrum[..., :bins] ** 2 + spectrum[..., bins:] ** 2
    log_spec = torch.clamp(power @ filters, min=1e-10).log10()  # (B, T_mel, num_mel_bins)
    valid = (torch.arange(log_spec.shape[1], device=waveforms.device)[None, :] < lengths // WHISPER_MEL_HOP)[..., None]
    maximum = log_spec.masked_fill(~valid, float("-inf")).amax(dim=(1, 2), keepdim=True)
    log_spec = (torch.maximum(log_spec, maximum - 8.0) + 4.0) / 4.0
    return log_spec.masked_fill(~valid, 0.0).transpose(1, 2)


class WhisperFrameEncoder(WhisperPreTrainedModel):
    """Whisper's encoder (`encoder`, transformers' `WhisperEncoder`: its tensors and names) run on each clip's own
    frames. Called by the head like the other backbones' `*Model`: waveforms and a sample mask in, frames out."""

    main_input_name = "input_values"
    input_modalities = ("audio",)

    def __init__(self, config: WhisperFrameAlignedConfig):
        super().__init__(config)
        self.encoder = WhisperEncoder(config)
        self.post_init()

    def forward(
        self,
        input_values: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool = True,
    ) -> BaseModelOutput:
        """input_values: (B, S) 16 kHz waveforms; attention_mask: (B, S) 1 for real samples (None: all real) →
        `last_hidden_state` (B, T, d_model), T = ⌈⌊S/160⌋/2⌉ (1500 with `pad_to_30_seconds`); `hidden_states`: the
        input embeddings and each layer's output, the last one after `layer_norm` (as transformers' encoder).

        A batch longer than Whisper's position table (30 s: `max_source_positions` frames) is encoded in consecutive
        30 s windows (as Whisper's long-form transcription): each window's frames attend within the window only and
        its positions restart at 0; the frames are concatenated, so T and the frame mask are unchanged.

        Raises:
            ValueError: `output_attentions` on a batch longer than 30 s (one attention map per window).
        """
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        if not isinstance(output_hidden_states, bool):  # transformers' per-layer selection (a list of indices)
            raise ValueError(
                f"output_hidden_states must be True or False for the frame-aligned Whisper encoder (it runs the "
                f"layers itself), got {output_hidden_states!r}."
            )
        if output_attentions is None:
            output_attentions = self.config.output_attentions
        batch, num_samples = input_values.shape
        window = self.encoder.embed_positions.num_embeddings * 2 * WHISPER_MEL_HOP  # 480000 samples: 30 s
        if attention_mask is None:
            lengths = torch.full((batch,), num_samples, device=input_values.device)
        else:
            lengths = attention_mask.sum(-1).long()
        key_mask = attention_mask is not None and self.config.use_backbone_attention_mask
        if num_samples < window + WHISPER_MEL_HOP:  # at most max_source_positions frames
            return self._encode(input_values, lengths, key_mask, output_hidden_states, output_attentions)
        if output_attentions:
            raise ValueError(
                f"output_attentions=True on input_values of {num_samples} samples ({num_samples / SAMPLING_RATE:.2f} "
                f"s): longer than Whisper's {window / SAMPLING_RATE:g} s position table, the encoder runs in 30 s "
                "windows with one attention map each; ask for attentions on clips of at most 30 s."
            )
        # Each clip's part of each window; a window past a clip's end gets one mel hop (its frames are masked).
        outputs = [
            self._encode(
                input_values[:, start : start + window],
                (lengths - start).clamp(min=WHISPER_MEL_HOP, max=window),
                key_mask,
                output_hidden_states,
                False,
            )
            for start in range(0, num_samples - WHISPER_MEL_HOP + 1, window)
        ]
        states = None
        if output_hidden_states:
            states = tuple(torch.cat(layer, dim=1) for layer in zip(*(output.hidden_states for output in outputs)))
        return BaseModelOutput(
            last_hidden_state=torch.cat([output.last_hidden_state for output in outputs], dim=1), hidden_states=states
        )

    def _encode(self, input_values, lengths, key_mask: bool, output_hidden_states, output_attentions):
        """One window of at most 30 s: log-mel → conv1 → conv2 → positions 0..T-1 → layers → layer_norm."""
        config, encoder = self.config, self.encoder
        clip_mel_lengths = lengths // WHISPER_MEL_HOP  # the clip's own mel frames (before any 30 s padding)
        if config.pad_to_30_seconds:  # as WhisperFeatureExtractor + WhisperEncoder: 30 s of zeros, no mask
            window = encoder.embed_positions.num_embeddings * 2 * WHISPER_MEL_HOP
            input_values = nn.functional.pad(input_values, (0, window - input_values.shape[-1]))
            lengths, key_mask = torch.full_like(lengths, window), False
        mel_lengths = lengths // WHISPER_MEL_HOP
        features = whisper_log_mel(input_values.float(), lengths, config.num_mel_bins).to(encoder.conv1.weight.dtype)
        if self.training and config.apply_spec_augment:
            features = self._spec_augment(features, clip_mel_lengths)
        hidden = nn.functional.gelu(encoder.conv1(features))
        # conv2 must see zeros after each clip's last mel frame, as on the clip alone (conv padding).
        mel_valid = torch.arange(hidden.shape[-1], device=hidden.device)[None, :] < mel_lengths[:, None]
        hidden = nn.functional.gelu(encoder.conv2(hidden * mel_valid[:, None, :].to(hidden.dtype)))
        hidden = hidden.permute(0, 2, 1)
        num_frames = hidden.shape[1]
        hidden = hidden + encoder.embed_positions.weight[:num_frames]
        hidden = nn.functional.dropout(hidden, p=encoder.dropout, training=self.training)
        frame_mask = torch.arange(num_frames, device=hidden.device)[None, :] < ((mel_lengths + 1) // 2)[:, None]
        mask = create_bidirectional_mask(config, hidden, frame_mask) if key_mask else None
        return self._layers(hidden, mask, bool(output_hidden_states), bool(output_attentions))

    def _spec_augment(self, features: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
        """SpecAugment on the log-mel (training only), by transformers' own `WhisperModel._mask_input_features`
        (its `_compute_mask_indices`, numpy's global random state): time spans of `mask_time_length` mel frames
        (10 ms each) drawn per clip within its own `mel_lengths[b]` frames (`mask_time_prob` of them, at least
        `mask_time_min_masks` spans), and bands of `mask_feature_length` mel bins (`mask_feature_prob`,
        `mask_feature_min_masks`); masked values are set to 0, as transformers' Whisper does.

        Args:
            features: (B, num_mel_bins, T_mel) log-mel, frames at or after `mel_lengths[b]` are padding (0).
            mel_lengths: (B,) each clip's own mel frames; padding is never counted nor drawn. A clip with fewer
                than `mask_time_length` frames gets no span on its frames (transformers' sampler then zeroes the
                batch's last frame, padding: already 0, or with `pad_to_30_seconds` the silence's log-mel).
        Returns:
            `features`, masked in place.
        """
        frames = torch.arange(features.shape[-1], device=features.device)[None, :]
        valid = (frames < mel_lengths.to(features.device)[:, None]).long()
        return WhisperModel._mask_input_features(self, features, attention_mask=valid)

    def _layers(self, hidden, mask, output_hidden_states: bool, output_attentions: bool) -> BaseModelOutput:
        encoder = self.encoder
        states, attentions, hooks = [], [], []
        if output_attentions:
            for layer in encoder.layers:
                hooks.append(layer.self_attn.register_forward_hook(lambda _, __, out: attentions.append(out[1])))
        try:
            for layer in encoder.layers:
                states.append(hidden)
                if not (self.training and encoder.layerdrop > 0.0 and torch.rand([]) < encoder.layerdrop):
                    hidden = layer(hidden, mask)
        finally:
            for hook in hooks:
                hook.remove()
        hidden = encoder.layer_norm(hidden)
        return BaseModelOutput(
            last_hidden_state=hidden,
            hidden_states=(*states, hidden) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )


class WhisperForFrameAlignedClassification(FrameAlignedModelMixin, WhisperPreTrainedModel):
    """Whisper's encoder with the frame-aligned head (see [`FrameAlignedModelMixin`] and the module docstring).

    Loads from any Whisper checkpoint: `WhisperModel` and `WhisperForConditionalGeneration` (the encoder under
    `model.encoder`; the decoder and `proj_out` are not loaded) and `WhisperForAudioClassification` (its encoder; its
    projector and classifier are reported unused). "Always frozen" (the other backbones' CNN) is here the conv stem
    (conv1, conv2) and the sinusoidal positional embeddings; `num_trainable_layers` counts encoder layers.
    The frozen-prefix cache does not support it (`prefix_cache/model.py`).
    """

    config_class = WhisperFrameAlignedConfig
    config: WhisperFrameAlignedConfig
    backbone_class = WhisperFrameEncoder
    main_input_name = "input_values"
    input_modalities = ("audio",)
    _keys_to_ignore_on_load_unexpected = [r"^(model\.)?decoder\.", r"^proj_out\."]  # every ASR checkpoint has them

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """The mixin's `from_pretrained`; a plain Whisper checkpoint (`model_type` "whisper") has its
        `WhisperForAudioClassification` projector renamed out of the way (`WHISPER_AUDIO_CLASSIFICATION_HEAD`), and its
        classifier (of another shape: it reads the projector's output) re-initialised instead of refused."""
        if pretrained_model_name_or_path is not None and "key_mapping" not in kwargs:
            hub_kwargs = {key: kwargs[key] for key in HUB_KWARGS if key in kwargs}
            try:
                config_dict, _ = PreTrainedConfig.get_config_dict(str(pretrained_model_name_or_path), **hub_kwargs)
            except OSError:
                config_dict = {}  # transformers' own loader reports the unreadable checkpoint
            if config_dict.get("model_type") == "whisper":
                kwargs["key_mapping"] = WHISPER_AUDIO_CLASSIFICATION_HEAD
                # transformers 5.24 still compares the checkpoint's `classifier` with ours before renaming it; a
                # mismatch re-initialises it (and a backbone mismatch is refused: `_check_backbone_loaded`).
                kwargs.setdefault("ignore_mismatched_sizes", True)
        return super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)

    def _pad_to_one_frame(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None):
        """The mixin's, plus an all-ones mask when none is given: the frame mask must mark the clip's own frames even
        when `pad_to_30_seconds` makes the encoder output 1500."""
        input_values, attention_mask = super()._pad_to_one_frame(input_values, attention_mask)
        if attention_mask is None:
            attention_mask = torch.ones(input_values.shape, dtype=torch.long, device=input_values.device)
        return input_values, attention_mask

    def freeze_feature_encoder(self):
        """Stop gradients into the conv stem (conv1, conv2)."""
        for module in (self.model.encoder.conv1, self.model.encoder.conv2):
            module.requires_grad_(False)

    def freeze_for_training(self):
        """Turn `requires_grad` off: the conv stem and the positional embeddings always, and with
        `num_trainable_layers = N` every encoder layer below the top N. Only ever off (see the mixin); parameters a
        peft adapter added keep what the adapter set."""
        adapter = adapter_parameter_ids(self)
        encoder = self.model.encoder
        for module in (encoder.conv1, encoder.conv2, encoder.embed_positions, *self.frozen_backbone_modules()):
            for parameter in module.parameters():
                if id(parameter) not in adapter:
                    parameter.requires_grad_(False)

    def frozen_backbone_modules(self) -> list[nn.Module]:
        """Encoder layers below the first trainable one (empty when all layers train)."""
        return list(self.model.encoder.layers[: self.num_frozen_layers])


__all__ = ["WhisperForFrameAlignedClassification", "WhisperFrameEncoder", "whisper_log_mel"]
