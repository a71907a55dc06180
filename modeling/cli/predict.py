"""Batch emotion prediction over many files (`predict.py`, or `python -m modeling.cli.predict`), and ONNX export.

    python predict.py data/polish3/audio --model runs/demo/fold1/stage2/best --output predictions.csv
    python predict.py "archive/**/*.wav" --model DIR --output out.csv --backend onnx-int8 --timeline out.jsonl
    python predict.py metadata.csv --model DIR --output out.csv          # a CSV with a file/path/audio column
    python predict.py --export-onnx --model DIR                          # DIR/onnx/model.onnx + model_int8.onnx
    python predict.py archive/ --model DIR --output out.csv --engine ray # Ray Data actors (docs/scaling.md)
    python predict.py calls/ --model DIR --output segments.csv --segments auto   # long recordings: a row per segment
    python predict.py calls/ --model DIR --output segments.csv --vad            # segments from silero-vad

Everything is checked first (the inputs, the model, the output files: every problem listed, nothing written).
Re-running the same command resumes: files already in the output are skipped; a re-run with another model (or its
files changed), backend, window, calibration or segment source is refused (`<output stem>.job.json` records them).
Unreadable files are listed in `<output stem>.errors.csv` with the reason and skipped (`--retry-errors` tries them
again); that file is only written when a file failed. The work is done by `modeling.inference.batch.predict_files`;
this module parses the arguments and prints.
"""

import argparse
import os
import sys

from ..audio import AudioInputError
from ..data.problems import BATCH_EXIT_CODES
from ..inference.checks import add_window_arguments
from .errors import report_error
from .interrupt import exits_cleanly_on_interrupt


GPU_BATCH_SIZE = 16  # files (windows of at most --window s) per forward pass on a GPU


def device_and_batch_size(device: str | None, batch_size: int | None, engine: str = "local") -> tuple[str, int]:
    """The device (`--device`, else the first GPU if any, else the CPU; the Ray engine's actors use the CPU) and
    the batch size (`--batch-size`, else 1 on the CPU, `GPU_BATCH_SIZE` on a GPU)."""
    import torch

    if device is None:
        device = "cuda:0" if engine == "local" and torch.cuda.is_available() else "cpu"
    if batch_size is None:
        batch_size = 1 if torch.device(device).type == "cpu" else GPU_BATCH_SIZE
    return device, batch_size


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="predict.py",
        description=__doc__,
        epilog=BATCH_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="*", help="folders, glob patterns, CSV files of paths, or audio files")
    parser.add_argument("--model", default=os.environ.get("FRAME_ALIGNED_MODEL"), help="checkpoint folder or Hub id")
    parser.add_argument("--output", help="predictions CSV (appended to; resumes)")
    parser.add_argument("--errors", help="CSV of unreadable files (default: <output stem>.errors.csv)")
    parser.add_argument("--timeline", help="also write each file's timeline segments as JSON lines here")
    parser.add_argument(
        "--backend",
        choices=("torch", "onnx", "onnx-int8"),
        default="torch",
        help="PyTorch, ONNX Runtime fp32 or ONNX Runtime dynamic int8 (ONNX files are created next to the model)",
    )
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the runtime's)")
    parser.add_argument(
        "--device", help="cpu, cuda, cuda:1 (default: the first GPU when there is one, else the CPU); local engine"
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"files per forward pass (default: 1 on the CPU, where it is fastest; {GPU_BATCH_SIZE} on a GPU)",
    )
    parser.add_argument(
        "--files-per-write", type=int, default=16, help="files per appended, fsynced group (Ray: per block)"
    )
    add_window_arguments(parser)
    long = parser.add_argument_group("long recordings, segment by segment (docs/long_recordings.md)")
    long.add_argument(
        "--segments",
        metavar="auto|FOLDER",
        help="each recording's segment file (<stem>.rttm/.srt/.vtt/.csv/.json/.jsonl) beside it (auto) or in FOLDER",
    )
    long.add_argument("--vad", action="store_true", help="segments from silero-vad (where no segment file is found)")
    parser.add_argument("--path-column", help="the CSV column with the audio paths (default: file, path or audio)")
    parser.add_argument("--retry-errors", action="store_true", help="try the files listed as errors again")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="prob_<class> from the raw softmax (T = 1), not the checkpoint's calibration_temperature",
    )
    parser.add_argument(
        "--export-onnx", action="store_true", help="only write MODEL/onnx/model.onnx and model_int8.onnx"
    )
    ray = parser.add_argument_group('the Ray engine (docs/scaling.md; pip install -e ".[ray]")')
    ray.add_argument("--engine", choices=("local", "ray"), default="local", help="this process, or Ray Data actors")
    ray.add_argument("--address", help="a Ray cluster to join (default: start a local Ray on this machine)")
    ray.add_argument("--actors", type=int, help="actors, each holding the model (default: CPUs ÷ --cpus-per-actor)")
    ray.add_argument("--cpus-per-actor", type=float, default=1, help="CPUs reserved per actor (default 1)")
    ray.add_argument("--max-retries", type=int, default=3, help="retries of a block whose worker process died")
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("--model is required (or set FRAME_ALIGNED_MODEL)")
    if not args.export_onnx and (not args.inputs or not args.output):
        parser.error("inputs and --output are required (or --export-onnx)")
    if args.export_onnx and (args.inputs or args.output or args.timeline):
        parser.error("--export-onnx writes the ONNX files only: it takes no inputs, --output or --timeline")
    if (args.segments or args.vad) and args.engine == "ray":
        parser.error("--segments/--vad run with the local engine only")
    if args.path_column and not any(source.lower().endswith(".csv") for source in args.inputs):
        parser.error(f"--path-column {args.path_column}: applies to CSV inputs only, and none is given")
    if args.device and args.engine == "ray":
        parser.error("--device applies to the local engine (the Ray engine's actors run on CPUs)")
    if args.no_calibration and args.engine == "ray":
        parser.error("--no-calibration: not supported by --engine ray (its actors use the checkpoint's temperature)")
    args.device, args.batch_size = device_and_batch_size(args.device, args.batch_size, args.engine)
    return args


def checked_job(args):
    """Everything checked before anything is written: the inputs, the output files, the segment source, the model
    (its config; then, with nothing else wrong, the pipeline for the local engine), and that an existing output was
    written by the same job (`job_record`: model and its files, backend, window, calibration, segments). Returns
    (paths, pipeline or None for Ray, `SegmentSource` or None, the job's settings). Raises `CheckError` listing every
    problem, grouped by cause."""
    from ..data.problems import Problem
    from ..inference import load_pipeline
    from ..inference.batch import BatchJobError, JobOutputs, collect_inputs
    from ..inference.checks import (
        checkpoint_window_geometry,
        load_checked,
        model_problems,
        raise_on_problems,
        window_flag_problems,
    )
    from ..inference.job_record import job_settings, resume_problems
    from ..inference.output_files import output_problems
    from ..inference.recordings import SegmentSource

    problems, paths = [], []
    try:
        paths = collect_inputs(args.inputs, args.path_column)
    except BatchJobError as error:
        problems += error.problems
    problems += output_problems({"--output": args.output, "--errors": args.errors, "--timeline": args.timeline})
    problems += window_flag_problems(args.window, args.window_overlap)
    segments = None
    if args.segments or args.vad:
        try:
            segments = SegmentSource(args.segments, args.vad)
        except ValueError as error:  # SegmentError: a segment folder that does not exist
            problems.append(Problem("--segments", f"--segments: {error} Expected auto or a folder."))
    pipe = None
    problems += model_problems(args.model)  # its config.json only: cheap, listed with the other problems
    settings = None
    if not problems:  # the job's settings, compared with an existing output's before the model is loaded
        calibration = not args.no_calibration
        settings = job_settings(args.model, args.backend, args.window, args.window_overlap, calibration, segments)
        problems += resume_problems(args.output, settings, args.errors, args.timeline)[0]
    if args.engine == "local" and not problems:  # loading may export ONNX files beside the checkpoint: only now
        options = dict(backend=args.backend, num_threads=args.threads, device=args.device)
        load = lambda: load_pipeline(args.model, calibrated=not args.no_calibration, **options)  # noqa: E731
        pipe = load_checked(load, args.model, problems)
    if args.engine == "ray" and not problems:  # the model is loaded later (predict_files_on_ray): from its files
        geometry = checkpoint_window_geometry(args.model)
        problems += window_flag_problems(args.window, args.window_overlap, geometry=geometry) if geometry else []
    if pipe is not None:
        problems += window_flag_problems(args.window, args.window_overlap, pipe)  # the model's receptive field
        labels, per_segment = list(pipe.classes), segments is not None
        problems += JobOutputs.problems(args.output, labels, args.errors, args.timeline, per_segment)
    raise_on_problems(problems, source="predict.py's arguments")
    return paths, pipe, segments, settings


def _saved(argv) -> str:
    output = parse_args(argv).output
    return f"the predictions written so far are kept in {output} (the files done are skipped on the next run)"


@exits_cleanly_on_interrupt("python predict.py", _saved)
def main(argv=None) -> int:
    args = parse_args(argv)
    from ..data.problems import CheckError
    from ..inference.batch import predict_files
    from ..inference.checks import load_checked, raise_on_problems
    from ..inference.onnx_backend import ensure_onnx

    try:
        if args.export_onnx:
            problems = []
            export = lambda: [ensure_onnx(args.model, int8=int8) for int8 in (False, True)]  # noqa: E731
            written = load_checked(export, args.model, problems)
            raise_on_problems(problems, source="predict.py --export-onnx")
            print("\n".join(f"wrote {path}" for path in written))
            return 0
        paths, pipe, segments, settings = checked_job(args)
        common = dict(
            settings=settings,
            errors_path=args.errors,
            timeline_path=args.timeline,
            batch_size=args.batch_size,
            retry_errors=args.retry_errors,
            progress=False if args.no_progress else None,
            pipeline_kwargs={"window_length_s": args.window, "window_overlap_s": args.window_overlap},
        )
        if segments is not None:
            common["segments"] = segments
        if args.engine == "ray":
            from ..inference.ray_engine import predict_files_on_ray

            summary = predict_files_on_ray(
                args.model,
                paths,
                args.output,
                backend=args.backend,
                threads=args.threads,
                address=args.address,
                actors=args.actors,
                cpus_per_actor=args.cpus_per_actor,
                files_per_block=args.files_per_write,
                max_retries=args.max_retries,
                **common,
            )
        else:
            summary = predict_files(pipe, paths, args.output, files_per_write=args.files_per_write, **common)
    except (CheckError, AudioInputError, ValueError) as error:  # SegmentError is a ValueError
        return report_error(error)
    for path in summary.repaired:
        print(f"repaired {path}: cut off a partial last line left by an interrupted run")
    print(summary.describe())
    print(f"predictions: {args.output}")
    if summary.failed:
        errors = args.errors or os.path.splitext(args.output)[0] + ".errors.csv"
        print(f"{summary.failed} file(s) failed, listed with the reason in {errors}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
