"""Behavior segment files: bout CSV (lossless), BORIS tabular table, frame/second conventions."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from napari_behaviorvlm.core.segments import Segment, SegmentTable
from napari_behaviorvlm.io._common import FormatError
from napari_behaviorvlm.io.segments_io import (
    BORIS_COLUMNS, BOUT_COLUMNS, read_boris_table, read_segments_csv, write_boris_table,
    write_segments_csv,
)

FPS = 25.0


@pytest.fixture
def segments() -> SegmentTable:
    return SegmentTable([
        Segment(0, 0, "rear", subject="m0", source="human", caption="one frame"),
        Segment(10, 36, "walk", subject="m0", source="model", score=0.75),
        Segment(5, 20, "chase", subject="m1", target="m0", source="model", caption="fast, close"),
        Segment(30, 99, "groom", subject="m1", source="human"),
    ])


def test_bout_csv_round_trip(segments, tmp_path):
    path = write_segments_csv(segments, tmp_path / "bouts.csv", FPS)
    df = pd.read_csv(path)
    assert list(df.columns) == BOUT_COLUMNS
    walk = df[df.label == "walk"].iloc[0]
    assert walk.start_s == pytest.approx(10 / FPS) and walk.end_s == pytest.approx(37 / FPS)
    back = read_segments_csv(path)
    assert back.equals(segments)
    assert math.isnan(back[0].score)  # unknown score stays unknown
    # a table with only seconds comes back to the same frames
    df.drop(columns=["start", "end"]).to_csv(tmp_path / "seconds.csv", index=False)
    assert read_segments_csv(tmp_path / "seconds.csv", fps=FPS).equals(segments)
    with pytest.raises(FormatError, match="start_s"):
        read_segments_csv(tmp_path / "seconds.csv")
    with pytest.raises(FileExistsError):
        write_segments_csv(segments, path, FPS)


@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_boris_table(segments, tmp_path, suffix):
    path = write_boris_table(segments, tmp_path / f"boris{suffix}", FPS, media_file="v.mp4",
                             n_frames=100)
    df = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    assert list(df.columns) == BORIS_COLUMNS
    assert len(df) == 2 * len(segments)
    assert set(df["Behavior type"]) == {"START", "STOP"}
    # what a BORIS consumer (e.g. SimBA) computes: frame = Time * FPS
    starts = df[df["Behavior type"] == "START"]
    walk = starts[starts.Behavior == "walk"].iloc[0]
    assert round(walk.Time * walk.FPS) == 10
    stop = df[(df["Behavior type"] == "STOP") & (df.Behavior == "walk")].iloc[0]
    assert stop.Time == pytest.approx(37 / FPS)  # bout covers frames 10..36
    back = read_boris_table(path)
    assert len(back) == len(segments)
    for a, b in zip(back, segments):
        assert (a.start, a.end, a.label, a.subject, a.target, a.caption) == (
            b.start, b.end, b.label, b.subject, b.target, b.caption)
        assert a.source == "human"
    # without Image index, frames come from Time and FPS
    df.drop(columns=["Image index"]).to_csv(tmp_path / "noidx.csv", index=False)
    back2 = read_boris_table(tmp_path / "noidx.csv")
    assert [(s.start, s.end) for s in back2] == [(s.start, s.end) for s in segments]


def test_boris_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"Subject": ["a"], "Behavior": ["x"], "Time": [1.0],
                  "Behavior type": ["STOP"], "FPS": [25]}).to_csv(bad, index=False)
    with pytest.raises(FormatError, match="no START"):
        read_boris_table(bad)
    pd.DataFrame({"Subject": ["a"]}).to_csv(bad, index=False)
    with pytest.raises(FormatError, match="lacks columns"):
        read_boris_table(bad)
