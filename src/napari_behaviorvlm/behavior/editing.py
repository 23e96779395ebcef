"""Human edits of a segment table (what the timeline's buttons call; scripts may too).

Every edit marks the segments it creates or changes ``source="human"`` with score 1, so a
later model run never overwrites them, and keeps one label per frame and subject: a segment
grown over a neighbour of the same subject trims that neighbour (removing it when covered).
Segments are addressed by object identity (the table may hold equal copies).
"""

from __future__ import annotations

import attrs

from napari_behaviorvlm.core.segments import Segment, SegmentTable

__all__ = [
    "add_segment",
    "delete_segment",
    "merge_with_next",
    "move_boundary",
    "next_segment",
    "rename_segment",
    "split_segment",
]


def _index(table: SegmentTable, segment: Segment) -> int:
    for i, s in enumerate(table.segments):
        if s is segment:
            return i
    raise ValueError(f"segment {segment.label!r} {segment.start}-{segment.end} is not in the table")


def _human(segment: Segment, **changes) -> Segment:
    return attrs.evolve(segment, source="human", score=1.0, **changes)


def _make_room(table: SegmentTable, keep: Segment) -> None:
    """Trim or drop the other segments of ``keep.subject`` that overlap ``keep``."""
    out = []
    for s in table.segments:
        if s is keep or s.subject != keep.subject or not s.overlaps(keep):
            out.append(s)
            continue
        if s.start < keep.start:
            out.append(_human(s, end=keep.start - 1))
        if s.end > keep.end:
            out.append(_human(s, start=keep.end + 1))
    table.segments = out
    table.sort()


def _replace(table: SegmentTable, old: Segment, new: Segment) -> Segment:
    table.segments[_index(table, old)] = new
    _make_room(table, new)
    return new


def rename_segment(table: SegmentTable, segment: Segment, label: str) -> Segment:
    """Give ``segment`` a new label; returns the edited segment."""
    label = label.strip()
    if not label:
        raise ValueError("a segment label cannot be empty")
    return _replace(table, segment, _human(segment, label=label))


def move_boundary(table: SegmentTable, segment: Segment, side: str, frame: int) -> Segment:
    """Set the ``"start"`` or ``"end"`` frame (inclusive) of ``segment`` to ``frame``.

    Raises:
        ValueError: the segment would end before it starts, or ``side`` is unknown.
    """
    if side not in ("start", "end"):
        raise ValueError(f"side must be 'start' or 'end', not {side!r}")
    start, end = (frame, segment.end) if side == "start" else (segment.start, frame)
    if end < start or start < 0:
        raise ValueError(f"cannot move the {side} of {segment.label!r} ({segment.start}-"
                         f"{segment.end}) to frame {frame}: it would end before it starts")
    return _replace(table, segment, _human(segment, start=start, end=end))


def split_segment(table: SegmentTable, segment: Segment, frame: int) -> tuple[Segment, Segment]:
    """Split into ``start..frame-1`` and ``frame..end``.

    Raises:
        ValueError: ``frame`` is not strictly inside the segment.
    """
    if not segment.start < frame <= segment.end:
        raise ValueError(f"split frame {frame} must be in {segment.start + 1}..{segment.end} "
                         f"(inside {segment.label!r} {segment.start}-{segment.end})")
    left = _human(segment, end=frame - 1)
    right = _human(segment, start=frame)
    table.segments[_index(table, segment)] = left
    table.segments.append(right)
    table.sort()
    return left, right


def next_segment(table: SegmentTable, segment: Segment, step: int = 1) -> Segment | None:
    """The segment of the same subject ``step`` positions later (earlier when negative)."""
    same = [s for s in table.segments if s.subject == segment.subject]
    i = next(k for k, s in enumerate(same) if s is segment)
    j = i + step
    return same[j] if 0 <= j < len(same) else None


def merge_with_next(table: SegmentTable, segment: Segment) -> Segment:
    """Join ``segment`` and the next segment of the same subject (the gap between them too);
    the result keeps ``segment``'s label.

    Raises:
        ValueError: there is no next segment.
    """
    nxt = next_segment(table, segment)
    if nxt is None:
        raise ValueError(f"{segment.label!r} {segment.start}-{segment.end} is the last segment "
                         f"of {segment.subject}: nothing to merge with")
    merged = _human(segment, end=max(segment.end, nxt.end))
    table.segments = [s for s in table.segments if s is not nxt]
    return _replace(table, segment, merged)


def delete_segment(table: SegmentTable, segment: Segment) -> None:
    """Remove ``segment``.

    Note that a deleted *model* segment may come back on a rerun (only human segments are
    protected); label the frames instead to keep a decision.
    """
    del table.segments[_index(table, segment)]


def add_segment(table: SegmentTable, start: int, end: int, label: str,
                subject: str = "mouse0", target: str = "", caption: str = "") -> Segment:
    """Add a human segment ``start..end`` (inclusive), trimming what it overlaps."""
    seg = Segment(start=start, end=end, label=label.strip() or "unlabeled", subject=subject,
                  target=target, caption=caption, source="human", score=1.0)
    table.segments.append(seg)
    _make_room(table, seg)
    return seg
