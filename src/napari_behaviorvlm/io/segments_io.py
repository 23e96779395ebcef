"""Behavior segments in files: our bout CSV, a BORIS-compatible event table, sleap-io Events.

Frames are **session frames**, spans **inclusive** (``start..end``). Times in seconds follow the
continuous-interval convention every time-based tool uses: a bout covering frames ``s..e``
runs from ``start_s = s / fps`` to ``end_s = (e + 1) / fps`` (so ``end_s - start_s`` is its
duration). Reading back rounds ``start_s * fps`` and ``end_s * fps - 1`` to whole frames.

- Bout CSV (:func:`write_segments_csv`): one row per bout, columns
  :data:`BOUT_COLUMNS` = ``SEGMENT_COLUMNS`` + ``start_s, end_s``. Lossless.
- BORIS table (:func:`write_boris_table`): the layout of BORIS's *tabular events* export (v8):
  two rows per bout (``Behavior type`` = ``START`` / ``STOP``), ``Time`` in seconds, ``FPS``,
  ``Media file name``, ``Image index`` = frame index of the row's time. ``target`` goes to
  ``Modifier #1`` and ``caption`` to ``Comment``; ``source`` and ``score`` have no BORIS column
  (reading a BORIS table gives human segments with unknown score).
- sleap-io Events (:func:`segments_to_events` / :func:`events_to_segments`): human segments as
  ``UserEvent``, model segments as ``PredictedEvent`` with ``score``; caption in
  ``metadata["caption"]``. Events attach to one video (the first camera's), in its video frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from napari_behaviorvlm.core.atomic import atomic_write_text, check_overwrite
from napari_behaviorvlm.core.segments import SEGMENT_COLUMNS, Segment, SegmentTable
from napari_behaviorvlm.io._common import FormatError

__all__ = [
    "BORIS_COLUMNS", "BOUT_COLUMNS", "events_to_segments", "read_boris_table",
    "read_segments_csv", "segments_to_events", "write_boris_table", "write_segments_csv",
]

BOUT_COLUMNS = [*SEGMENT_COLUMNS, "start_s", "end_s"]

#: Columns of BORIS's tabular events export (one media file, one modifier), in BORIS's order.
BORIS_COLUMNS = [
    "Observation id", "Observation date", "Description", "Observation duration",
    "Observation type", "Source", "Time offset (s)", "Media duration (s)", "FPS",
    "Subject", "Behavior", "Behavioral category", "Modifier #1", "Behavior type", "Time",
    "Media file name", "Image index", "Image file path", "Comment",
]


def _check_fps(fps: float) -> float:
    fps = float(fps)
    if not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    return fps


# ------------------------------------------------------------------ bout CSV
def segments_dataframe(segments: SegmentTable, fps: float) -> pd.DataFrame:
    """The bout table as a DataFrame with :data:`BOUT_COLUMNS` (times in seconds)."""
    fps = _check_fps(fps)
    df = segments.to_dataframe()
    df["start_s"] = df["start"].astype(float) / fps
    df["end_s"] = (df["end"].astype(float) + 1.0) / fps
    return df[BOUT_COLUMNS]


def write_segments_csv(segments: SegmentTable, path: str | Path, fps: float,
                       overwrite: bool = False) -> Path:
    """Write one row per bout (columns :data:`BOUT_COLUMNS`) atomically; returns the path."""
    path = Path(path)
    check_overwrite(path, overwrite)
    atomic_write_text(path, segments_dataframe(segments, fps).to_csv(index=False))
    return path


def read_segments_csv(path: str | Path, fps: float | None = None) -> SegmentTable:
    """Read a bout CSV. Frames come from ``start``/``end`` when present, else from
    ``start_s``/``end_s`` and ``fps``.

    Raises:
        FileNotFoundError: no file. FormatError: missing columns (named in the message).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"segment file not found: {path}")
    df = pd.read_csv(path, keep_default_na=False, na_values={"score": [""]},
                     float_precision="round_trip")
    if not {"start", "end"} <= set(df.columns):
        if not {"start_s", "end_s"} <= set(df.columns) or fps is None:
            raise FormatError(
                f"{path}: a bout CSV needs start,end (frames) or start_s,end_s (seconds, with "
                f"fps given); found columns {list(df.columns)}"
            )
        fps = _check_fps(fps)
        df["start"] = np.rint(df["start_s"].astype(float) * fps).astype(int)
        df["end"] = np.rint(df["end_s"].astype(float) * fps).astype(int) - 1
    if "label" not in df.columns:
        raise FormatError(f"{path}: a bout CSV needs a label column")
    df = df[[c for c in SEGMENT_COLUMNS if c in df.columns]]
    if "score" in df.columns:
        df["score"] = pd.to_numeric(df["score"], errors="coerce")
    for text in ("subject", "target", "caption", "label", "source"):
        if text in df.columns:
            df[text] = df[text].astype(str)
    try:
        return SegmentTable.from_dataframe(df)
    except ValueError as exc:
        raise FormatError(f"{path}: {exc}") from None


# ------------------------------------------------------------------ BORIS
def write_boris_table(
    segments: SegmentTable,
    path: str | Path,
    fps: float,
    media_file: str = "",
    observation_id: str = "behaviorvlm",
    n_frames: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a BORIS-compatible tabular event file (``.tsv`` tab-separated, else CSV).

    Args:
        segments: The bouts. fps: frames per second of the media.
        media_file: The video the times refer to (``Media file name`` and ``Source``).
        observation_id: BORIS ``Observation id``.
        n_frames: Media length in frames (``Media duration (s)``), when known.
    """
    fps = _check_fps(fps)
    path = Path(path)
    check_overwrite(path, overwrite)
    duration = "NA" if n_frames is None else f"{n_frames / fps:.3f}"
    rows = []
    for seg in sorted(segments, key=lambda s: (s.start, s.end, s.subject, s.label)):
        for status, frame in (("START", seg.start), ("STOP", seg.end + 1)):
            rows.append({
                "Observation id": observation_id,
                "Observation date": "",
                "Description": "exported by napari-behaviorvlm",
                "Observation duration": duration,
                "Observation type": "Media file(s)",
                "Source": f"player #1:{media_file}",
                "Time offset (s)": 0.0,
                "Media duration (s)": duration,
                "FPS": fps,
                "Subject": seg.subject,
                "Behavior": seg.label,
                "Behavioral category": "",
                "Modifier #1": seg.target,
                "Behavior type": status,
                "Time": round(frame / fps, 6),
                "Media file name": media_file,
                "Image index": frame,
                "Image file path": "NA",
                "Comment": seg.caption,
            })
    df = pd.DataFrame(rows, columns=BORIS_COLUMNS)
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    atomic_write_text(path, df.to_csv(index=False, sep=sep))
    return path


def read_boris_table(path: str | Path, fps: float | None = None) -> SegmentTable:
    """Read a BORIS tabular event export (ours or BORIS's own, CSV or TSV) into human segments.

    START/STOP rows are paired per (subject, behavior, modifier) in time order. Frames come from
    ``Image index`` when it is numeric, else from ``Time`` and ``FPS`` (or ``fps``).

    Raises:
        FormatError: missing columns, a STOP without START, or no frame rate available.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"BORIS table not found: {path}")
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    df = pd.read_csv(path, sep=sep, keep_default_na=False, dtype=str)
    status_col = "Behavior type" if "Behavior type" in df.columns else "Status"
    needed = ["Subject", "Behavior", "Time", status_col]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise FormatError(f"{path} is not a BORIS tabular event table: lacks columns {missing}")

    def frame_of(row: dict) -> int:
        index = row.get("Image index", "")
        try:
            return int(float(index))
        except ValueError:
            pass
        rate = fps
        if rate is None:
            try:
                rate = float(row.get("FPS", "").split(";")[0])
            except ValueError:
                raise FormatError(f"{path}: no frame rate; pass fps=") from None
        return int(round(float(row["Time"]) * _check_fps(rate)))

    open_bouts: dict[tuple[str, str, str], list[tuple[int, str]]] = {}
    segments = []
    for row in df.to_dict("records"):
        status = row[status_col].strip().upper()
        key = (row["Subject"], row["Behavior"], row.get("Modifier #1", ""))
        if status == "START":
            open_bouts.setdefault(key, []).append((frame_of(row), row.get("Comment", "")))
        elif status == "STOP":
            if not open_bouts.get(key):
                raise FormatError(f"{path}: STOP of {key[1]!r} ({key[0]!r}) at time "
                                  f"{row['Time']} has no START")
            start, caption = open_bouts[key].pop(0)
            end = max(start, frame_of(row) - 1)
            segments.append(Segment(start=start, end=end, label=key[1], subject=key[0],
                                    target=key[2], caption=caption, source="human"))
    unmatched = [k for k, v in open_bouts.items() if v]
    if unmatched:
        raise FormatError(f"{path}: START without STOP for {unmatched}")
    return SegmentTable(segments)


# ------------------------------------------------------------------ sleap-io Events
def segments_to_events(segments: SegmentTable, video, tracks: dict, frame_offset: int = 0,
                       event_types: dict | None = None) -> tuple[list, list]:
    """sleap-io events for ``segments`` on ``video``.

    Args:
        video: The ``sleap_io.Video`` the events belong to.
        tracks: Individual name -> ``sleap_io.Track`` (missing names get a new Track, added to
            the dict so the caller can register it).
        frame_offset: That video's frame offset (event frames are video frames).
        event_types: Label -> ``sleap_io.EventType`` to reuse (updated in place).

    Returns:
        ``(event_types, events)``: the EventType catalog (one per label) and the events.
    """
    import sleap_io as sio

    event_types = {} if event_types is None else event_types

    def track(name: str):
        if not name:
            return None
        if name not in tracks:
            tracks[name] = sio.Track(name)
        return tracks[name]

    events = []
    for seg in segments:
        etype = event_types.setdefault(seg.label, sio.EventType(name=seg.label))
        kwargs = dict(type=etype, video=video, start_frame=seg.start + frame_offset,
                      end_frame=seg.end + frame_offset, subject=track(seg.subject),
                      target=track(seg.target), source="napari-behaviorvlm",
                      metadata={"caption": seg.caption} if seg.caption else {})
        if seg.source == "human":
            events.append(sio.UserEvent(**kwargs))
        else:
            score = None if math.isnan(seg.score) else float(seg.score)
            events.append(sio.PredictedEvent(score=score, **kwargs))
    return list(event_types.values()), events


def events_to_segments(events: Sequence, frame_offset: int = 0, video=None,
                       skip_types: Sequence[str] = ()) -> SegmentTable:
    """Segments from sleap-io events (of ``video`` only, when given). ``UserEvent`` and plain
    ``Event`` become human segments, ``PredictedEvent`` model segments with its ``score``.
    Event types named in ``skip_types`` are left out."""
    import sleap_io as sio

    segments = []
    for ev in events:
        if video is not None and ev.video is not video:
            continue
        if ev.type.name in skip_types:
            continue
        predicted = isinstance(ev, sio.PredictedEvent)
        score = getattr(ev, "score", None) if predicted else None
        segments.append(Segment(
            start=ev.start_frame - frame_offset, end=ev.end_frame - frame_offset,
            label=ev.type.name, subject=ev.subject.name if ev.subject is not None else "",
            target=ev.target.name if ev.target is not None else "",
            caption=(ev.metadata or {}).get("caption", ""),
            source="model" if predicted else "human",
            score=math.nan if score is None else float(score),
        ))
    return SegmentTable(segments)
