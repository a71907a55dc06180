"""The demo Space of a published run: a Hugging Face Space (Gradio SDK) that loads the fold repositories by id.

`space_target(run, fold_refs, space_id)` plans one commit to the Space `space_id` (repo type "space"):

    README.md          front matter (sdk: gradio, the tested sdk_version, app_file, the fold repos under `models:`,
                       so the Hub lists the Space on each model page) + what the page shows and its limits
    app.py             a launcher: the fold repos' ids (and branches), nothing else (generated here)
    demo.py            modeling/app/demo.py verbatim (the page; self-contained)
    requirements.txt   what app.py + demo.py + the checkpoints' remote code import (gradio comes from sdk_version)
    example.flac       one clip of the bundled demo corpus (polish3, CC BY 4.0, credited in README.md)

No weights are copied: the Space downloads each fold from its repository, with its remote code and, where the fold
was published with one, its measured ONNX backend choice (`onnx/backend.json`, written by
`modeling.inference.backend_choice`). The push is idempotent like the model push (`hub.push_target`: only changed
files are committed). Imports no torch.
"""

from pathlib import Path

from .run import PushError, Run


GRADIO_SDK_VERSION = "6.31.0"  # the gradio the demo is tested with (pyproject's [app] extra, tests/app/)
PYTHON_VERSION = "3.11"
APP_SOURCE = Path(__file__).resolve().parents[1] / "app" / "demo.py"
EXAMPLE_CLIP = Path(__file__).resolve().parents[2] / "data" / "polish3" / "audio" / "m1.a_nie_1.flac"
EXAMPLE_NAME = "example.flac"
# What the Space imports: demo.py (numpy, soundfile, matplotlib, pandas through gradio, torch, onnxruntime) and the
# checkpoints' remote code (transformers, torch, soundfile, soxr); versions as the project's own dependencies.
REQUIREMENTS = (
    "--extra-index-url https://download.pytorch.org/whl/cpu",
    "torch==2.13.0",  # the versions the project is tested with (a CPU wheel from the index above)
    "transformers>=5.24,<6",
    "huggingface-hub>=1.0",
    "numpy",
    "soundfile>=0.12",
    "soxr>=0.3",
    "matplotlib>=3.7",
    "onnxruntime>=1.18",
)


def space_url(space_id: str, endpoint: str = "https://huggingface.co") -> str:
    return f"{endpoint.rstrip('/')}/spaces/{space_id}"


def check_space_id(space_id: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    if space_id.count("/") != 1:
        raise PushError(f"--space {space_id!r} must be ORG/NAME (a user or organisation, then the Space's name).")
    try:
        validate_repo_id(space_id)
    except HFValidationError as error:
        raise PushError(f"--space {space_id!r} is not a valid repository name: {error}") from error


def app_source(fold_refs: list[str]) -> str:
    """The Space's app.py: the fold repositories (`ORG/NAME` or `ORG/NAME@branch`) and the launch, nothing else."""
    models = "".join(f"    {ref!r},\n" for ref in fold_refs)
    return (
        '"""Demo Space of a frame- and utterance-aligned speech emotion recognition run: the page is demo.py; the\n'
        'models are the published fold repositories below, loaded by id (remote code)."""\n\n'
        "import os\n\n"
        "from demo import MAX_FILE_SIZE, build_demo, ensemble_of, load_hub_models\n\n\n"
        f"FOLD_REPOS = [\n{models}]\n"
        f'EXAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "{EXAMPLE_NAME}")\n\n'
        "MODELS = load_hub_models(FOLD_REPOS)\n"
        "MENU = [ensemble_of(MODELS), *MODELS] if len(MODELS) > 1 else MODELS  # the ensemble first: the default\n"
        "demo = build_demo(MENU, example=EXAMPLE)\n"
        "demo.queue(default_concurrency_limit=1, max_size=16)  # one request at a time: bounded memory\n\n"
        'if __name__ == "__main__":\n'
        '    demo.launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"), max_file_size=MAX_FILE_SIZE)\n'
    )


def space_readme(run: Run, fold_refs: list[str], space_id: str) -> str:
    """README.md of the Space: the front matter the Hub reads (sdk, sdk_version, models) and a short body."""
    repos = sorted({ref.split("@")[0] for ref in fold_refs})
    labels = ", ".join(run.labels(next(iter(run.folds.values()))))
    front = [
        "---",
        f"title: {space_id.split('/')[-1]}",
        "emoji: 🎙️",
        "colorFrom: indigo",
        "colorTo: red",
        "sdk: gradio",
        f"sdk_version: {GRADIO_SDK_VERSION}",
        f'python_version: "{PYTHON_VERSION}"',
        "app_file: app.py",
        "pinned: false",
        "license: apache-2.0",  # the Space holds the project's code; each model repo states its own license
        "short_description: Speech emotion per utterance and per 20 ms frame",
        "models:",
        *[f"  - {repo}" for repo in repos],
        "---",
    ]
    folds = "\n".join(f"- [{ref}](https://huggingface.co/{ref.split('@')[0]})" for ref in fold_refs)
    body = f"""
# Frame- and utterance-aligned speech emotion recognition

Upload or record speech: the page shows the utterance emotion ({labels}) with its probabilities, the frame
timeline (the emotion of every 20 ms frame and the frame weights α) and the table of segments, for one fold model or
the mean of all folds (the fold ensemble). Method: Byun & Lee (2025), *Frame and Utterance Emotional Alignment for
Speech Emotion Recognition*, Future Internet 17(11), 509.

The models are loaded from their repositories (nothing is copied here):

{folds}

Limits: the first minute of a longer file is analysed (the page says so); one request runs at a time; unreadable,
empty or silent files get a message instead of a result. Each fold runs on the CPU backend its repository's
`onnx/backend.json` names (int8 ONNX where its measured label agreement with fp32 is at least 97 %, else fp32 ONNX;
PyTorch when the fold was published without ONNX files); the page says which.

The example clip `{EXAMPLE_NAME}` is `m1.a_nie_1.flac` of the polish3 demo corpus (CC BY 4.0, see its
ATTRIBUTION.md in the project repository).
"""
    return "\n".join(front) + "\n" + body


def space_files(run: Run, fold_refs: list[str], space_id: str) -> dict[str, bytes | Path]:
    """{path in the Space: content} (see the module docstring)."""
    if not APP_SOURCE.is_file():
        raise PushError(f"{APP_SOURCE}: the demo's page is missing from this installation")
    files: dict[str, bytes | Path] = {
        "app.py": app_source(fold_refs).encode(),
        "demo.py": APP_SOURCE,
        "requirements.txt": space_requirements().encode(),
    }
    if EXAMPLE_CLIP.is_file():
        files[EXAMPLE_NAME] = EXAMPLE_CLIP
    files["README.md"] = space_readme(run, fold_refs, space_id).encode()
    return files


def space_requirements() -> str:
    """The Space's requirements.txt (gradio is installed by the Hub at `sdk_version`)."""
    return "\n".join(REQUIREMENTS) + "\n"


def space_link(space_id: str | None) -> str:
    """The model card's line pointing at the Space ("" without one)."""
    if not space_id:
        return ""
    return f"\n\n**Try it in the browser:** the demo Space [{space_id}]({space_url(space_id)}) runs this model."
