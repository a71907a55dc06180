"""modeling/segments/: segment files read with the file's own boundaries (RTTM with several speakers and overlapping
turns, SRT with hour-long timestamps, WebVTT, CSV with a BOM, JSON and JSON lines), every bad line named with its file
and line, and per-segment results written back (CSV, JSON lines, RTTM, SRT/VTT) and read again."""

import json

import pytest

from modeling.segments import Segment, SegmentError, as_segments, read_segments, write_segment_results
from modeling.timeline_recording import clip_segments


def spans(segments):
    return [(s.start_s, s.end_s, s.speaker) for s in segments]


RTTM = """\
;; a comment line
SPEAKER call1 1 0.500 2.250 <NA> <NA> alice <NA> <NA>
SPEAKER call1 1 2.000 1.000 <NA> <NA> bob <NA> <NA>
SPKR-INFO call1 1 <NA> <NA> <NA> unknown bob <NA> <NA>

SPEAKER call1 1 10.125 0.375 <NA> <NA> alice <NA> <NA>
SPEAKER call1 1 2.5 4.5 <NA> <NA> carol 0.9 <NA>
"""


def test_rttm_several_speakers_and_overlapping_turns(tmp_path):
    path = tmp_path / "call1.rttm"
    path.write_text(RTTM)
    segments = read_segments(path, recording_id="call1")
    assert spans(segments) == [
        (0.5, 2.75, "alice"),
        (2.0, 3.0, "bob"),  # overlaps alice's turn
        (2.5, 7.0, "carol"),  # overlaps both
        (10.125, 10.5, "alice"),
    ]
    assert segments[0].source == f"{path}:2" and segments[3].source == f"{path}:6"
    assert read_segments(path) == segments  # one recording: no id needed


def test_rttm_line_of_another_recording_is_named(tmp_path):
    path = tmp_path / "calls.rttm"
    path.write_text(RTTM + "SPEAKER call2 1 1.0 2.0 <NA> <NA> dave <NA> <NA>\n")
    with pytest.raises(SegmentError, match=r"calls.rttm:8: recording id 'call2', expected 'call1'"):
        read_segments(path, recording_id="call1")
    with pytest.raises(SegmentError, match=r"turns of 2 recordings .*'call2' \(first at .*calls.rttm:8\)"):
        read_segments(path)
    with pytest.raises(SegmentError, match=r"4 bad line\(s\)"):  # for call2, call1's four lines are the bad ones
        read_segments(path, recording_id="call2")


def test_every_bad_line_is_listed_at_once(tmp_path):
    path = tmp_path / "bad.rttm"
    path.write_text(
        "SPEAKER r 1 1.0 -0.5 <NA> <NA> a <NA> <NA>\nSPEAKER r 1 x 1 <NA> <NA> a <NA> <NA>\nSPEAKER r 1 1.0\n"
    )
    with pytest.raises(SegmentError) as error:
        read_segments(path)
    message = str(error.value)
    assert "3 bad line(s)" in message
    assert (
        f"{path}:1: duration -0.5 s" in message and f"{path}:2: onset" in message and f"{path}:3: a SPEAKER" in message
    )


SRT = """\
1
00:00:01,250 --> 00:00:03,000
[SPEAKER_00]: hello there

2
01:02:03,456 --> 01:02:07,890
SPEAKER_01: an hour in,
two lines

3
123:00:00,000 --> 123:00:01,5
no speaker
"""


def test_srt_with_hour_long_timestamps(tmp_path):
    path = tmp_path / "asr.srt"
    path.write_text(SRT, encoding="utf-8")
    assert spans(read_segments(path)) == [
        (1.25, 3.0, "SPEAKER_00"),
        (3723.456, 3727.89, "SPEAKER_01"),
        (442800.0, 442801.5, None),
    ]
    assert read_segments(path)[1].source == f"{path}:6"


def test_webvtt_voice_tags_settings_and_notes(tmp_path):
    path = tmp_path / "asr.vtt"
    path.write_text(
        "WEBVTT\n\nNOTE made by hand\n\ncue-1\n00:01.000 --> 00:02.500 align:start\n<v Ann>Hi\n\n"
        "01:00:00.010 --> 01:00:00.020\n<v.loud Bob Smith>Yes\n"
    )
    assert spans(read_segments(path)) == [(1.0, 2.5, "Ann"), (3600.01, 3600.02, "Bob Smith")]


def test_end_before_start_names_the_line(tmp_path):
    path = tmp_path / "bad.srt"
    path.write_text("1\n00:00:05,000 --> 00:00:04,000\ntext\n\n2\n00:00:06 --> 00:00:07\nx\n")
    with pytest.raises(SegmentError) as error:
        read_segments(path)
    assert f"{path}:2: end 4.0 s is not after start 5.0 s" in str(error.value)
    assert f"{path}:6: a cue's times are HH:MM:SS,mmm --> HH:MM:SS,mmm" in str(error.value)


def test_csv_with_bom_and_json_forms(tmp_path):
    csv_path = tmp_path / "turns.csv"
    csv_path.write_bytes("\ufeffstart;end;speaker\n0.5;1.75;A\n2;3.125;B\n\n".encode())
    assert spans(read_segments(csv_path)) == [(0.5, 1.75, "A"), (2.0, 3.125, "B")]
    plain = tmp_path / "plain.csv"
    plain.write_text("start_s,end_s\n4,5.5\n")
    assert spans(read_segments(plain)) == [(4.0, 5.5, None)]
    listed = tmp_path / "turns.json"
    listed.write_text(json.dumps([{"start": 1, "end": 2, "speaker": 7}, {"start_s": 0.25, "end_s": 0.5}]))
    assert spans(read_segments(listed)) == [(0.25, 0.5, None), (1.0, 2.0, "7")]
    lines = tmp_path / "turns.jsonl"
    lines.write_text('{"start": 1, "end": 2}\n\n{"start": 3, "end": 2.5}\n')
    with pytest.raises(SegmentError, match=r"turns.jsonl:3: end 2.5 s is not after start 3.0 s"):
        read_segments(lines)
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("start,end\n1,2\n3,abc\n")
    with pytest.raises(SegmentError, match=r"bad.csv:3: start and end must be seconds"):
        read_segments(bad_csv)


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(SegmentError, match="unknown segment format 'txt'"):
        read_segments(tmp_path / "x.txt")
    with pytest.raises(SegmentError, match="does not exist"):
        read_segments(tmp_path / "x.rttm")


def test_in_memory_segments_and_the_past_the_end_rule():
    segments = as_segments([(0, 1, "a"), {"start_s": 1.5, "end_s": 4.0}, Segment(3.0, 9.0, None, "f.rttm:4")])
    warnings = []
    clipped = clip_segments(segments, 5.0, "rec.wav", warnings.append)
    assert spans(clipped) == [(0.0, 1.0, "a"), (1.5, 4.0, None), (3.0, 5.0, None)]  # clipped, with a warning:
    assert warnings == ["f.rttm:4: ends at 9.0 s, past the end of rec.wav (5.000 s); clipped to the end."]
    with pytest.raises(SegmentError, match=r"f.rttm:4: starts at 3.0 s"):  # nothing left: refused
        clip_segments(segments, 2.0, "rec.wav", warnings.append)
    with pytest.raises(SegmentError, match=r"segments\[0\]: end 1.0 s is not after start 2.0 s"):
        as_segments([(2, 1)])
    with pytest.raises(SegmentError, match=r"segments\[1\]: expected a Segment"):
        as_segments([(0, 1), "0-1"])


RECORDS = [
    {"start_s": 0.5, "end_s": 2.75, "speaker": "alice", "predicted": "anger", "prob_anger": 0.7, "prob_fear": 0.3},
    {"start_s": 3723.456, "end_s": 3727.89, "speaker": None, "predicted": "fear", "prob_anger": 0.1, "prob_fear": 0.9},
]


@pytest.mark.parametrize("extension", ["csv", "jsonl", "rttm", "srt", "vtt"])
def test_results_written_and_read_back(tmp_path, extension):
    path = tmp_path / f"rec.{extension}"
    write_segment_results(path, RECORDS, ["anger", "fear"], "rec")
    back = read_segments(path, recording_id="rec" if extension == "rttm" else None)
    assert [(s.start_s, s.end_s) for s in back] == [(0.5, 2.75), (3723.456, 3727.89)]
    text = path.read_text()
    if extension == "csv":
        assert text.splitlines()[:2] == [
            "start_s,end_s,speaker,predicted,prob_anger,prob_fear",
            "0.500,2.750,alice,anger,0.700000,0.300000",
        ]
    elif extension == "rttm":
        assert text.splitlines()[0] == "SPEAKER rec 1 0.500 2.250 alice <NA> anger 0.7000 <NA>"
        assert [s.speaker for s in back] == ["anger", "fear"]  # the label field is the emotion
    elif extension == "srt":
        assert "2\n01:02:03,456 --> 01:02:07,890\nfear (0.90)\n" in text and "[alice] anger (0.70)" in text
    elif extension == "vtt":
        assert text.startswith("WEBVTT\n") and "<v alice>anger (0.70)" in text
        assert [s.speaker for s in back] == ["alice", None]
    else:
        assert json.loads(text.splitlines()[0]) == {"recording": "rec", **RECORDS[0]}


def test_result_files_write_times_to_the_millisecond_and_probabilities_to_6_decimals(tmp_path):
    """One formatting owner (`segments.writers`): 0.1 + 0.2 s (an RTTM onset + duration) is written 0.300, not
    0.30000000000000004; in JSON lines too, nested timelines included."""
    record = {
        "start_s": 0.1,
        "end_s": 0.1 + 0.2,
        "speaker": "A",
        "predicted": "fear",
        "prob_anger": 1 / 3,
        "prob_fear": 2 / 3,
        "timeline": [{"start_s": 0.1, "end_s": 0.1 + 0.2, "predicted": "fear", "prob_fear": 2 / 3, "weight": 1 / 7e4}],
    }
    assert str(record["end_s"]) == "0.30000000000000004"
    write_segment_results(tmp_path / "r.csv", [record], ["anger", "fear"], "r")
    assert (tmp_path / "r.csv").read_text().splitlines()[1] == "0.100,0.300,A,fear,0.333333,0.666667"
    write_segment_results(tmp_path / "r.jsonl", [record], ["anger", "fear"], "r")
    line = (tmp_path / "r.jsonl").read_text()
    assert "0.30000000000000004" not in line and "0.3333333333" not in line
    written = json.loads(line)
    assert (written["end_s"], written["prob_anger"]) == (0.3, 0.333333)
    assert written["timeline"][0] == {
        "start_s": 0.1,
        "end_s": 0.3,
        "predicted": "fear",
        "prob_fear": 0.666667,
        "weight": 1.42857e-05,
    }
    write_segment_results(tmp_path / "r.rttm", [record], ["anger", "fear"], "r")
    assert (tmp_path / "r.rttm").read_text() == "SPEAKER r 1 0.100 0.200 A <NA> fear 0.6667 <NA>\n"


def test_results_are_written_as_they_come_and_a_failure_leaves_no_file(tmp_path):
    def records():
        yield RECORDS[0]
        assert (tmp_path / "r.srt").exists() is False  # nothing renamed into place before the end
        yield RECORDS[1]
        raise RuntimeError("the model failed on segment 3")

    with pytest.raises(RuntimeError, match="segment 3"):
        write_segment_results(tmp_path / "r.srt", records(), ["anger", "fear"], "r")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its temporary copy
    assert write_segment_results(tmp_path / "r.srt", iter(RECORDS), ["anger", "fear"], "r") == 2
