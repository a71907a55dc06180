"""transformers' own common model tests (`ModelTesterMixin`) run against every `*ForFrameAlignedClassification`
(Whisper's included).

`tests/test_modeling_common.py` is not part of the transformers wheel and its code is not committed here: the sdist
of the *installed* transformers version is fetched at test time (`pip download`, cached under
`.cache/transformers-sdist/` in the repository root, or `$TRANSFORMERS_SDIST_CACHE`), the mixin and its helpers are
extracted into a temporary package, and the three modules the sdist does not ship (`exporters/test_export.py`,
`generation/test_utils.py`, `utils/test_configuration_utils.py`) get empty stand-ins: ours is neither a generative
nor an exportable-by-default model. Without network and without a cached sdist, `test_transformers_common_tests_ran`
fails, naming the cause (the ~800 tests would otherwise vanish into one skip and the suite still pass);
`FRAME_ALIGNED_SKIP_TRANSFORMERS_COMMON=1` skips the module instead, on purpose (e.g. offline).

The tester mirrors transformers' `Wav2Vec2ModelTester` (tests/models/wav2vec2/test_modeling_wav2vec2.py upstream;
the sdist does not ship the per-model tests) with a tiny config. One test class per pooling, plus a layer-norm
backbone that receives the attention mask. Two checks of our own follow the mixin's in each class: eager vs SDPA on a
really padded batch, and gradient checkpointing vs plain backward with frozen lower layers.
"""

from __future__ import annotations

import atexit
import copy
import importlib
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import unittest
import warnings
from pathlib import Path
from unittest import mock

import pytest


# Set to 1 to skip this module on purpose (e.g. offline without a cached sdist); checked before torch is imported.
# CI (.ci/run) never sets it.
OPT_OUT = "FRAME_ALIGNED_SKIP_TRANSFORMERS_COMMON"
if os.environ.get(OPT_OUT, "") not in ("", "0"):
    pytest.skip(
        f"{OPT_OUT}={os.environ[OPT_OUT]}: transformers' common model tests (ModelTesterMixin, from the installed "
        f"transformers' sdist) skipped on purpose",
        allow_module_level=True,
    )

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers.modeling_layers import GradientCheckpointingLayer  # noqa: E402

from modeling import (  # noqa: E402
    Data2VecAudioForFrameAlignedClassification,
    HubertForFrameAlignedClassification,
    Wav2Vec2ForFrameAlignedClassification,
    WavLMForFrameAlignedClassification,
    WhisperForFrameAlignedClassification,
)


REPO_ROOT = Path(__file__).resolve().parents[1]
SDIST_CACHE = Path(os.environ.get("TRANSFORMERS_SDIST_CACHE", REPO_ROOT / ".cache" / "transformers-sdist"))
# Files taken from the sdist's tests/ folder: the mixin's module imports no other file the sdist ships.
SDIST_TEST_FILES = ("test_modeling_common.py",)
# Modules test_modeling_common.py imports (directly or not) that the sdist does not ship: empty stand-ins.
STAND_INS = {
    "exporters/test_export.py": "class ExportTesterMixin:\n    pass\n",
    "generation/test_utils.py": "class GenerationTesterMixin:\n    pass\n",
    "utils/test_configuration_utils.py": "config_common_kwargs = {}\n",
}


class FetchError(RuntimeError):
    """The sdist (or `parameterized`) could not be downloaded: one test fails with the cause (see `OPT_OUT`)."""


def _pip_download(args: list[str], dest: Path, pattern: str) -> Path:
    """`pip download --no-deps <args>` into `dest`; return the file matching `pattern`.

    pip writes into a private folder first and the file is then moved into place, so concurrent test processes
    (pytest-xdist) never see a half-written archive.
    """
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", tmp]
        try:
            proc = subprocess.run(cmd + args, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise FetchError(f"`pip download {' '.join(args)}` failed: {exc!r}") from exc
        files = sorted(Path(tmp).glob(pattern))
        if proc.returncode != 0 or not files:
            raise FetchError(f"`pip download {' '.join(args)}` failed: {(proc.stdout + proc.stderr).strip()[-600:]}")
        target = dest / files[-1].name
        os.replace(files[-1], target)
    return target


def _fetch_sdist(version: str) -> Path:
    """The transformers sdist of `version` from the cache, downloading it once."""
    cached = SDIST_CACHE / f"transformers-{version}.tar.gz"
    if cached.is_file():
        return cached
    return _pip_download(["--no-binary", ":all:", f"transformers=={version}"], SDIST_CACHE, cached.name)


def _ensure_parameterized() -> None:
    """test_modeling_common.py imports `parameterized` (a tiny pure-Python test helper, not a transformers
    dependency). If the environment lacks it, fetch its wheel into the same cache and import it from the wheel."""
    try:
        importlib.import_module("parameterized")
        return
    except ImportError:
        pass
    wheels = sorted(SDIST_CACHE.glob("parameterized-*.whl"))
    wheel = wheels[-1] if wheels else _pip_download(["--only-binary", ":all:", "parameterized"], SDIST_CACHE, "*.whl")
    sys.path.append(str(wheel))  # a pure-Python wheel is importable as a zip archive
    importlib.import_module("parameterized")


def _import_model_tester_mixin():
    """Extract the common tests of the installed transformers' sdist into a temporary package and import them."""
    version = transformers.__version__
    sdist = _fetch_sdist(version)
    _ensure_parameterized()
    package = f"transformers_sdist_tests_{version.replace('.', '_').replace('-', '_')}"
    root = Path(tempfile.mkdtemp(prefix="transformers-common-tests-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    package_dir = root / package
    package_dir.mkdir()
    wanted = {f"transformers-{version}/tests/{name}": name for name in SDIST_TEST_FILES}
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            if member.name in wanted:
                (package_dir / wanted.pop(member.name)).write_bytes(tar.extractfile(member).read())
    if wanted:
        raise FileNotFoundError(f"{sdist.name} lacks {sorted(wanted)}")
    (package_dir / "__init__.py").write_text("")
    for relative, text in STAND_INS.items():
        path = package_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / "__init__.py").touch()
        if not path.exists():
            path.write_text(text)
    sys.path.insert(0, str(root))
    return importlib.import_module(f"{package}.test_modeling_common")


UNAVAILABLE = None  # why the mixin could not be fetched
try:
    with warnings.catch_warnings():
        # The mixin's marks (flash_attn_test, torch_compile_test, ...) are registered by transformers' conftest only.
        warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
        common = _import_model_tester_mixin()
except FetchError as exc:  # no network and nothing cached. Any other error (import, layout) fails collection.
    UNAVAILABLE = (
        f"transformers' common model tests (~800, ModelTesterMixin) did not run: they come from the "
        f"transformers=={transformers.__version__} sdist, fetched at test time into {SDIST_CACHE} "
        f"($TRANSFORMERS_SDIST_CACHE), and fetching it failed: {exc}\n"
        f"Fix: allow pip to reach PyPI once, or put transformers-{transformers.__version__}.tar.gz into that folder; "
        f"or skip these tests on purpose with {OPT_OUT}=1."
    )


def test_transformers_common_tests_ran():
    """Fails (instead of ~1,000 tests silently becoming one skip) when the mixin could not be fetched."""
    if UNAVAILABLE is not None:
        pytest.fail(UNAVAILABLE, pytrace=False)


class _MixinUnavailable:
    """Stands in for `ModelTesterMixin` when it could not be fetched: its test classes are then not collected (the
    failure above says why)."""

    __test__ = False


if UNAVAILABLE is None:
    ModelTesterMixin = common.ModelTesterMixin
    floats_tensor = common.floats_tensor
    random_attention_mask = common.random_attention_mask
else:
    ModelTesterMixin, floats_tensor, random_attention_mask = _MixinUnavailable, None, None


class FrameAlignedModelTester:
    """Tiny backbone (as transformers' `Wav2Vec2ModelTester`) + the frame-aligned head, for any backbone's class."""

    def __init__(
        self,
        parent,
        model_class=Wav2Vec2ForFrameAlignedClassification,
        pooling="cls_attention",
        use_weighted_layer_sum=False,
        batch_size=13,
        seq_length=1024,  # samples; 3 convs of kernel 8 / stride 4 → 14 frames
        is_training=True,
        hidden_size=16,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
        conv_dim=(32, 32, 32),
        conv_stride=(4, 4, 4),
        conv_kernel=(8, 8, 8),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        num_hidden_layers=2,
        num_attention_heads=2,
        pooling_num_heads=4,
        intermediate_size=20,
        num_labels=4,
        initializer_range=0.02,
    ):
        self.parent = parent
        self.config_class = model_class.config_class
        self.pooling = pooling
        self.use_weighted_layer_sum = use_weighted_layer_sum
        self.batch_size = batch_size
        self.seq_length = seq_length
        self.is_training = is_training
        self.hidden_size = hidden_size
        self.feat_extract_norm = feat_extract_norm
        self.do_stable_layer_norm = do_stable_layer_norm
        self.conv_dim = conv_dim
        self.conv_stride = conv_stride
        self.conv_kernel = conv_kernel
        self.num_conv_pos_embeddings = num_conv_pos_embeddings
        self.num_conv_pos_embedding_groups = num_conv_pos_embedding_groups
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.pooling_num_heads = pooling_num_heads
        self.intermediate_size = intermediate_size
        self.num_labels = num_labels
        self.initializer_range = initializer_range

        output_seq_length = self.seq_length
        for kernel, stride in zip(self.conv_kernel, self.conv_stride):
            output_seq_length = (output_seq_length - (kernel - 1)) / stride
        self.output_seq_length = int(math.ceil(output_seq_length))
        self.encoder_seq_length = self.output_seq_length

    def get_config(self, **overrides):
        kwargs = dict(
            pooling=self.pooling,
            use_weighted_layer_sum=self.use_weighted_layer_sum,
            pooling_num_heads=self.pooling_num_heads,
            hidden_size=self.hidden_size,
            feat_extract_norm=self.feat_extract_norm,
            do_stable_layer_norm=self.do_stable_layer_norm,
            conv_dim=self.conv_dim,
            conv_stride=self.conv_stride,
            conv_kernel=self.conv_kernel,
            conv_bias=False,
            num_conv_pos_embeddings=self.num_conv_pos_embeddings,
            num_conv_pos_embedding_groups=self.num_conv_pos_embedding_groups,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            hidden_dropout=0.1,
            # LayerDrop makes the count of hidden states random in training (transformers ≥ 5 records only the layers
            # that run): the common tests count them; the weighted sum refuses it (tests/test_modeling.py)
            layerdrop=0.0,
            mask_time_prob=0.5,
            mask_time_length=2,
            initializer_range=self.initializer_range,
            num_labels=self.num_labels,
        )
        kwargs.update(overrides)
        if "feat_extract_norm" not in self.config_class().to_dict():  # data2vec-audio: always layer norms, post-norm
            kwargs.pop("feat_extract_norm")
            kwargs.pop("do_stable_layer_norm")
        return self.config_class(**kwargs)

    def get_deterministic_config(self, **overrides):
        """No dropout, LayerDrop or SpecAugment: train-mode forwards are reproducible."""
        no_randomness = dict.fromkeys(
            (
                "hidden_dropout",
                "attention_dropout",
                "activation_dropout",
                "feat_proj_dropout",
                "final_dropout",
                "layerdrop",
                "mask_time_prob",
                "pooling_dropout",
            ),
            0.0,
        )
        return self.get_config(**{**no_randomness, **overrides})

    def prepare_config_and_inputs(self):
        input_values = floats_tensor([self.batch_size, self.seq_length], scale=1.0)
        attention_mask = random_attention_mask([self.batch_size, self.seq_length])
        return self.get_config(), input_values, attention_mask

    def prepare_config_and_inputs_for_common(self):
        config, input_values, attention_mask = self.prepare_config_and_inputs()
        return config, {"input_values": input_values, "attention_mask": attention_mask}

    def prepare_padded_batch(self):
        """Three zero-padded clips of 100%, 60% and 35% of `seq_length` samples, their mask and labels."""
        generator = torch.Generator().manual_seed(0)
        input_values = torch.randn(3, self.seq_length, generator=generator)
        attention_mask = torch.ones(3, self.seq_length, dtype=torch.long)
        for row, fraction in enumerate((1.0, 0.6, 0.35)):
            length = int(self.seq_length * fraction)
            input_values[row, length:] = 0.0
            attention_mask[row, length:] = 0
        labels = torch.tensor([0, 1, self.num_labels - 1])
        return input_values, attention_mask, labels


class FrameAlignedModelTest(ModelTesterMixin, unittest.TestCase):
    """Stage-2 head (`cls_attention`) on a wav2vec2-base style backbone; the subclasses below rerun everything for the
    other poolings, a layer-norm backbone, and the other backbones (HuBERT, WavLM, data2vec-audio)."""

    pooling = "cls_attention"
    use_weighted_layer_sum = False
    # wav2vec2-base style (group-norm CNN, post-norm encoder, no attention mask into the backbone) by default.
    backbone = {}
    model_class = Wav2Vec2ForFrameAlignedClassification
    all_model_classes = (Wav2Vec2ForFrameAlignedClassification,)
    supports_reentrant_checkpointing = True
    # Our files carry no "# Copyright <year>" header, which the mixin reads as "added before 2023" and would skip the
    # check that `_init_weights` alone initialises every parameter: we want that check (from_pretrained relies on it).
    test_can_init_all_missing_weights_before_2023 = True
    # Speech model: no token embeddings to resize (transformers' own Wav2Vec2 tests skip these for the same reason).
    test_resize_embeddings = False

    def setUp(self):
        self.model_tester = FrameAlignedModelTester(
            self,
            self.model_class,
            pooling=self.pooling,
            use_weighted_layer_sum=self.use_weighted_layer_sum,
            **self.backbone,
        )

    def _prepare_for_class(self, inputs_dict, model_class, return_labels=False):
        # The mixin adds labels only for the classes of transformers' Auto mappings; ours takes one label per clip.
        inputs_dict = super()._prepare_for_class(inputs_dict, model_class, return_labels=return_labels)
        if return_labels:
            inputs_dict["labels"] = torch.zeros(self.model_tester.batch_size, dtype=torch.long)
        return inputs_dict

    @unittest.skip(reason="Speech model: it takes `input_values`, has no input embeddings to get or set")
    def test_model_get_set_embeddings(self):
        pass

    def test_model_weights_reload_no_missing_tied_weights(self):
        """The mixin's test nukes every weight on file and expects `from_pretrained` to load anyway, "yelling" about
        each missing tensor. Our classes refuse a checkpoint whose backbone does not load (issue 19: transformers
        would start it from random values), so the same file must be refused, naming exactly the backbone's
        tensors (every one: none too many, none too few; `masked_spec_embed` is exempt, used in training only)."""
        from safetensors.torch import save_file

        from modeling import BackboneWeightsError
        from modeling.loading_frame_aligned import SHOWN_KEYS

        for model_class in self.all_model_classes:
            config, _ = self.model_tester.prepare_config_and_inputs_for_common()
            model = model_class(config)
            prefix = f"{model.base_model_prefix}."
            expected = sorted(
                name
                for name in model.state_dict()
                if name.startswith(prefix) and not name.endswith("masked_spec_embed")
            )
            with tempfile.TemporaryDirectory() as tmp_dir:
                model.save_pretrained(tmp_dir)
                save_file({"tensor": torch.tensor([1, 2])}, os.path.join(tmp_dir, "model.safetensors"))
                with self.assertRaises(BackboneWeightsError) as refused:
                    model_class.from_pretrained(tmp_dir)
            message = str(refused.exception)
            self.assertIn(f"{len(expected)} backbone tensors of {model_class.__name__} are missing", message)
            self.assertIn(", ".join(expected[:SHOWN_KEYS]), message)

    def test_model_outputs_equivalence(self):
        # The mixin builds its failure message eagerly with `tuple_output - dict_output`, which torch refuses for bool
        # tensors, and our output carries the bool `frame_mask`. Run the mixin's check with `frame_mask` cast to long
        # (every other output unchanged), and compare the bool masks of the tuple and dict outputs exactly here.
        original_forward = self.model_class.forward

        def forward_with_long_frame_mask(model, *args, **kwargs):
            output = original_forward(model, *args, **kwargs)
            if isinstance(output, tuple):
                return tuple(t.long() if isinstance(t, torch.Tensor) and t.dtype == torch.bool else t for t in output)
            output.frame_mask = output.frame_mask.long()
            return output

        with mock.patch.object(self.model_class, "forward", forward_with_long_frame_mask):
            super().test_model_outputs_equivalence()

        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        model = self.model_class(config).eval()
        with torch.no_grad():
            dict_output = model(**inputs_dict, return_dict=True)
            tuple_output = model(**inputs_dict, return_dict=False)
        self.assertEqual(dict_output.frame_mask.dtype, torch.bool)
        self.assertEqual(len(tuple_output), len(dict_output.to_tuple()))
        self.assertTrue(
            torch.equal(tuple_output[list(dict_output.keys()).index("frame_mask")], dict_output.frame_mask)
        )

    # ---- Checks of our own, beyond the mixin -------------------------------------------------------------------

    def test_eager_matches_sdpa_on_padded_batch(self):
        """The mixin's eager-vs-SDPA test pads 2 samples (≤ 1 frame) and, for a group-norm backbone, never sends a mask
        to the backbone. Here: clips padded by 40% and 65%, loaded with each implementation and switched at runtime."""
        if not self.model_class._supports_sdpa:
            self.skipTest(f"{self.model_class.__name__}: the backbone has no SDPA attention (eager only)")
        config = self.model_tester.get_deterministic_config()
        input_values, attention_mask, labels = self.model_tester.prepare_padded_batch()
        model = self.model_class(config)
        with tempfile.TemporaryDirectory() as tmp:
            model.save_pretrained(tmp)
            models = {
                impl: self.model_class.from_pretrained(tmp, attn_implementation=impl).eval()
                for impl in ("eager", "sdpa")
            }
        switched = copy.deepcopy(models["sdpa"])
        switched.set_attn_implementation("eager")
        models["sdpa→eager"] = switched

        outputs = {}
        for name, candidate in models.items():
            expected = "eager" if name != "sdpa" else "sdpa"
            attention_configs = [candidate.config, candidate.base_model.config] + [
                module.config for module in candidate.modules() if type(module).__name__ == "Wav2Vec2Attention"
            ]
            self.assertTrue(all(c._attn_implementation == expected for c in attention_configs), name)
            with torch.no_grad():
                outputs[name] = candidate(input_values, attention_mask=attention_mask, labels=labels)

        reference = outputs["eager"]
        frame_mask = reference.frame_mask
        self.assertEqual(frame_mask.sum(-1).tolist()[0], frame_mask.shape[1])
        self.assertLess(frame_mask.sum(-1).tolist()[2], frame_mask.shape[1] // 2)
        for name in ("sdpa", "sdpa→eager"):
            other = outputs[name]
            self.assertTrue(torch.equal(other.frame_mask, frame_mask))
            for key in ("loss", "logits", "utterance_embedding", "frame_weights"):
                torch.testing.assert_close(other[key], reference[key], atol=1e-5, rtol=1e-4, msg=f"{name}: {key}")
            torch.testing.assert_close(
                other.frame_logits[frame_mask], reference.frame_logits[frame_mask], atol=1e-5, rtol=1e-4
            )

    # torch warns (harmlessly) when a frozen layer is checkpointed with reentrant checkpointing.
    @pytest.mark.filterwarnings("ignore:None of the inputs have requires_grad:UserWarning")
    def test_gradient_checkpointing_matches_plain_backward(self):
        """Same loss and the same gradient on every trainable parameter with activation checkpointing (reentrant or
        not), also when `freeze_for_training` freezes lower layers (the mixin unfreezes everything first)."""
        input_values, attention_mask, labels = self.model_tester.prepare_padded_batch()
        num_layers = self.model_tester.num_hidden_layers
        for num_trainable_layers in (None, 1, 0):
            torch.manual_seed(0)
            reference_model = self.model_class(
                self.model_tester.get_deterministic_config(num_trainable_layers=num_trainable_layers)
            )

            def loss_and_grads(checkpointing_kwargs):
                model = copy.deepcopy(reference_model)
                model.freeze_for_training()
                model.train()
                if checkpointing_kwargs is not None:
                    model.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpointing_kwargs)
                    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
                    self.assertTrue(layers and all(layer.gradient_checkpointing for layer in layers))
                loss = model(input_values, attention_mask=attention_mask, labels=labels).loss
                loss.backward()
                return loss.detach(), {name: p.grad for name, p in model.named_parameters()}

            loss, grads = loss_and_grads(None)
            # Every parameter `freeze_for_training` leaves trainable gets a gradient (masked_spec_embed is only used by
            # SpecAugment, off here); the top `num_trainable_layers` transformer layers are among them.
            prepared = copy.deepcopy(reference_model)
            prepared.freeze_for_training()
            prefix = self.model_class.base_model_prefix
            trainable = {name for name, p in prepared.named_parameters() if p.requires_grad} - {
                f"{prefix}.masked_spec_embed"
            }
            self.assertEqual({name for name, g in grads.items() if g is not None}, trainable)
            top_layer = f"{prefix}.encoder.layers.{num_layers - 1}."
            self.assertEqual(any(name.startswith(top_layer) for name in trainable), num_trainable_layers != 0)
            reentrant = (True, False) if self.supports_reentrant_checkpointing else (False,)
            for checkpointing_kwargs in ({"use_reentrant": value} for value in reentrant):
                with self.subTest(num_trainable_layers=num_trainable_layers, **checkpointing_kwargs):
                    gc_loss, gc_grads = loss_and_grads(checkpointing_kwargs)
                    torch.testing.assert_close(gc_loss, loss)
                    self.assertEqual(
                        sorted(name for name, g in gc_grads.items() if g is not None),
                        sorted(name for name, g in grads.items() if g is not None),
                    )
                    for name, grad in grads.items():
                        if grad is not None:
                            torch.testing.assert_close(gc_grads[name], grad, atol=1e-6, rtol=1e-5, msg=name)


# heavy: transformers' common tests of another variant (make test keeps one class per backbone and the
# wav2vec2 layer-norm one)
@pytest.mark.heavy
class FrameAlignedAttentiveModelTest(FrameAlignedModelTest):
    pooling = "attentive"


# heavy: transformers' common tests again with the self-attention pooling (make test runs the default class)
@pytest.mark.heavy
class FrameAlignedSelfAttentionModelTest(FrameAlignedModelTest):
    pooling = "self_attention"


# heavy: transformers' common tests again with mean pooling (make test runs the default class)
@pytest.mark.heavy
class FrameAlignedMeanModelTest(FrameAlignedModelTest):
    pooling = "mean"


class FrameAlignedLayerNormBackboneModelTest(FrameAlignedModelTest):
    """wav2vec2-large style backbone (layer-norm CNN, pre-norm encoder): the backbone itself receives `attention_mask`,
    so the masked paths of eager and SDPA attention in the backbone are exercised too."""

    pooling = "cls_attention"
    backbone = {"feat_extract_norm": "layer", "do_stable_layer_norm": True}


# ---- The other backbones (issue 13): the same head on HuBERT, WavLM and data2vec-audio ---------------------------
# One stage-2 (`cls_attention`) class per backbone and norm variant; the poolings are backbone-independent code already
# covered above on wav2vec2, so they are not rerun per backbone (each class costs ~20 s). data2vec-audio has no norm
# variants (layer-normalised CNN, post-norm encoder only). The weighted layer sum runs on the HuBERT group-norm class.


class HubertFrameAlignedModelTest(FrameAlignedModelTest):
    """hubert-base style backbone with `use_weighted_layer_sum=True` (SUPERB). On a post-norm encoder every parameter
    gets a gradient; on a pre-norm one the final encoder norm is unused by the sum (as in transformers' own heads),
    which
    the mixin's gradient-checkpointing test would flag, so the layer-norm variant below runs without the sum."""

    model_class = HubertForFrameAlignedClassification
    all_model_classes = (HubertForFrameAlignedClassification,)
    use_weighted_layer_sum = True


# heavy: transformers' common tests of another variant (make test keeps one class per backbone and the
# wav2vec2 layer-norm one)
@pytest.mark.heavy
class HubertLayerNormModelTest(HubertFrameAlignedModelTest):
    backbone = {"feat_extract_norm": "layer", "do_stable_layer_norm": True}
    use_weighted_layer_sum = False


class WavLMFrameAlignedModelTest(FrameAlignedModelTest):
    model_class = WavLMForFrameAlignedClassification
    all_model_classes = (WavLMForFrameAlignedClassification,)
    # WavLM refuses reentrant checkpointing (its backward never finishes, also in transformers' own WavLM classes).
    supports_reentrant_checkpointing = False

    @unittest.skip(reason="WavLM: use_reentrant=True never finishes the backward pass; the model refuses it")
    def test_training_gradient_checkpointing_use_reentrant_true(self):
        pass

    @unittest.skip(
        reason="WavLM's eager attention (F.multi_head_attention_forward) returns weights the output does "
        "not depend on: no gradient reaches them (the backbone's behaviour, not the head's)"
    )
    def test_retain_grad_hidden_states_attentions(self):
        pass

    def test_reentrant_checkpointing_is_refused(self):
        model = self.model_class(self.model_tester.get_config())
        with self.assertRaisesRegex(ValueError, "use_reentrant=True never finishes"):
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})


# heavy: transformers' common tests of another variant (make test keeps one class per backbone and the
# wav2vec2 layer-norm one)
@pytest.mark.heavy
class WavLMLayerNormModelTest(WavLMFrameAlignedModelTest):
    backbone = {"feat_extract_norm": "layer", "do_stable_layer_norm": True}


class Data2VecAudioFrameAlignedModelTest(FrameAlignedModelTest):
    model_class = Data2VecAudioForFrameAlignedClassification
    all_model_classes = (Data2VecAudioForFrameAlignedClassification,)


class WhisperFrameAlignedModelTester(FrameAlignedModelTester):
    """Whisper's encoder (transformers' `WhisperEncoder` modules, tiny) behind the head; `seq_length` samples give
    ⌈⌊seq_length/160⌋/2⌉ frames (frames.py)."""

    # wav2vec 2.0 names of the tester → Whisper's config fields
    RENAMED = {"hidden_dropout": "dropout", "layerdrop": "encoder_layerdrop"}
    UNUSED = ("feat_proj_dropout", "mask_time_prob", "mask_time_length")

    def __init__(self, parent, model_class, **kwargs):
        super().__init__(parent, model_class, **kwargs)
        self.encoder_seq_length = self.output_seq_length = -(-(self.seq_length // 160) // 2)

    def get_config(self, **overrides):
        kwargs = dict(
            pooling=self.pooling,
            use_weighted_layer_sum=self.use_weighted_layer_sum,
            pooling_num_heads=self.pooling_num_heads,
            d_model=self.hidden_size,
            encoder_layers=self.num_hidden_layers,
            encoder_attention_heads=self.num_attention_heads,
            encoder_ffn_dim=self.intermediate_size,
            decoder_layers=1,
            decoder_attention_heads=2,
            decoder_ffn_dim=8,
            vocab_size=32,
            max_target_positions=8,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
            dropout=0.1,
            encoder_layerdrop=0.0,
            init_std=self.initializer_range,
            num_labels=self.num_labels,
        )
        for name, value in overrides.items():
            if name not in self.UNUSED:
                kwargs[self.RENAMED.get(name, name)] = value
        return self.config_class(**kwargs)


# heavy: transformers' common tests of the fifth backbone (~100 tests, the costliest class); Whisper's own guarantees
# run in make test (tests/test_whisper.py, the backbone matrix)
@pytest.mark.heavy
class WhisperFrameAlignedModelTest(FrameAlignedModelTest):
    model_class = WhisperForFrameAlignedClassification
    all_model_classes = (WhisperForFrameAlignedClassification,)

    def setUp(self):
        self.model_tester = WhisperFrameAlignedModelTester(  # 3200 samples: 10 frames (the padded batch: 10, 6, 4)
            self,
            self.model_class,
            pooling=self.pooling,
            use_weighted_layer_sum=self.use_weighted_layer_sum,
            seq_length=3200,
        )

    @unittest.skip(
        reason="the frame-aligned Whisper encoder runs its layers itself (variable length), not through transformers' "
        "capture_outputs: output_hidden_states is True/False (a list of layer indices is refused: test_whisper.py)"
    )
    def test_can_capture_specific_layers_hidden_states(self):
        pass
