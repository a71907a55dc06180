"""`python -m modeling.cli.timeline AUDIO... --model DIR_OR_HUB_ID [--plot out.png] [--json out.json]`: the utterance
emotion and a frame-level emotion timeline for audio files, printed as a table per file (alias:
`python -m modeling.timeline`). The work is done by `FrameAlignedEmotionPipeline`; plotting is in `timeline_plot.py`.

Long recordings, segment by segment (docs/long_recordings.md):
`... call.wav --segments call.rttm|auto|FOLDER [--vad] --out call.csv --out call.srt --lanes call.png`: the emotion
of every segment (speaker turn, subtitle cue, VAD region) with the timeline inside it, written as CSV, JSON lines,
RTTM, SRT or WebVTT (by extension) and drawn as one lane per speaker.

Everything is checked first: the model, the segment source, the window settings, the output paths and that every
audio path exists (every problem listed, nothing written, exit status 2), and every audio file's header: a file
that cannot be read is reported and the others go on (exit status 2 at the end).
"""

import argparse
import contextlib
import json
import os
import sys

import numpy as np
from tqdm.auto import tqdm

from ..audio import AudioInputError, load_audio
from ..data.problems import BATCH_EXIT_CODES
from ..inference.checks import add_window_arguments
from ..prediction_fields import PREDICTED, probabilities_of, probability_field
from ..rundir.atomic import atomic_write_text
from ..timeline_segments import SMOOTHING_METHODS
from .errors import report_error
from .interrupt import exits_cleanly_on_interrupt


def to_jsonable(value):
    """Pipeline output → JSON-serialisable: numpy arrays and scalars → lists and Python numbers (unrounded)."""
    if isinstance(value, dict):
        return {key: to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _predicted(record: dict) -> str:
    """ "anger 0.64": a record's predicted class and its probability."""
    return f"{record[PREDICTED]:<12} {record[probability_field(record[PREDICTED])]:5.2f}"


def scale_note(temperature: float | None) -> str:
    """What the probabilities of a table are: "calibrated, temperature 5.09" or "uncalibrated" ("" when unknown).
    ("T" is taken: the table's `α×T` column counts frames.)"""
    if temperature is None:
        return ""
    return "uncalibrated" if temperature == 1 else f"calibrated, temperature {temperature:.2f}"


def format_result(name: str, result: dict, temperature: float | None = None) -> str:
    """A readable table: the utterance result, the segments and (for long inputs) the windows. Every probability in
    it is on one scale, softmax(logits / `temperature`) (the pipeline's `temperature`), which the header names."""
    ranked = sorted(probabilities_of(result).items(), key=lambda item: -item[1])
    distribution = "  ".join(f"{label} {p:.2f}" for label, p in ranked)
    note = scale_note(temperature)
    lines = [
        f"{name}  ({result['duration_s']:.2f} s)  →  {' '.join(_predicted(result).split())}   [{distribution}]"
        + (f"   ({note})" if note else ""),
        f"  {'start_s':>8} {'end_s':>8}  {'predicted':<12} {'prob':>5}  {'α×T':>5}",
    ]
    for segment in result["timeline"]:
        lines.append(
            f"  {segment['start_s']:8.2f} {segment['end_s']:8.2f}  {_predicted(segment)}"
            f"  {segment['weight'] * result['num_frames']:5.2f}"
        )
    if len(result["windows"]) > 1:
        lines.append(f"  windows ({len(result['windows'])}):")
        for part in result["windows"]:
            lines.append(
                f"  {part['start_s']:8.2f} {part['end_s']:8.2f}  {_predicted(part)}  share {part['share']:.2f}"
            )
    return "\n".join(lines)


def plot_paths(plot: str, names: list[str]) -> list[str]:
    """One PNG per input: `plot` itself for one input, `<stem>-<i>-<input stem>.png` beside it for several."""
    if len(names) == 1:
        return [plot]
    stem, ext = os.path.splitext(plot)
    return [f"{stem}-{i}-{os.path.splitext(os.path.basename(n))[0]}{ext or '.png'}" for i, n in enumerate(names)]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m modeling.cli.timeline",
        description="Utterance emotion and a frame-level emotion timeline for audio files.",
        epilog=BATCH_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("audio", nargs="+", help="audio files (anything soundfile reads; resampled to 16 kHz)")
    parser.add_argument(
        "--model",
        default=os.environ.get("FRAME_ALIGNED_MODEL"),
        help="checkpoint directory or Hub id (default: $FRAME_ALIGNED_MODEL)",
    )
    parser.add_argument("--plot", help="write a PNG (waveform, stacked emotion probabilities, α)")
    parser.add_argument("--json", help="write the results as JSON")
    parser.add_argument("--json-frames", action="store_true", help="include the per-frame arrays in the JSON")
    parser.add_argument("--join", action="store_true", help="analyse the files as one recording, joined in order")
    parser.add_argument("--batch-size", type=int, default=1)
    add_window_arguments(parser, "--overlap")
    parser.add_argument("--smoothing", choices=SMOOTHING_METHODS, default="median")
    parser.add_argument("--smoothing-window", type=float, default=0.2, help="seconds")
    parser.add_argument("--min-segment", type=float, default=0.2, help="shortest segment in seconds")
    long = parser.add_argument_group("long recordings, segment by segment")
    long.add_argument("--segments", help="a segment file (one audio), or auto / FOLDER: <audio stem>.rttm/.srt/...")
    long.add_argument("--vad", action="store_true", help="segments from silero-vad (where no segment file is found)")
    long.add_argument("--out", action="append", default=[], help="results as .csv/.jsonl/.rttm/.srt/.vtt (repeat)")
    long.add_argument("--lanes", help="a PNG: one lane per speaker, coloured by emotion, shade = probability")
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="every probability from the raw softmax (temperature 1), not the checkpoint's calibration_temperature",
    )
    parser.add_argument("--device", default=None, help='e.g. "cpu", "cuda:0" (default: first GPU, else CPU)')
    args = parser.parse_args(argv)
    if not args.model:
        parser.error("--model is required (or set FRAME_ALIGNED_MODEL)")
    segment_mode = bool(args.segments or args.vad)
    if (args.out or args.lanes) and not segment_mode:
        parser.error("--out and --lanes write per-segment results: give --segments or --vad")
    if segment_mode and (args.join or args.plot):
        parser.error("--join and --plot apply to whole files; with --segments/--vad use --lanes")
    if args.segments and os.path.isfile(args.segments) and len(args.audio) > 1:
        parser.error(f"--segments {args.segments}: one segment file for {len(args.audio)} recordings; use auto/FOLDER")
    return args


def segment_table_header(name: str, duration: float, count: int) -> str:
    """The head of the readable table of one recording's segments (`segment_table_row` gives its rows)."""
    columns = f"{'start_s':>9} {'end_s':>9}  {'speaker':<12} {'predicted':<12} {'prob':>5}"
    return f"{name}  ({duration:.2f} s, {count} segments)\n  {columns}"


def segment_table_row(record: dict) -> str:
    return (
        f"  {record['start_s']:9.2f} {record['end_s']:9.2f}  {str(record['speaker'] or '-'):<12} {_predicted(record)}"
    )


def lane_record(record: dict) -> dict:
    """What `plot_lanes` draws of a segment: no windows, no per-window results."""
    return {key: value for key, value in record.items() if key != "windows"}


def run_segments(timeline, args, settings: dict, readable: list[str]) -> int:
    """Per recording of `readable` (the inputs whose header reads): segments (file or VAD) → per-segment results,
    streamed: each is printed and written to every --out file as it comes (memory does not grow with the
    recording's length); --lanes keeps what the figure draws (a segment's times, emotion and timeline). A recording
    that fails is reported and the others go on; its --out files are not written (atomic writers)."""
    from ..inference.recordings import SegmentSource
    from ..segments import SegmentError, SegmentResultWriter, read_segments
    from ..timeline_recording import recording_duration

    single_file = args.segments if args.segments and os.path.isfile(args.segments) else None
    source = None if single_file else SegmentSource(args.segments, args.vad)
    classes = list(timeline.classes)
    failed = 0
    readable = set(readable)
    for index, name in enumerate(args.audio):  # the index names the --out / --lanes file of each input
        if name not in readable:
            continue
        stem = os.path.splitext(os.path.basename(name))[0]
        lanes = [] if args.lanes else None
        try:
            segments = read_segments(single_file, stem) if single_file else source.segments_for(name)
            duration = recording_duration(name, timeline.sampling_rate, name)
            with contextlib.ExitStack() as stack:
                paths = [plot_paths(out, args.audio)[index] for out in args.out]
                writers = [stack.enter_context(SegmentResultWriter(path, classes, stem)) for path in paths]
                print(segment_table_header(name, duration, len(segments)))
                for record in timeline.iter_segments(name, segments, **settings):
                    print(segment_table_row(record))
                    for writer in writers:
                        writer.write(record)
                    if lanes is not None:
                        lanes.append(lane_record(record))
        except (AudioInputError, SegmentError) as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        print()
        for path in paths:
            print(f"wrote {path}")
        if args.lanes:
            from .timeline_plot import plot_lanes

            path = plot_paths(args.lanes, args.audio)[index]
            plot_lanes(lanes, classes, path, duration, title=os.path.basename(name))
            print(f"wrote {path}")
    return 2 if failed else 0


def checked_inputs(args):
    """(the pipeline, the audio files whose header reads, problems that stop nothing), after checking the model, the
    segment source, the output paths and every file's header. Raises `CheckError` (every problem, grouped) when
    anything but an unreadable file is wrong, or when a file of a --join is."""
    from ..data.problems import Problem
    from ..inference import load_pipeline
    from ..inference.batch import missing_input_problem
    from ..inference.checks import audio_problems, load_checked, raise_on_problems, window_flag_problems
    from ..inference.output_files import output_problems

    outputs = [("--json", args.json), ("--lanes", args.lanes), ("--plot", args.plot)]
    problems = output_problems(outputs + [("--out", out) for out in args.out])
    problems += window_flag_problems(args.window, args.window_overlap)
    if args.segments and not os.path.isfile(args.segments) and args.segments != "auto":
        if not os.path.isdir(args.segments):
            message = f"--segments {args.segments}: no such file or folder (expected a segment file, auto or a folder)"
            problems.append(Problem("--segments", message))
    missing = [path for path in args.audio if not os.path.exists(path)]  # mistyped: refused, nothing written
    problems += [missing_input_problem(path) for path in missing]
    good, unreadable = audio_problems([path for path in args.audio if path not in missing])
    if args.join:  # one recording made of all the files: each must be read
        unreadable = [Problem(p.key, p.message, cause=p.cause) for p in unreadable]
    problems += unreadable
    # This package's model and pipeline classes (never the checkpoint's Hub copies), through the one loader.
    timeline = load_checked(
        lambda: load_pipeline(args.model, backend="torch", device=args.device, calibrated=not args.no_calibration),
        args.model,
        problems,
    )
    if timeline is not None and not any(problem.key == "--window" for problem in problems):
        problems += window_flag_problems(args.window, args.window_overlap, timeline)  # the model's receptive field
    raise_on_problems(problems, source="the timeline's arguments")
    return timeline, [path for path, _ in good], [p for p in problems if not p.blocking]


def _saved(argv) -> str:
    return "each output file written so far is complete (atomic writes); the others are not written"


@exits_cleanly_on_interrupt("python -m modeling.cli.timeline", _saved, resumes=False)
def main(argv=None) -> int:
    args = parse_args(argv)
    from ..data.problems import CheckError
    from ..inference.checks import warnings_report

    try:
        timeline, readable, unreadable = checked_inputs(args)
    except CheckError as error:
        return report_error(error)
    if unreadable:
        print(f"error: {warnings_report(unreadable, 'the audio files (the others go on)')}", file=sys.stderr)
    failed = len(unreadable)
    settings = dict(
        batch_size=args.batch_size,
        window_length_s=args.window,
        window_overlap_s=args.window_overlap,
        smoothing=args.smoothing,
        smoothing_window_s=args.smoothing_window,
        min_segment_s=args.min_segment,
    )
    if args.segments or args.vad:
        return max(run_segments(timeline, args, settings, readable), 2 if failed else 0)
    settings["return_frames"] = bool(args.plot or args.json_frames)
    try:
        names, sources = list(readable), list(readable)
        if args.join:  # one recording made of all the files, in order (e.g. words of different emotions)
            names = [f"{len(sources)} files joined"]
            rate = timeline.sampling_rate
            sources = [np.concatenate([load_audio(path, target_sampling_rate=rate) for path in sources])]
    except AudioInputError as error:
        return report_error(error)
    # Groups of files so a progress bar moves (tqdm: quiet unless a terminal); results equal one call's. A group
    # with an unreadable file runs file by file: the bad file is reported, the others go on.
    group = max(1, args.batch_size) * 4
    results, kept = [], []
    with tqdm(total=len(sources), desc="Timeline", unit="file", disable=None if len(sources) > 1 else True) as bar:
        for start in range(0, len(sources), group):
            pairs = list(zip(names[start : start + group], sources[start : start + group]))
            try:
                results += timeline([source for _, source in pairs], **settings)
                kept += pairs
            except AudioInputError:
                for name, source in pairs:
                    try:
                        results.append(timeline(source, **settings))
                        kept.append((name, source))
                    except AudioInputError as error:
                        print(f"error: {error}", file=sys.stderr)
                        failed += 1
            bar.update(len(pairs))
    names, sources = [name for name, _ in kept], [source for _, source in kept]
    for name, result in zip(names, results):
        print(format_result(name, result, timeline.temperature), end="\n\n")
    if args.json:
        scale = {"calibration_temperature": timeline.temperature}  # of every probability in the record
        records = [{"audio": name, **result, **scale} for name, result in zip(names, results)]
        if not args.json_frames:
            records = [{key: value for key, value in r.items() if key != "frames"} for r in records]
        atomic_write_text(args.json, json.dumps(to_jsonable(records), indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {args.json}")
    if args.plot:
        from . import timeline_plot as plotting  # matplotlib: only when a plot is asked for

        for name, source, path, result in zip(names, sources, plot_paths(args.plot, names), results):
            title = name if args.join else os.path.basename(name)
            plotting.plot_timeline(result, source, path, title=title)
            print(f"wrote {path}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
