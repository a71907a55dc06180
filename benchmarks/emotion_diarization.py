"""Emotion diarization on recordings with exact boundaries, and long-recording speed and memory.

    python -m benchmarks.emotion_diarization --model CHECKPOINT --speakers WR0 [--corpus nemo4] [--quick]

Recordings are made from real speech of held-out speakers (`--speakers`: the speakers your checkpoint never saw, e.g.
its LOSO fold's test speaker): per recording, one speaker's clips concatenated as in ZED — neutral clips, then clips
of one other emotion (the event), then neutral clips again — once without and once with silences (0.3–1.2 s) between
the clips. The reference is each clip's emotion over its exact span; silences have no reference (an emotion there is
a false alarm). Systems, scored by the pooled EDER (`modeling.metrics.eder`: false alarm + missed + confusion over
the reference duration, summed over recordings) side by side in one run:

- `timeline[...]`: the whole recording through the pipeline, frame timeline with each smoothing / minimum-segment
  setting;
- `per_segment_vad`: silero-vad regions, each region's utterance-level emotion over the region;
- `per_segment_vad_timeline`: the same regions, the frame timeline inside each;
- `per_segment_reference`: the reference clip boundaries as segments (what a perfect segmenter would give);
- `whole_recording`: the trivial baseline, the utterance-level emotion of the whole recording everywhere.

Speed and memory: recordings of `--minutes` (default 1, 15, 60 and 600: ten hours) made by concatenating the clips
with silences, each written to disk block by block (deleted after), are labelled segment by segment with the VAD, each
in a fresh process (torch on one thread): real-time factor (processing seconds per audio second; CPU time of the
process, since the machine may be shared — wall time beside it), the VAD's share of the time, peak resident memory
and what labelling added to it (`growth_mb`) — memory must not grow with the recording's length. `--memory-only`
skips the EDER part.

Without `--model`, a randomly initialised model of the profile's shape is used: its EDERs are those of chance and say
nothing about the method; they check the harness. `--smoke` is a toy run for the tests.
"""

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from modeling.audio import load_audio
from modeling.metrics.eder import EmotionDiarizationError, emotion_diarization_error
from modeling.rundir.atomic import atomic_write_json, atomic_write_text

from .common import PROFILES, corpus_rows, machine_description


SR = 16_000
TIMELINE_SETTINGS = [  # (smoothing, smoothing_window_s, min_segment_s)
    ("none", 0.02, 0.02),
    ("median", 0.2, 0.2),
    ("median", 0.5, 0.5),
    ("mean", 0.5, 1.0),
]
NEUTRAL = ("neutral", "neu", "n")


def held_out_clips(corpus: str, speakers: list[str] | None) -> tuple[list[str], dict[str, dict[str, list[dict]]]]:
    """{speaker: {emotion: [rows]}} of the held-out speakers (default: the corpus's last speaker)."""
    _, rows = corpus_rows(corpus)
    speakers = speakers or [sorted({row["speaker"] for row in rows})[-1]]
    unknown = sorted(set(speakers) - {row["speaker"] for row in rows})
    if unknown:
        raise SystemExit(f"--speakers {unknown}: not in {corpus}")
    by_speaker: dict[str, dict[str, list[dict]]] = {}
    for row in rows:
        if row["speaker"] in speakers:
            by_speaker.setdefault(row["speaker"], {}).setdefault(row["label"], []).append(row)
    return sorted({row["label"] for row in rows}), by_speaker


def build_recordings(by_speaker, per_speaker: int, silences: bool, seed: int, folder: Path) -> list[dict]:
    """ZED-like recordings: 2 neutral clips, 1–2 clips of one emotion, 2 neutral clips (silences between them or
    not). Returns [{"path", "duration_s", "reference": [(start_s, end_s, emotion)]}]."""
    rng = random.Random(seed)
    recordings = []
    for speaker, by_label in sorted(by_speaker.items()):
        neutral = next(label for label in by_label if label.lower() in NEUTRAL)
        events = [label for label in by_label if label != neutral]
        for k in range(per_speaker):
            event = events[k % len(events)]
            plan = [neutral] * 2 + [event] * rng.randint(1, 2) + [neutral] * 2
            pieces, reference, position = [], [], 0
            for i, label in enumerate(plan):
                if silences and i:
                    gap = np.zeros(int(rng.uniform(0.3, 1.2) * SR), np.float32)
                    pieces.append(gap)
                    position += len(gap)
                clip = load_audio(rng.choice(by_label[label])["path"])
                pieces.append(clip)
                reference.append((position / SR, (position + len(clip)) / SR, label))
                position += len(clip)
            path = folder / f"{speaker}_{k}_{'gaps' if silences else 'joined'}.flac"
            sf.write(path, np.concatenate(pieces), SR, subtype="PCM_16")
            recordings.append({"path": str(path), "duration_s": position / SR, "reference": reference})
    return recordings


def score(recordings: list[dict], pipe) -> dict:
    """Pooled EDER of every system over the recordings."""
    from modeling.segments.vad import detect_speech

    totals: dict[str, EmotionDiarizationError] = {}

    def add(name, recording, hypothesis):
        result = emotion_diarization_error(recording["reference"], hypothesis, 0.0, recording["duration_s"])
        totals[name] = totals[name] + result if name in totals else result

    for recording in recordings:
        path = recording["path"]
        for smoothing, window_s, min_s in TIMELINE_SETTINGS:
            result = pipe(path, smoothing=smoothing, smoothing_window_s=window_s, min_segment_s=min_s)
            add(f"timeline[{smoothing} {window_s} s, min {min_s} s]", recording, result["timeline"])
            if smoothing == "median" and window_s == 0.2:
                add("whole_recording", recording, [(0.0, recording["duration_s"], result["predicted"])])
        segments = detect_speech(path)
        records = pipe(path, segments=segments) if segments else []
        add("per_segment_vad", recording, [(r["start_s"], r["end_s"], r["predicted"]) for r in records])
        add("per_segment_vad_timeline", recording, [part for r in records for part in r["timeline"]])
        records = pipe(path, segments=[(start, end) for start, end, _ in recording["reference"]])
        add("per_segment_reference", recording, [(r["start_s"], r["end_s"], r["predicted"]) for r in records])
    return {
        name: {
            "eder": round(total.eder, 4),
            "false_alarm_s": round(total.false_alarm_s, 2),
            "missed_emotion_s": round(total.missed_emotion_s, 2),
            "confusion_s": round(total.confusion_s, 2),
            "reference_s": round(total.reference_s, 2),
        }
        for name, total in totals.items()
    }


def write_long_recording(path: Path, by_speaker, seconds: float, seed: int) -> float:
    """A recording of `seconds` (clips of the held-out speakers with silences), written block by block (each clip
    decoded once): a 10-hour one never is in memory."""
    rng = random.Random(seed)
    rows = [row for by_label in by_speaker.values() for clips in by_label.values() for row in clips]
    decoded: dict[str, np.ndarray] = {}
    written, total = 0, int(round(seconds * SR))
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
        while written < total:
            clip_path = rng.choice(rows)["path"]
            if clip_path not in decoded:
                decoded[clip_path] = load_audio(clip_path)
            gap = np.zeros(int(rng.uniform(0.2, 1.5) * SR), np.float32)
            clip = np.concatenate([decoded[clip_path], gap])[: total - written]
            f.write(clip)
            written += len(clip)
    return written / SR


def measure(model: str, path: str) -> dict:
    """In this (fresh) process: VAD + per-segment labelling of one recording; times and peak memory."""
    from modeling.inference import load_pipeline
    from modeling.segments.vad import _Session, detect_speech

    torch.set_num_threads(1)
    pipe = load_pipeline(model)
    _Session.get()  # the VAD model: loaded before the measured part
    loaded_mb = _memory_mb("VmHWM")
    started, started_cpu = time.perf_counter(), time.process_time()
    segments = detect_speech(path)
    vad_cpu_s = time.process_time() - started_cpu
    count = sum(1 for _ in pipe.iter_segments(path, segments))
    total_s, cpu_s = time.perf_counter() - started, time.process_time() - started_cpu
    duration = sf.info(path).duration
    return {
        "audio_s": round(duration, 1),
        "segments": count,
        "seconds": round(total_s, 1),
        "cpu_seconds": round(cpu_s, 1),
        "rtf": round(cpu_s / duration, 4),  # CPU time (one thread): robust to other jobs on the machine
        "rtf_wall": round(total_s / duration, 4),
        "vad_share": round(vad_cpu_s / cpu_s, 3),
        # VmHWM, not getrusage's ru_maxrss: the latter keeps the parent's peak across fork + exec
        "peak_rss_mb": _memory_mb("VmHWM"),
        "loaded_rss_mb": loaded_mb,  # peak once the model and the VAD are loaded, before any audio
        "growth_mb": round(_memory_mb("VmHWM") - loaded_mb, 1),  # what labelling the recording added to the peak
        "longest_segment_s": round(max((s.end_s - s.start_s for s in segments), default=0.0), 2),
    }


def _memory_mb(field: str) -> float:
    """VmHWM (peak resident set) or VmRSS of this process from /proc, in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def measure_lengths(model: str, by_speaker, minutes: list[float], folder: Path) -> dict:
    """Speed and memory for recordings of each length (in minutes), each written to `folder`, labelled in a fresh
    process and deleted. Returns {"runs": [measure(...) per length], "growth_spread_mb": max − min growth}."""
    runs = []
    for length in minutes:
        path = folder / f"long_{length:g}min.wav"
        write_long_recording(path, by_speaker, length * 60, seed=1)
        try:
            runs.append(measure_in_fresh_process(model, path))
            print(f"{length:g} min: {json.dumps(runs[-1])}", file=sys.stderr, flush=True)  # a long run's progress
        finally:
            path.unlink()
    growths = [run["growth_mb"] for run in runs]
    return {"runs": runs, "growth_spread_mb": round(max(growths) - min(growths), 1)}


def measure_in_fresh_process(model: str, path: Path) -> dict:
    command = [sys.executable, "-m", "benchmarks.emotion_diarization", "--measure", str(path), "--model", model]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


def random_model(folder: Path, profile, labels: list[str]) -> str:
    from modeling import Wav2Vec2ForFrameAlignedClassification
    from modeling.collator import make_feature_extractor

    torch.manual_seed(0)
    config = profile.backbone_config(
        num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={c: i for i, c in enumerate(labels)}
    )
    Wav2Vec2ForFrameAlignedClassification(config).eval().save_pretrained(folder)
    make_feature_extractor().save_pretrained(folder)
    return str(folder)


def render(report: dict) -> str:
    lines = [
        "# Emotion diarization benchmark",
        "",
        f"Model: {report['model']}; corpus {report['corpus']}, held-out speakers {', '.join(report['speakers'])}; "
        f"profile {report['profile']}; {report['machine'].get('cpu', '')}; load average at the end "
        f"{', '.join(f'{x:.1f}' for x in report['load_average'])} on {report['machine'].get('cpu_cores')} cores.",
        "",
    ]
    for key, title in (("joined", "without silences"), ("gaps", "with silences between the clips")):
        if key not in report["eder"]:
            continue
        table = report["eder"][key]
        lines += [f"## EDER, {title} ({table['recordings']} recordings)", "", "| system | EDER | FA s | missed s |"]
        lines[-1] += " confusion s | reference s |"
        lines.append("|---|---|---|---|---|---|")
        for name, row in table["systems"].items():
            lines.append(
                f"| {name} | {row['eder']:.3f} | {row['false_alarm_s']} | {row['missed_emotion_s']} | "
                f"{row['confusion_s']} | {row['reference_s']} |"
            )
        lines.append("")
    speed = report["speed"]
    lines += ["## Long recordings (VAD + per-segment labelling, torch 1 thread)", "", "| audio | segments |"]
    lines[-1] += (
        " CPU s | wall s | RTF (CPU) | RTF (wall) | VAD share | peak RSS MB | of it after loading | growth MB |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    for row in speed["runs"]:
        lines.append(
            f"| {row['audio_s'] / 60:g} min | {row['segments']} | {row['cpu_seconds']} | {row['seconds']} | "
            f"{row['rtf']} | {row['rtf_wall']} | {row['vad_share']} | {row['peak_rss_mb']} | {row['loaded_rss_mb']} | "
            f"{row['growth_mb']} |"
        )
    lines += [
        "",
        f"Growth while labelling (peak RSS after − before the first segment): "
        f"{', '.join(str(row['growth_mb']) for row in speed['runs'])} MB; spread {speed['growth_spread_mb']} MB "
        "(flat = memory does not grow with the recording's length).",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.emotion_diarization", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model", help="checkpoint folder or Hub id (default: a random model of the profile)")
    parser.add_argument("--corpus", default="nemo4", choices=("nemo4", "polish3"))
    parser.add_argument("--speakers", nargs="+", help="held-out speakers (default: the corpus's last one)")
    parser.add_argument("--recordings", type=int, default=6, help="recordings per speaker and condition")
    parser.add_argument(
        "--minutes",
        type=float,
        nargs="+",
        help="lengths of the speed/memory recordings (default 1 min, 15 min, 1 h, 10 h; --smoke: 0.25 and 1 min)",
    )
    parser.add_argument("--memory-only", action="store_true", help="only the speed/memory part (no EDER)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="the quick profile's random model (without --model)")
    mode.add_argument("--smoke", action="store_true", help="toy sizes: checks the harness only")
    parser.add_argument("--output", default="benchmarks/emotion_diarization.json", help="JSON; .md beside it")
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one speed/memory run in a fresh process
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.model, args.measure)))
        return 0
    profile = PROFILES["smoke" if args.smoke else "quick" if args.quick else "full"]
    torch.set_num_threads(1)
    labels, by_speaker = held_out_clips(args.corpus, args.speakers)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = args.model or random_model(tmp / "model", profile, labels)
        from modeling.inference import load_pipeline

        pipe = load_pipeline(model)
        per_speaker = 1 if args.smoke else args.recordings
        eder = {}
        for key, silences in () if args.memory_only else (("joined", False), ("gaps", True)):
            recordings = build_recordings(by_speaker, per_speaker, silences, seed=22, folder=tmp)
            eder[key] = {"recordings": len(recordings), "systems": score(recordings, pipe)}
        speed = measure_lengths(
            model, by_speaker, args.minutes or ([0.25, 1.0] if args.smoke else [1, 15, 60, 600]), tmp
        )
    report = {
        "model": args.model or f"random {profile.name} model (numbers say nothing about the method)",
        "corpus": args.corpus,
        "speakers": sorted(by_speaker),
        "profile": profile.name,
        "machine": machine_description(),
        "load_average": os.getloadavg(),
        "eder": eder,
        "speed": speed,
    }
    atomic_write_json(args.output, report)
    atomic_write_text(Path(args.output).with_suffix(".md"), render(report))
    print(render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
