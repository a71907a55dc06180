"""The one runner of the documentation's snippets: every ```python, ```bash and ```sh block of README.md and of every
docs/*.md page runs as written, in document order, or is listed in `REGISTRY` below with the reason it does not run
here (a GPU, a licensed corpus, a cluster, minutes of training) or the test that runs it as written instead. A block
that is neither fails `test_every_block_is_run_or_registered`, so a new page cannot bring unrun snippets.

Each document runs in its own folder laid out like a checkout after `make demo` (`data/polish3` with a few real clips
of every speaker, the scripts, `configs/`, `examples/`, a finished `runs/demo` with tiny folds) against a loopback Hub
(`tests/hub_server.py`, over HTTP) that holds what the snippets name: tiny backbones as `facebook/wav2vec2-base`,
`facebook/hubert-base-ls960` and `microsoft/wavlm-base-plus` (saved with transformers' own classes), and `runs/demo`
published as `ORG/NAME-fold1`, `ORG/NAME-fold2`. Nothing in a snippet is rewritten. Slow: the blocks spawn processes
and train for a few steps."""

import csv
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from backbone_runs import FAST_CONV
from helpers import POLISH3, POLISH3_LABELS, REPO, save_plain_backbone, tiny_config
from hub_server import HubServer, client_env
from runs import save_published, write_run

from modeling import Wav2Vec2ForFrameAlignedClassification
from modeling.audio import load_audio
from modeling.collator import make_feature_extractor
from modeling.metrics.predictions import Predictions, predictions_csv
from modeling.prediction_fields import softmax


LANGUAGES = ("python", "bash", "sh")
FENCE = re.compile(r"^(?P<indent> *)```(?P<language>[\w+-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)``` *$", re.S | re.M)

# Every block the runner does not run, keyed by (document, a line of the block; None: every block of the document).
# The value starts with "run by tests/<file>::<test>" when that test runs the block as written (checked below: the file
# exists and names the document), else it says why the block cannot run here. When a page lands with blocks the runner
# cannot run, add them here.
REGISTRY = {
    ("README.md", "make demo   # set up .venv"): "not run: `make test` is this suite and `make demo` trains 5 folds "
    "× 2 stages (minutes); CI runs `make test` itself (.ci/run); tests/training/test_training.py trains "
    "configs/demo.yaml",
    ("README.md", "python push_to_hub.py --run-dir runs/demo --repo-id ORG/NAME --dry-run"): "not run: the same "
    "lines as docs/publishing.md's first block, which runs here (tests/test_readme.py checks they are the same)",
    ("README.md", "python predict.py data/polish3/audio"): "not run: the same commands as docs/inference.md's first "
    "block, which tests/inference/test_inference.py runs (tests/test_readme.py checks they are the same)",
    ("README.md", "pip install torch"): "not run: installs packages from the network (`make test` installs the same)",
    ("README.md", "python train.py --config configs/iemocap.yaml --data-dir"): "not run: the licensed IEMOCAP corpus "
    "and a GPU (tests/training/test_configs.py resolves configs/iemocap.yaml, tests/data/test_corpora.py loads the "
    "official layout)",
    ("README.md", "python train.py --config configs/demo.yaml --output-dir runs/demo-ce"): "not run: trains the demo "
    "(minutes); tests/evaluation/test_evaluation.py compares two trained tiny runs with compare_runs.py",
    ("training.md", "make demo "): "not run: trains 5 folds × 2 stages (minutes); "
    "tests/training/test_training.py trains configs/demo.yaml",
    ("training.md", "python train.py --config configs/iemocap.yaml --data-dir"): "not run: the licensed IEMOCAP "
    "corpus and a GPU",
    ("training.md", "torchrun --nproc_per_node 2"): "not run: trains the 5-fold demo in 2 processes (minutes); "
    "tests/training/test_distributed.py runs this torchrun command on a 1-epoch config",
    ("training.md", "python train.py --config configs/flea.yaml"): "not run: the licensed IEMOCAP corpus, Hub "
    "weights and a GPU (Table 6: 3 runs × 5 folds, stage 0 included); tests/training/test_configs.py resolves the "
    "three configs, tests/training/test_stage0.py trains stage 0 on polish3",
    ("training.md", "DATA=/data/IEMOCAP_full_release"): "not run: the licensed IEMOCAP corpus and a GPU (Table 3 is "
    "5 × 5 folds × 70 epochs on wav2vec2-base)",
    ("own_data.md", "python examples/finetune_audio_dataset.py"): "not run: `my_corpus/` is the reader's corpus; "
    "tests/test_examples.py runs the example on a tiny one",
    ("evaluation.md", "# an IEMOCAP run"): "not run: a finished IEMOCAP run and the licensed CREMA-D, EmoDB and "
    "MSP-Podcast corpora; tests/evaluation/test_evaluation.py runs score.py on generated trees of their layouts",
    ("evaluation.md", "python compare_runs.py runs/table3/1"): "not run: two finished Table 3 runs on IEMOCAP; "
    "tests/evaluation/test_evaluation.py compares two trained tiny runs",
    ("model.md", "# a plain backbone checkpoint"): "run by "
    "tests/test_backbones.py::test_readme_backbones_snippet_runs",
    ("inference.md", "python predict.py data/polish3/audio"): "run by "
    "tests/inference/test_inference.py::test_readme_batch_commands_run_as_written (with the values checked)",
    ("inference.md", 'timeline = load_pipeline("runs/demo/fold1/stage2/best", backend="onnx")'): "run by "
    "tests/inference/test_inference.py::test_readme_batch_commands_run_as_written",
    ("gpu.md", None): "run by tests/test_gpu_page.py (the GPU benchmark command, which says 'not run' without CUDA; "
    "the torchrun command line parsed by train.py) and tests/test_benchmarks.py (the benchmark's dry run)",
    ("emobox.md", None): "run by tests/data/test_docs_emobox.py (EmoBox's layout generated; the bash block trains, "
    "heavy)",
    ("evaluation_breakdowns_calibration.md", None): "run by tests/evaluation/test_docs_evaluation.py",
    ("demo.md", None): "run by tests/app/test_app_server.py (app.py started as a server on a free port, the "
    "gradio_client block against it, every command line parsed) and tests/app/test_space.py (the push with --space, "
    "the backend-choice block, heavy)",
    ("long_recordings.md", None): "run by tests/test_docs_long_recordings.py (its python blocks, and each bash line "
    "given to the command's main with the shell's argument splitting)",
    ("imbalance_and_soft_labels.md", None): "run by tests/test_imbalance_docs.py (its python blocks; the YAML block "
    "checked as a stage config)",
    ("scaling.md", None): "run by tests/inference/test_ray_engine.py::"
    "test_scaling_page_ray_commands_and_snippet_run_as_written and tests/training/test_multinode.py (the Slurm "
    "scripts under bash with recorders, the torchrun and accelerate commands)",
}
DOCS = REPO / "docs"


@dataclass
class Block:
    document: str  # README.md, or a page's name under docs/
    number: int  # 1-based, among the document's runnable-language blocks
    language: str
    code: str

    def __str__(self):
        return f"{self.document}, block {self.number} ({self.language}):\n{self.code}"


def documents() -> list[str]:
    return ["README.md", *sorted(path.name for path in DOCS.glob("*.md"))]


def document_path(document: str) -> Path:
    return REPO / document if document == "README.md" else DOCS / document


def blocks(document: str) -> list[Block]:
    text = document_path(document).read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        if match["language"] in LANGUAGES:
            indent = len(match["indent"])
            code = "".join(line[indent:] for line in match["code"].splitlines(keepends=True))
            found.append(Block(document, len(found) + 1, match["language"], code))
    return found


def registered(block: Block) -> str | None:
    """The registry's reason for `block`, or None when the runner runs it."""
    for (document, line), reason in REGISTRY.items():
        if document == block.document and (line is None or line in block.code):
            return reason
    return None


def test_every_block_is_run_or_registered():
    """The registry is exact: each entry names one block (or a whole document) that exists, each "run by" names a
    test file that exists and reads the document, and each reason is a sentence. Everything else is run below."""
    problems = []
    for (document, line), reason in REGISTRY.items():
        if not document_path(document).is_file():
            problems.append(f"{document}: no such document")
            continue
        matches = [block for block in blocks(document) if line is None or line in block.code]
        if len(matches) != 1 and line is not None:
            problems.append(f"{document}: {line!r} names {len(matches)} blocks, not 1")
        if line is None and not matches:
            problems.append(f"{document}: has no block to register")
        if reason.startswith("run by "):
            for test_file in re.findall(r"tests/[\w/]+\.py", reason):
                path = REPO / test_file
                if not path.is_file() or document.removesuffix(".md") not in path.read_text():
                    problems.append(f"{document}: {test_file} does not exist or does not read {document}")
        elif not reason.startswith("not run: ") or len(reason) < 30:
            problems.append(f"{document}: {reason!r} is neither 'run by tests/...' nor 'not run: <why>'")
    assert problems == []


def test_the_runner_sees_every_fence():
    """Languages the runner does not run stay out only when they are not code a user runs (output samples,
    BibTeX): a ```shell or ```console block would silently escape, so it is refused."""
    for document in documents():
        text = document_path(document).read_text(encoding="utf-8")
        other = {m["language"] for m in FENCE.finditer(text)} - {*LANGUAGES, "", "bibtex", "text", "yaml"}
        assert not other, f"{document}: ```{sorted(other)} blocks are neither run nor allowed (use ```bash)"


def mini_polish3(root: Path, named: set[str]) -> None:
    """data/polish3 with two clips per speaker and class, and every clip a document names (metadata.csv to match)."""
    with open(POLISH3 / "metadata.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    kept, seen = [], {}
    for row in rows:
        key = (row["speaker"], row["label"])
        if Path(row["file"]).name in named or seen.get(key, 0) < 2:
            seen[key] = seen.get(key, 0) + 1
            kept.append(row)
    (root / "audio").mkdir(parents=True)
    for row in kept:
        shutil.copy(POLISH3 / row["file"], root / row["file"])
    with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(kept)
    shutil.copy(POLISH3 / "ATTRIBUTION.md", root / "ATTRIBUTION.md")


def make_runs(root: Path) -> None:
    """runs/ of the checkout: a finished `runs/demo` (folds 1 and 2 of 5, tiny random checkpoints, test predictions),
    its fold-1 model as fold 5's too (the timeline figure's), and a 6-layer stage-1 `runs/iemocap/fold1`."""
    demo = write_run(root / "runs" / "demo")
    best = demo / "fold1" / "stage2" / "best"
    shutil.copytree(best, demo / "fold5" / "stage2" / "best")
    model = Wav2Vec2ForFrameAlignedClassification.from_pretrained(best)
    corpus = root / "data" / "polish3"
    files = sorted(path.relative_to(corpus).as_posix() for path in (corpus / "audio").iterdir())[:4]
    batch = make_feature_extractor()(
        [load_audio(corpus / f) for f in files],
        sampling_rate=16000,
        padding=True,
        return_tensors="pt",
        return_attention_mask=True,
    )
    with torch.no_grad():
        logits = model(**batch).logits.numpy()
    rows = Predictions(files, ["m1"] * 4, np.array([0, 1, 2, 0]), softmax(logits), POLISH3_LABELS)
    (demo / "fold1" / "predictions_test.csv").write_text(predictions_csv(rows))
    stage1 = root / "runs" / "iemocap" / "fold1" / "stage1" / "best"
    id2label = {0: "neutral", 1: "happy", 2: "sad", 3: "angry"}
    config = tiny_config(num_hidden_layers=6, pooling="attentive", num_labels=4, id2label=id2label)
    Wav2Vec2ForFrameAlignedClassification(config).save_pretrained(stage1)
    make_feature_extractor().save_pretrained(stage1)


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """(the template checkout, the loopback Hub, the clients' environment)."""
    base = tmp_path_factory.mktemp("checkout")
    named = {name for d in documents() for name in re.findall(r"data/polish3/audio/([\w.]+\.flac)", _text(d))}
    mini_polish3(base / "data" / "polish3", named)
    make_runs(base)
    placeholder_clips(base)
    with HubServer() as hub, pytest.MonkeyPatch.context() as patch:
        from huggingface_hub import HfApi, constants

        from modeling.publishing.hub import push_run

        patch.setattr(constants, "HF_HUB_OFFLINE", False)  # this process uploads to the loopback Hub only
        patch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        api = HfApi(endpoint=hub.url, token="dummy")
        for hub_id, model_type in (
            ("facebook/wav2vec2-base", "wav2vec2"),
            ("facebook/hubert-base-ls960", "hubert"),
            ("microsoft/wavlm-base-plus", "wavlm"),
        ):
            folder = tmp_path_factory.mktemp(model_type)
            layers = {"num_hidden_layers": 6} if model_type == "wav2vec2" else {}  # stage 2 trains the top 6
            save_plain_backbone(model_type, folder, **FAST_CONV, **layers)
            api.create_repo(hub_id)
            api.upload_folder(repo_id=hub_id, folder_path=folder)
        push_run(base / "runs" / "demo", "ORG/NAME", api=api)  # ORG/NAME-fold1, ORG/NAME-fold2
        for k in (3, 4, 5):  # the other folds of a 5-fold run, as a fold's repository holds them
            published = save_published(tmp_path_factory.mktemp(f"fold{k}"))
            api.create_repo(f"ORG/NAME-fold{k}")
            api.upload_folder(repo_id=f"ORG/NAME-fold{k}", folder_path=published)
        env = client_env(hub, tmp_path_factory.mktemp("hf_home"))
        env.update(
            PYTHONPATH=str(REPO),
            OMP_NUM_THREADS="1",
            PATH=f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}",
            MPLBACKEND="Agg",
        )
        yield base, hub, env


def placeholder_clips(root: Path) -> None:
    """The file names the snippets use for "your" audio: speech.flac, b.flac and a 44.1 kHz stereo a.wav."""
    shutil.copy(POLISH3 / "audio" / "m1.a_nie_1.flac", root / "speech.flac")
    shutil.copy(POLISH3 / "audio" / "m2.n_nie_1.flac", root / "b.flac")
    waveform = load_audio(POLISH3 / "audio" / "m3.s_tak_1.flac")
    stereo = np.stack([waveform, waveform], axis=1)
    sf.write(root / "a.wav", soxr.resample(stereo, 16000, 44100), 44100)


def _text(document: str) -> str:
    return document_path(document).read_text(encoding="utf-8")


def workspace(base: Path, folder: Path) -> Path:
    """A fresh checkout for one document: the repository's files linked, runs/ and data/ copied (snippets write)."""
    for name in ("configs", "examples", "modeling", "predict.py", "score.py", "train.py", "push_to_hub.py"):
        (folder / name).symlink_to(REPO / name)
    (folder / "compare_runs.py").symlink_to(REPO / "compare_runs.py")
    shutil.copytree(base / "runs", folder / "runs")
    shutil.copytree(base / "data", folder / "data")
    for name in ("speech.flac", "b.flac", "a.wav"):
        shutil.copy(base / name, folder / name)
    (folder / "docs").mkdir()  # a figure a snippet writes lands here, not in the repository's docs/
    return folder


PYTHON_RUNNER = """
import sys
for number, path in enumerate(sys.argv[1:], start=1):
    print(f"--- block {path}", flush=True)
    exec(compile(open(path, encoding="utf-8").read(), path, "exec"), {"__name__": "__main__"})
"""


def run_blocks(found: list[Block], cwd: Path, env: dict) -> None:
    """Runs `found` in order: consecutive python blocks in one process (each with fresh globals), bash one by one."""
    groups: list[list[Block]] = []
    for block in found:
        if groups and block.language == "python" == groups[-1][-1].language:
            groups[-1].append(block)
        else:
            groups.append([block])
    for group in groups:
        if group[0].language == "python":
            paths = []
            for block in group:
                path = cwd / f".snippet_{block.document}_{block.number}.py"
                path.write_text(block.code, encoding="utf-8")
                paths.append(str(path))
            command = [sys.executable, "-c", PYTHON_RUNNER, *paths]
        else:
            command = ["bash", "-euo", "pipefail", "-c", group[0].code]
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
        shown = "\n\n".join(map(str, group))
        assert done.returncode == 0, f"{shown}\n--- stdout:\n{done.stdout[-2000:]}\n--- stderr:\n{done.stderr[-3000:]}"


# The costliest pages (minutes on 2 cores: each push_to_hub.py / train.py process imports torch) run in `make test-all`
# only; what their blocks do is also covered by tests in `make test` (tests/publishing, tests/trainer, tests/data).
HEAVY_PAGES = {"publishing.md", "trainer_recipes.md", "own_data.md", "inference.md"}  # inference.md: 41 s


@pytest.mark.slow
@pytest.mark.parametrize(
    "document",
    [
        pytest.param(d, marks=[pytest.mark.heavy] if d in HEAVY_PAGES else [])
        for d in documents()
        if any(registered(b) is None for b in blocks(d))
    ],
)
def test_every_block_of_the_document_runs_as_written(document, checkout, tmp_path):
    base, _, env = checkout
    found = [block for block in blocks(document) if registered(block) is None]
    run_blocks(found, workspace(base, tmp_path), env)
