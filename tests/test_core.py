"""The remote-code core (`modeling/*.py`): its frame arithmetic (`modeling.frames`) against a hand computation and
against the real conv stack, and its self-containment (relative sibling imports only; the Hub closure)."""

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_config
from transformers import Data2VecAudioConfig, HubertConfig, Wav2Vec2Config, WavLMConfig

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.audio import MIN_SAMPLES
from modeling.collator import AudioClassificationCollator, make_feature_extractor
from modeling.configuration_frame_aligned import label_names
from modeling.frames import (
    WAV2VEC2_CONV_KERNEL,
    WAV2VEC2_CONV_STRIDE,
    conv_geometry,
    frame_geometry,
    frames_for_samples,
    samples_for_frames,
)
from modeling.publishing.remote_code import CORE, MODEL_FILES, PIPELINE_FILE, remote_code_files


WAV2VEC2_CONV = dict(conv_dim=(16,) * 7, conv_kernel=WAV2VEC2_CONV_KERNEL, conv_stride=WAV2VEC2_CONV_STRIDE)
COARSE_CONV = dict(conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 4, 8))


# ----------------------------------------------------------------------------------------------------------------
# Frame arithmetic
# ----------------------------------------------------------------------------------------------------------------


def test_frame_geometry_by_hand():
    # wav2vec2-base: hop = 5·2⁶ = 320; receptive field = 1 + 9 + 2·5 + 2·10 + 2·20 + 2·40 + 1·80 + 1·160 = 400
    assert conv_geometry(WAV2VEC2_CONV_KERNEL, WAV2VEC2_CONV_STRIDE) == (320, 400)
    assert MIN_SAMPLES == 400
    # one second at 16 kHz: ⌊(16000 − 400) / 320⌋ + 1 = 48 + 1 = 49 frames
    assert frames_for_samples(16_000, 320, 400) == 49
    assert frames_for_samples(400, 320, 400) == 1 and frames_for_samples(399, 320, 400) == 0
    assert frames_for_samples(719, 320, 400) == 1 and frames_for_samples(720, 320, 400) == 2
    assert samples_for_frames(49, 320, 400) == 48 * 320 + 400 == 15_760
    # the tests' tiny stack (10,3,3 / 5,2,2): hop 20, receptive field 1 + 9 + 2·5 + 2·10 = 40
    assert frame_geometry(tiny_config()) == (20, 40)
    assert frame_geometry(tiny_config(**COARSE_CONV)) == (160, 1 + 9 + 2 * 5 + 2 * 20)
    with pytest.raises(ValueError, match="3 conv kernels but 2 strides"):
        conv_geometry((10, 3, 3), (5, 2))


@pytest.mark.parametrize("config_class", [Wav2Vec2Config, HubertConfig, WavLMConfig, Data2VecAudioConfig])
def test_default_conv_stack_is_every_supported_backbones(config_class):
    config = config_class()
    assert (tuple(config.conv_kernel), tuple(config.conv_stride)) == (WAV2VEC2_CONV_KERNEL, WAV2VEC2_CONV_STRIDE)


def test_frames_for_samples_works_elementwise_on_arrays_and_tensors():
    lengths = [0, 399, 400, 719, 720, 16_000]
    expected = [0, 0, 1, 1, 2, 49]
    assert frames_for_samples(np.array(lengths), 320, 400).tolist() == expected
    assert frames_for_samples(torch.tensor(lengths), 320, 400).tolist() == expected
    assert [frames_for_samples(n, 320, 400) for n in lengths] == expected


@pytest.mark.parametrize("frames", [1, 2, 3, 49, 500])
def test_samples_for_frames_is_the_fewest_samples_giving_that_many_frames(frames):
    needed = samples_for_frames(frames, 320, 400)
    assert frames_for_samples(needed, 320, 400) == frames
    assert frames_for_samples(needed - 1, 320, 400) == frames - 1


@pytest.mark.parametrize("conv", [WAV2VEC2_CONV, COARSE_CONV], ids=["wav2vec2", "coarse"])
def test_frame_count_matches_the_real_conv_stack(conv):
    """The closed form against what the backbone's CNN actually outputs, around the receptive field and beyond."""
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config(**conv)).eval()
    hop, field = frame_geometry(model.config)
    with torch.no_grad():
        for length in (field, field + 1, field + hop - 1, field + hop, field + hop + 1, 12_345, 16_000):
            conv_frames = model.wav2vec2.feature_extractor(torch.zeros(1, length)).shape[-1]
            assert frames_for_samples(length, hop, field) == conv_frames, length
        assert frames_for_samples(field - 1, hop, field) == 0
        with pytest.raises(RuntimeError):  # just below the receptive field the conv stack yields no frame at all
            model.wav2vec2.feature_extractor(torch.zeros(1, field - 1))


@pytest.mark.parametrize("conv", [WAV2VEC2_CONV, COARSE_CONV], ids=["wav2vec2", "coarse"])
def test_model_frame_mask_counts_the_frames_of_each_unpadded_clip(conv):
    torch.manual_seed(0)
    model = Wav2Vec2ForFrameAlignedClassification(tiny_config(**conv)).eval()
    hop, field = frame_geometry(model.config)
    lengths = [field, field + hop - 1, field + hop, 5 * hop + field + 7]
    input_values = torch.zeros(len(lengths), max(lengths))
    attention_mask = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for row, length in enumerate(lengths):
        input_values[row, :length] = torch.randn(length)
        attention_mask[row, :length] = 1
    with torch.no_grad():
        out = model(input_values=input_values, attention_mask=attention_mask)
        cnn = model.wav2vec2.feature_extractor
        alone = [cnn(input_values[row : row + 1, :n]).shape[-1] for row, n in enumerate(lengths)]
    assert out.frame_mask.sum(-1).tolist() == alone
    assert out.frame_mask.shape[1] == max(alone)
    assert all(out.frame_mask[row, :n].all() for row, n in enumerate(alone))  # valid frames come first


def test_collator_pads_short_clips_to_the_models_receptive_field():
    coarse = tiny_config(**COARSE_CONV)
    field = frame_geometry(coarse).receptive_field
    short = {"audio": {"raw": np.full(10, 0.1, np.float32), "sampling_rate": 16_000}}
    assert AudioClassificationCollator(make_feature_extractor())([short])["input_values"].shape == (1, MIN_SAMPLES)
    batch = AudioClassificationCollator(make_feature_extractor(), min_samples=field)([short])
    assert batch["input_values"].shape == (1, field)
    with torch.no_grad():
        out = Wav2Vec2ForFrameAlignedClassification(coarse).eval()(**batch)
    assert out.frame_mask.sum() == 1


def test_label_names_follow_the_class_index_for_int_and_json_keys():
    assert label_names({0: "anger", 2: "neutral", 1: "fear"}) == ["anger", "fear", "neutral"]
    assert label_names({"10": "k", "2": "c", "0": "a"}) == ["a", "c", "k"]  # numeric, not string, order


# ----------------------------------------------------------------------------------------------------------------
# Self-containment
# ----------------------------------------------------------------------------------------------------------------


CORE_FILES = sorted(path for path in CORE.glob("*.py") if path.name != "__init__.py")  # __init__: the package face


def sibling_imports(path: Path) -> set[str]:
    """The core files `path` imports (`from .name import ...`); fails on any other import of the project."""
    siblings = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level:
            # `from . import x` and `from .x.y import z` are invisible to / unsupported by transformers' remote code
            assert node.level == 1 and node.module and "." not in node.module, f"{path.name}: {ast.unparse(node)}"
            assert (CORE / f"{node.module}.py").is_file(), f"{path.name} imports .{node.module}, not a core file"
            siblings.add(f"{node.module}.py")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module]
            assert not any(name.split(".")[0] == "modeling" for name in names), f"{path.name}: {ast.unparse(node)}"
    return siblings


def test_core_files_import_only_their_siblings_relatively():
    assert {path.name for path in CORE_FILES} >= {
        "frames.py",
        "modeling_frame_aligned.py",
        "pipeline_frame_aligned.py",
    }
    for path in CORE_FILES:
        sibling_imports(path)


def test_remote_code_is_exactly_the_closure_of_the_model_and_the_pipeline():
    closure, todo = set(), [path.name for path in (*MODEL_FILES, PIPELINE_FILE)]
    while todo:
        name = todo.pop()
        if name not in closure:
            closure.add(name)
            todo += sibling_imports(CORE / name)
    files = remote_code_files()
    assert (
        set(files)
        == closure
        == {
            "configuration_frame_aligned.py",
            "modeling_frame_aligned.py",
            "modeling_whisper_frame_aligned.py",  # a Whisper checkpoint's model class
            "loading_frame_aligned.py",
            "pooling_frame_aligned.py",
            "frames.py",
            "pipeline_frame_aligned.py",
            "prediction_fields.py",
            "audio.py",
            "collator.py",
            "timeline_segments.py",
            "timeline_recording.py",
        }
    )
    assert all(path == CORE / name for name, path in files.items())
    assert not any(name.startswith("timeline_plot") or "cli" in name for name in files)
