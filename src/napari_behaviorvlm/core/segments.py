"""The segment table: labeled behavior bouts with inclusive frame spans.

A segment covers frames ``start..end`` **inclusive** (session frame indices). ``subject`` and
``target`` are individual names (``target`` empty for solitary behavior). ``source`` is
``"model"`` or ``"human"``; a human segment is never overwritten by a rerun. ``score`` is 0..1
(NaN when unknown).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import attrs
import numpy as np
import pandas as pd

__all__ = ["SEGMENT_COLUMNS", "Segment", "SegmentTable"]

SEGMENT_COLUMNS = ["start", "end", "subject", "target", "label", "caption", "source", "score"]
SEGMENT_SOURCES = ("model", "human")


def _check_source(instance, attribute, value) -> None:
    if value not in SEGMENT_SOURCES:
        raise ValueError(f"segment source must be one of {SEGMENT_SOURCES}, got {value!r}")


@attrs.define(eq=True)
class Segment:
    """One behavior bout: frames ``start..end`` inclusive."""

    start: int = attrs.field(converter=int)
    end: int = attrs.field(converter=int)
    label: str = attrs.field(converter=str)
    subject: str = attrs.field(default="mouse0", converter=str)
    target: str = attrs.field(default="", converter=str)
    caption: str = attrs.field(default="", converter=str)
    source: str = attrs.field(default="model", validator=_check_source)
    score: float = attrs.field(default=math.nan, converter=float)

    def __attrs_post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"segment end {self.end} is before its start {self.start}")
        if self.start < 0:
            raise ValueError(f"segment start {self.start} is negative")

    @property
    def n_frames(self) -> int:
        return self.end - self.start + 1

    def overlaps(self, other: Segment) -> bool:
        return self.start <= other.end and other.start <= self.end

    def to_dict(self) -> dict:
        return {c: getattr(self, c) for c in SEGMENT_COLUMNS}

    def same_as(self, other: Segment) -> bool:
        """Equality that treats two NaN scores as equal."""
        a, b = self.to_dict(), other.to_dict()
        sa, sb = a.pop("score"), b.pop("score")
        return a == b and (sa == sb or (math.isnan(sa) and math.isnan(sb)))


@attrs.define(eq=False)
class SegmentTable:
    """An ordered list of :class:`Segment` (sorted by subject, start, end, label)."""

    segments: list[Segment] = attrs.field(factory=list, converter=list)

    def __attrs_post_init__(self) -> None:
        self.sort()

    def sort(self) -> None:
        self.segments.sort(key=lambda s: (s.subject, s.start, s.end, s.label))

    def __len__(self) -> int:
        return len(self.segments)

    def __iter__(self):
        return iter(self.segments)

    def __getitem__(self, i: int) -> Segment:
        return self.segments[i]

    def add(self, segment: Segment) -> None:
        self.segments.append(segment)
        self.sort()

    def extend(self, segments: Iterable[Segment]) -> None:
        self.segments.extend(segments)
        self.sort()

    def labels(self) -> list[str]:
        """Distinct labels in order of first appearance."""
        return list(dict.fromkeys(s.label for s in self.segments))

    def subjects(self) -> list[str]:
        return list(dict.fromkeys(s.subject for s in self.segments))

    def human(self) -> list[Segment]:
        return [s for s in self.segments if s.source == "human"]

    def replace_model_segments(self, new: Iterable[Segment]) -> None:
        """Replace all model segments by ``new``, keeping every human segment; new segments that
        overlap a human segment of the same subject are dropped (a human edit wins)."""
        humans = self.human()
        kept = [
            s for s in new
            if not any(h.subject == s.subject and h.overlaps(s) for h in humans)
        ]
        self.segments = humans + kept
        self.sort()

    def frame_labels(self, n_frames: int, subject: str | None = None,
                     background: str = "") -> np.ndarray:
        """Per-frame label array ``(n_frames,)`` of dtype object; later segments win overlaps."""
        out = np.full(n_frames, background, dtype=object)
        for s in self.segments:
            if subject is not None and s.subject != subject:
                continue
            out[max(s.start, 0): min(s.end, n_frames - 1) + 1] = s.label
        return out

    def to_dataframe(self) -> pd.DataFrame:
        return pd.DataFrame([s.to_dict() for s in self.segments], columns=SEGMENT_COLUMNS)

    @classmethod
    def from_dataframe(cls, df: pd.DataFrame) -> SegmentTable:
        missing = [c for c in ("start", "end", "label") if c not in df.columns]
        if missing:
            raise ValueError(f"segment table lacks columns {missing}")
        rows = df.to_dict("records")
        segments = []
        for row in rows:
            kwargs = {c: row[c] for c in SEGMENT_COLUMNS if c in row and row[c] is not None}
            for text in ("subject", "target", "caption"):
                if text in kwargs and isinstance(kwargs[text], float):
                    kwargs[text] = ""  # pandas reads empty text cells as NaN
            segments.append(Segment(**kwargs))
        return cls(segments)

    @classmethod
    def from_records(cls, records: Sequence[dict]) -> SegmentTable:
        return cls([Segment(**r) for r in records])

    def to_records(self) -> list[dict]:
        return [s.to_dict() for s in self.segments]

    def equals(self, other: SegmentTable) -> bool:
        return len(self) == len(other) and all(a.same_as(b) for a, b in zip(self, other))
