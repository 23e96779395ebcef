import pytest

from napari_behaviorvlm.behavior import editing
from napari_behaviorvlm.core.segments import Segment, SegmentTable


def _table():
    return SegmentTable([Segment(0, 9, "walk"), Segment(10, 19, "rear"), Segment(20, 39, "rest"),
                         Segment(0, 39, "walk", subject="m1")])


def mine(table):
    return [s for s in table if s.subject == "mouse0"]


def spans(table, subject="mouse0"):
    return [(s.start, s.end, s.label, s.source) for s in table if s.subject == subject]


def test_rename_and_move_boundary_trim_neighbours():
    t = _table()
    rear = mine(t)[1]
    rear = editing.rename_segment(t, rear, "groom")
    assert spans(t)[1] == (10, 19, "groom", "human")
    editing.move_boundary(t, rear, "end", 24)
    assert spans(t) == [(0, 9, "walk", "model"), (10, 24, "groom", "human"),
                        (25, 39, "rest", "human")]
    with pytest.raises(ValueError, match="before it starts"):
        editing.move_boundary(t, mine(t)[1], "start", 30)
    assert spans(t, "m1") == [(0, 39, "walk", "model")]  # other subject untouched


def test_split_merge_delete_add():
    t = _table()
    left, right = editing.split_segment(t, mine(t)[2], 30)
    assert (left.start, left.end, right.start, right.end) == (20, 29, 30, 39)
    with pytest.raises(ValueError, match="split frame"):
        editing.split_segment(t, left, 20)
    merged = editing.merge_with_next(t, mine(t)[0])
    assert (merged.start, merged.end, merged.label) == (0, 19, "walk")
    assert len(spans(t)) == 3
    last = [s for s in t if s.subject == "mouse0"][-1]
    with pytest.raises(ValueError, match="last segment"):
        editing.merge_with_next(t, last)
    editing.delete_segment(t, last)
    assert spans(t)[-1][:2] == (20, 29)
    editing.add_segment(t, 25, 45, "sniff")
    assert spans(t)[-2:] == [(20, 24, "rest", "human"), (25, 45, "sniff", "human")]
    assert editing.next_segment(t, mine(t)[0]).label == "rest"
    assert editing.next_segment(t, mine(t)[0], -1) is None
