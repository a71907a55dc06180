"""The local launcher of the Gradio demo (`python app.py`, `python -m modeling.app`):

    python app.py --model runs/demo                          # a run: the fold ensemble (default) and each fold
    python app.py --model runs/demo/fold1/stage2/best         # one checkpoint
    python app.py --model ORG/NAME-fold1,ORG/NAME-fold2       # published folds (remote code), as the Space loads them
    python app.py --model runs/demo --backend torch --port 7860

`--backend auto` (the default) runs each local checkpoint on the fastest CPU backend that keeps its labels: static
or dynamic int8 ONNX where its label agreement with fp32 on real speech (`--agreement-clips`, default 40 clips of
the bundled data/polish3) is at least `--min-agreement`, else fp32 ONNX (`modeling.inference.backend_choice`); the
page says which and why. One request runs at a time (gradio's queue, concurrency 1), at most `--max-duration-s`
seconds of audio each: memory stays bounded whatever is uploaded.
"""

import argparse
import glob
import os
import sys
from pathlib import Path

from ..cli.errors import exits_on
from ..data.problems import CheckError, Problem
from .demo import MAX_DURATION_S, MAX_FILE_SIZE, DemoModel, ensemble_of, load_hub_models


BACKEND_CHOICES = ("auto", "torch", "onnx", "onnx-int8", "onnx-int8-static")
EXAMPLE = Path(__file__).resolve().parents[2] / "data" / "polish3" / "audio" / "m1.a_nie_1.flac"
BACKEND_NOTES = {
    "torch": "PyTorch fp32, as asked (--backend torch)",
    "onnx": "fp32 ONNX, as asked (--backend onnx)",
    "onnx-int8": "dynamic int8 ONNX, as asked; its agreement was not measured",
    "onnx-int8-static": "static int8 ONNX, as asked; its agreement was not measured",
}


def checkpoints_of(target: str) -> dict[str, Path] | None:
    """{model name: checkpoint} of a local run directory (its folds' stage-2 best models) or checkpoint folder;
    None when `target` is not a local folder (then it names Hub ids)."""
    from ..rundir.reader import FinishedRun, fold_name

    path = Path(target)
    if not path.is_dir():
        return None
    if (path / "config.json").is_file():
        name = f"{path.parent.parent.name}/{path.parent.name}" if path.name == "best" else path.name  # fold1/stage2
        return {name: path}
    folds = FinishedRun(path).best_models()
    if not folds:
        raise CheckError(f"--model {target}: neither a checkpoint (config.json) nor a run with fold models")
    return {fold_name(k): best for k, best in folds.items()}


def load_models(
    target: str,
    backend: str = "auto",
    clips: list | None = None,
    min_agreement: float = 0.97,
    num_threads: int | None = None,
) -> list[DemoModel]:
    """The demo's model menu for `target` (a run, a checkpoint, or comma-separated Hub ids): with several folds their
    ensemble first, then each fold."""
    from ..inference import load_pipeline
    from ..inference.backend_choice import backend_choice, default_clips

    checkpoints = checkpoints_of(target)
    if checkpoints is None:
        models = load_hub_models([repo.strip() for repo in target.split(",") if repo.strip()])
    else:
        models = []
        clips = clips or default_clips()
        for name, checkpoint in checkpoints.items():
            if backend == "auto" and len(clips) < 2:
                chosen, note = "onnx", "fp32 ONNX: no speech clips to measure int8 agreement on (--agreement-clips)"
            elif backend == "auto":
                choice = backend_choice(checkpoint, clips, min_agreement, num_threads)
                chosen, note = choice["backend"], choice["reason"]
            else:
                chosen, note = backend, BACKEND_NOTES[backend]
            models.append(
                DemoModel(name, load_pipeline(checkpoint, backend=chosen, num_threads=num_threads), chosen, note)
            )
    return [ensemble_of(models), *models] if len(models) > 1 else models


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="app.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="RUN_DIR, CHECKPOINT or HUB_ID[,HUB_ID...]")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="auto", help="Default: auto (see above).")
    parser.add_argument("--agreement-clips", help="Folder or glob of real speech for the int8 agreement (auto).")
    parser.add_argument("--min-agreement", type=float, default=0.97, help="Least int8 label agreement (auto).")
    parser.add_argument("--max-duration-s", type=float, default=MAX_DURATION_S, help="Longer uploads are cut.")
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on (0.0.0.0: every interface).")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--num-threads", type=int, help="CPU threads per request (default: all).")
    return parser.parse_args(argv)


def clips_of(pattern: str | None) -> list[str] | None:
    if not pattern:
        return None
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "**", "*")
    files = sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
    if len(files) < 2:
        problem = f"--agreement-clips {pattern}: needs at least 2 audio files, found {len(files)}"
        raise CheckError([Problem("--agreement-clips", problem)], "app.py's arguments", outcome="nothing started")
    step = max(1, len(files) // 40)
    return files[::step][:40]


def model_problems_of(target: str) -> list:
    """What is wrong with `--model` (a run, a checkpoint, or comma-separated Hub ids), found before anything loads:
    what was given and what is expected, with a run's fold models or a close name suggested."""
    from ..inference.checks import model_problems
    from ..rundir.reader import FinishedRun

    if os.path.isdir(target) and ((Path(target) / "config.json").is_file() or FinishedRun(target).best_models()):
        return []
    targets = [target] if os.path.exists(target) else [repo.strip() for repo in target.split(",") if repo.strip()]
    return [problem for name in targets for problem in model_problems(name)]


@exits_on(CheckError)  # `error: …` on stderr, exit status 2 (as every command)
def main(argv=None) -> int:
    args = parse_args(argv)
    problems = model_problems_of(args.model)
    try:
        clips = clips_of(args.agreement_clips)
    except CheckError as error:
        problems += error.problems
    if problems:
        raise CheckError(problems, source="app.py's arguments", outcome="nothing started")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise CheckError('the demo needs gradio: pip install -e ".[app]"') from None
    from .demo import build_demo

    models = load_models(args.model, args.backend, clips, args.min_agreement, args.num_threads)
    for model in models:
        print(f"{model.name}: {model.backend} ({model.note})", flush=True)
    demo = build_demo(models, example=str(EXAMPLE) if EXAMPLE.is_file() else None, max_duration_s=args.max_duration_s)
    demo.queue(default_concurrency_limit=1, max_size=16)
    demo.launch(server_name=args.host, server_port=args.port, max_file_size=MAX_FILE_SIZE, show_error=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
