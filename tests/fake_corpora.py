"""Generated corpus trees in the official layouts (IEMOCAP, CREMA-D, RAVDESS) with tiny real WAV files.

The IEMOCAP tree reproduces Table 1 of the paper exactly and holds every trap of the real release: per-annotator
lines, label-like lines in `Categorical/` and `Attribute/`, labels outside the 4 classes, `exc` (merged into
happy), and utterances whose speaker differs from the dialog's letter (`Ses01F_impro05_M013` is `Ses01M`).
"""

import csv
import io
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
from helpers import POLISH3


# Table 1 (angry, happy, sad, neutral) per session.
IEMOCAP_TABLE1 = {
    1: {"angry": 229, "happy": 278, "sad": 194, "neutral": 384},
    2: {"angry": 137, "happy": 327, "sad": 197, "neutral": 362},
    3: {"angry": 240, "happy": 286, "sad": 305, "neutral": 320},
    4: {"angry": 327, "happy": 303, "sad": 143, "neutral": 258},
    5: {"angry": 170, "happy": 442, "sad": 245, "neutral": 384},
}
IEMOCAP_TOTAL = 5531
_CODES = {"angry": "ang", "sad": "sad", "neutral": "neu"}
_DISTRACTORS = ("xxx", "fru", "sur", "fea", "oth", "dis")


def wav_bytes(num_samples: int = 480, sampling_rate: int = 16000, seed: int = 0) -> bytes:
    """A short 16-bit PCM WAV of low noise."""
    samples = np.random.default_rng(seed).normal(0, 0.05, num_samples).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, samples, sampling_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _write(path: Path, content: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def make_iemocap_tree(root: Path) -> Path:
    """The IEMOCAP_full_release layout under `root`, with Table 1 counts; returns `root`."""
    clip = wav_bytes()
    for session, counts in IEMOCAP_TABLE1.items():
        emotions = []
        for label, count in counts.items():
            if label == "happy":  # hap and exc both count as happy
                emotions += ["hap"] * (count // 3) + ["exc"] * (count - count // 3)
            else:
                emotions += [_CODES[label]] * count
        emotions += [_DISTRACTORS[i % len(_DISTRACTORS)] for i in range(40)]
        # Four dialogs; the speaker letter alternates inside every dialog (the F/M of a dialog is not the speaker).
        dialogs = [
            f"Ses0{session}F_impro05",
            f"Ses0{session}M_impro02",
            f"Ses0{session}F_script01_1",
            f"Ses0{session}M_script02_2b",
        ]
        lines = {dialog: [] for dialog in dialogs}
        numbers = {(dialog, letter): 0 for dialog in dialogs for letter in "FM"}
        for i, emotion in enumerate(emotions):
            dialog = dialogs[i % len(dialogs)]
            letter = "FM"[(i // len(dialogs)) % 2]
            number = numbers[dialog, letter]
            numbers[dialog, letter] += 1
            utterance = f"{dialog}_{letter}{number:03d}"
            start = 1.5 * number
            lines[dialog] += [
                f"[{start:.4f} - {start + 1.2:.4f}]\t{utterance}\t{emotion}\t[2.5000, 3.0000, 3.5000]",
                "C-E1:\tAnger;\t()",
                "C-E3:\tNeutral state;\tExcited;\t()",
                "A-E1:\tval 3; act 2; dom  2;\t()",
                "",
            ]
            _write(root / f"Session{session}" / "sentences" / "wav" / dialog / f"{utterance}.wav", clip)
        evaluation = root / f"Session{session}" / "dialog" / "EmoEvaluation"
        for dialog, body in lines.items():
            header = ["% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]", ""]
            (evaluation / f"{dialog}.txt").parent.mkdir(parents=True, exist_ok=True)
            (evaluation / f"{dialog}.txt").write_text("\n".join(header + body) + "\n")
            # Sub-folders repeat label-like lines: a loader that recursed would count them twice.
            for folder in ("Categorical", "Attribute", "Self-evaluation"):
                (evaluation / folder).mkdir(exist_ok=True)
                (evaluation / folder / f"{dialog}_e1_cat.txt").write_text("\n".join(body) + "\n")
        (evaluation / f".{dialogs[0]}.txt").write_text("[0.0 - 1.0]\tSes01F_impro05_F999\tang\t[1, 1, 1]\n")
    return root


def make_crema_d_tree(root: Path, actors=("1001", "1002", "1003", "1004"), with_demographics: bool = True) -> Path:
    """`AudioWAV/{actor}_{sentence}_{EMO}_{level}.wav` for every actor × 6 emotions × 2 sentences, a stray file,
    and `VideoDemographics.csv` (actors alternate Male/Female)."""
    clip = wav_bytes()
    for actor in actors:
        for emotion in ("ANG", "DIS", "FEA", "HAP", "NEU", "SAD"):
            for sentence, level in (("DFA", "XX"), ("IEO", "HI")):
                _write(root / "AudioWAV" / f"{actor}_{sentence}_{emotion}_{level}.wav", clip)
    _write(root / "AudioWAV" / "notes_backup.wav", clip)
    if with_demographics:
        rows = ["ActorID,Age,Sex,Race,Ethnicity"] + [
            f"{actor},30,{'Male' if i % 2 == 0 else 'Female'},Caucasian,Not Hispanic" for i, actor in enumerate(actors)
        ]
        (root / "VideoDemographics.csv").write_text("\n".join(rows) + "\n")
    return root


def make_ravdess_tree(root: Path, actors=(1, 2, 3, 4)) -> Path:
    """`Actor_XX/03-VV-EE-II-SS-RR-XX.wav` speech (VV=01) and song (VV=02), plus video-only files to skip."""
    clip = wav_bytes()
    for actor in actors:
        folder = root / f"Actor_{actor:02d}"
        for emotion in range(1, 9):
            intensities = (1,) if emotion == 1 else (1, 2)
            for intensity in intensities:
                _write(folder / f"03-01-{emotion:02d}-{intensity:02d}-01-01-{actor:02d}.wav", clip)
            _write(folder / f"03-02-{emotion:02d}-01-01-01-{actor:02d}.wav", clip)  # song
            _write(folder / f"01-01-{emotion:02d}-01-01-01-{actor:02d}.wav", clip)  # audio-visual, not audio-only
    return root


EMODB_TEXTS = ("a01", "a02", "a04", "a05", "a07", "b01", "b02", "b03", "b09", "b10")


def make_emodb_tree(root: Path, count: int = 535) -> dict:
    """EmoDB's `wav/<speaker><text><emotion><version>.wav` for `count` of the 700 (speaker, text, emotion) cells
    (every 700/(700-count)-th cell left out, as the real release lacks some), plus a stray file. Returns
    {file stem: (speaker, emotion letter)} of the files written."""
    clip = wav_bytes(1600)
    cells = [
        (s, t, e)
        for s in ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
        for t in EMODB_TEXTS
        for e in "WLEAFTN"
    ]
    drop = set(np.linspace(1, len(cells) - 1, len(cells) - count).astype(int).tolist())
    written = {}
    for i, (speaker, text, emotion) in enumerate(cells):
        if i in drop:
            continue
        stem = f"{speaker}{text}{emotion}{'ab'[i % 2]}"
        _write(root / "wav" / f"{stem}.wav", clip)
        written[stem] = (speaker, emotion)
    _write(root / "wav" / "readme_take.wav", clip)
    assert len(written) == count
    return written


MSP_ROWS = [  # FileName, EmoClass, SpkrID, Gender, Split_Set
    ("MSP-PODCAST_0001_0001.wav", "N", "127", "Female", "Train"),
    ("MSP-PODCAST_0001_0002.wav", "H", "127", "Female", "Train"),
    ("MSP-PODCAST_0001_0003.wav", "A", "Unknown", "Unknown", "Train"),
    ("MSP-PODCAST_0001_0004.wav", "U", "128", "Male", "Train"),
    ("MSP-PODCAST_0001_0005.wav", "X", "128", "Male", "Train"),
    ("MSP-PODCAST_0002_0001.wav", "S", "200", "Male", "Development"),
    ("MSP-PODCAST_0002_0002.wav", "C", "200", "Male", "Development"),
    ("MSP-PODCAST_0002_0003.wav", "O", "201", "Female", "Development"),
    ("MSP-PODCAST_0003_0001.wav", "A", "300", "Female", "Test1"),
    ("MSP-PODCAST_0003_0002.wav", "D", "300", "Female", "Test1"),
    ("MSP-PODCAST_0003_0003.wav", "N", "301", "Male", "Test1"),
    ("MSP-PODCAST_0004_0001.wav", "F", "400", "Male", "Test2"),
    ("MSP-PODCAST_0004_0002.wav", "H", "400", "Male", "Test2"),
    ("MSP-PODCAST_0005_0001.wav", "", "", "", "Test3"),
]


def make_msp_podcast_tree(root: Path, rows=MSP_ROWS) -> Path:
    """`Audios/*.wav` + `Labels/labels_consensus.csv` (the release's columns, with the attribute scores) of `rows`."""
    clip = wav_bytes(1600)
    lines = ["FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set"]
    for name, emotion, speaker, gender, split in rows:
        _write(root / "Audios" / name, clip)
        lines.append(f"{name},{emotion},4.2,3.8,4.0,{speaker},{gender},{split}")
    (root / "Labels").mkdir(parents=True, exist_ok=True)
    (root / "Labels" / "labels_consensus.csv").write_text("\n".join(lines) + "\n")
    return root


TONE_LABELS = ("low", "mid", "high")


def make_tone_corpus(
    root: Path,
    speakers=(("f1", "female"), ("m1", "male"), ("m2", "male")),
    clips_per_class: int = 6,
    durations=(0.25, 3.0, 0.4, 2.0, 0.7, 1.2),
    tone_hz=(250.0, 1000.0, 4000.0),
    noise: float = 0.3,
    speaker_shift: float = 0.15,
    seed: int = 0,
) -> Path:
    """A corpus a tiny random backbone learns in a few epochs: `audio_folder` layout (`root/metadata.csv` with
    `file,label,speaker,gender,duration_s,text` and 16 kHz 16-bit WAVs under `root/audio/`).

    Class c (`TONE_LABELS[c]`) is a sine at `tone_hz[c]` (±10 % per clip, random phase and level) in white noise of
    `noise` × the tone's amplitude; each speaker shifts every frequency by a factor (1 ± `speaker_shift` steps), so
    held-out speakers are not trivially easy and validation UA moves from epoch to epoch. Every class of every
    speaker gets every duration once per `len(durations)` clips, so length says nothing about the class. Rows are
    written so that consecutive rows have different durations: batches formed in row order mix short and long
    clips (much padding), batches formed longest first do not.
    """
    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sampling_rate = 16000
    rows = []
    for s, (speaker, gender) in enumerate(speakers):
        shift = 1 + speaker_shift * (s - (len(speakers) - 1) / 2)
        for i in range(clips_per_class):
            for c, label in enumerate(TONE_LABELS):
                num_samples = int(round(durations[(i + c) % len(durations)] * sampling_rate))
                t = np.arange(num_samples) / sampling_rate
                frequency = tone_hz[c] * shift * np.exp(rng.uniform(-0.1, 0.1))
                clip = np.sin(2 * np.pi * frequency * t + rng.uniform(0, 2 * np.pi))
                clip = clip + noise * rng.normal(size=num_samples)
                clip = (0.5 * rng.uniform(0.2, 1.0) * clip / np.abs(clip).max()).astype(np.float32)
                name = f"audio/{speaker}_{label}_{i}.wav"
                sf.write(root / name, clip, sampling_rate, subtype="PCM_16")
                rows.append(f"{name},{label},{speaker},{gender},{num_samples / sampling_rate:.4f},{label} tone")
    header = "file,label,speaker,gender,duration_s,text"
    (root / "metadata.csv").write_text("\n".join([header] + rows) + "\n")
    return root


def polish3_rows(count: int, speakers=("m1", "m2", "m3")) -> list[dict]:
    with open(POLISH3 / "metadata.csv") as f:
        rows = [row for row in csv.DictReader(f) if row["speaker"] in speakers]
    return rows[:: max(1, len(rows) // count)][:count]


def copy_clips(rows, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for row in rows:
        shutil.copy(POLISH3 / row["file"], folder / row["file"].rsplit("/", 1)[-1])


def make_split_folders(root):
    """<root>/{train,validation,test}/ with audio files and a metadata.csv (file_name,label): no speakers."""
    plan = {"train": ("m1", "m2", "m3"), "validation": ("m4",), "test": ("m5",)}
    counts = {}
    for split, speakers in plan.items():
        rows = polish3_rows(9 if split == "train" else 6, speakers)
        copy_clips(rows, root / split)
        lines = ["file_name,label"] + [f"{r['file'].rsplit('/', 1)[-1]},{r['label']}" for r in rows]
        (root / split / "metadata.csv").write_text("\n".join(lines) + "\n")
        counts[split] = len(rows)
    return counts
