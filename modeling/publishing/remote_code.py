"""The remote code a published checkpoint carries, computed from the core (`modeling/*.py`), never listed by hand.

`save_pretrained` already copies the model's files (`configuration_frame_aligned.py`, `modeling_frame_aligned.py`
and their relative imports, through `register_for_auto_class`). For `pipeline(model=REPO_ID,
trust_remote_code=True)` to build the "frame-aligned-emotion" pipeline without this package, the repository also
needs the pipeline's file with everything it imports relatively, and a `config.json` with `custom_pipelines`. Both
are computed here with transformers' own `get_relative_import_files`, from the files on disk: nothing is imported,
so publishing needs no torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from transformers.dynamic_module_utils import get_relative_import_files


CORE = Path(__file__).resolve().parents[1]
PIPELINE_FILE = CORE / "pipeline_frame_aligned.py"
MODEL_FILES = (
    CORE / "configuration_frame_aligned.py",
    CORE / "modeling_frame_aligned.py",
    CORE / "modeling_whisper_frame_aligned.py",
)
PIPELINE_TASK = "frame-aligned-emotion"  # `modeling.pipeline_frame_aligned.TASK` (a test keeps them equal)
PIPELINE_CLASS = "FrameAlignedEmotionPipeline"


def core_files(*entry_points: Path) -> dict[str, Path]:
    """{file name: path} of `entry_points` and every core file they import relatively, recursively.

    Raises:
        ValueError: an entry point imports a module outside the core's folder (the core must be flat and
            self-contained, or the Hub copy could not import it).
    """
    files = {}
    for entry in entry_points:
        for path in [entry, *sorted(map(Path, get_relative_import_files(entry)))]:  # it returns them in set order
            path = Path(path).resolve()
            if path.parent != CORE:
                raise ValueError(f"{entry.name} imports {path}, which is outside the remote-code core {CORE}")
            files[path.name] = path
    return files


def remote_code_files() -> dict[str, Path]:
    """Every file a checkpoint needs on the Hub: the model's and the pipeline's code with their relative imports."""
    return core_files(*MODEL_FILES, PIPELINE_FILE)


def pipeline_config(checkpoint: str | os.PathLike) -> bytes:
    """The checkpoint's `config.json` with `custom_pipelines` naming the pipeline class of the core, and `AutoModel`
    in `auto_map` (`register_for_auto_class` records one auto class per model class:
    AutoModelForAudioClassification)."""
    config = json.loads((Path(checkpoint) / "config.json").read_text())
    auto_map = config.get("auto_map") or {}
    if "AutoModelForAudioClassification" in auto_map:
        auto_map.setdefault("AutoModel", auto_map["AutoModelForAudioClassification"])
    config["custom_pipelines"] = {
        PIPELINE_TASK: {
            "impl": f"{PIPELINE_FILE.stem}.{PIPELINE_CLASS}",
            "pt": ["AutoModelForAudioClassification"],
            "type": "audio",
        }
    }
    return (json.dumps(config, indent=2, sort_keys=True) + "\n").encode()


def hub_pipeline_files(checkpoint: str | os.PathLike) -> dict[str, Path | bytes]:
    """What a checkpoint folder needs on the Hub besides its weights and preprocessor config, for `from_pretrained`
    and `pipeline(model=REPO_ID, trust_remote_code=True)` to work without this package: the remote-code files and
    the `config.json` with `custom_pipelines`.

    Returns:
        {file name in the repo: path to upload, or the new config.json as bytes}.
    """
    return {**remote_code_files(), "config.json": pipeline_config(checkpoint)}
