import math

import numpy as np
import pytest

from napari_behaviorvlm.core.segments import Segment, SegmentTable


def test_segment_spans_are_inclusive_and_validated():
    s = Segment(3, 5, "rear")
    assert s.n_frames == 3
    with pytest.raises(ValueError, match="before its start"):
        Segment(5, 3, "rear")
    with pytest.raises(ValueError, match="source"):
        Segment(0, 1, "rear", source="robot")


def test_frame_labels_and_dataframe_round_trip():
    table = SegmentTable([Segment(4, 6, "groom", score=0.5), Segment(0, 2, "walk", caption="fast")])
    assert [s.label for s in table] == ["walk", "groom"]
    labels = table.frame_labels(8)
    assert labels.tolist() == ["walk"] * 3 + [""] + ["groom"] * 3 + [""]
    back = SegmentTable.from_dataframe(table.to_dataframe())
    assert back.equals(table)
    assert math.isnan(back[0].score)


def test_replace_model_segments_keeps_human_edits():
    table = SegmentTable([Segment(0, 9, "rest", source="human"), Segment(10, 20, "walk")])
    table.replace_model_segments([Segment(5, 12, "run"), Segment(13, 30, "groom")])
    assert [(s.start, s.end, s.label, s.source) for s in table] == [
        (0, 9, "rest", "human"), (13, 30, "groom", "model"),
    ]
    assert np.all(table.frame_labels(31)[0:10] == "rest")
