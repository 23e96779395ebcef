"""2D keypoint labels as a long CSV table (seed frames, hand labels, exchange with scripts).

One row per labeled 2D point, columns (in this order)::

    frame,camera,individual,keypoint,x,y,source

- ``frame``: session frame index (0-based, int);
- ``camera``, ``individual``, ``keypoint``: names as in the pose table;
- ``x``, ``y``: pixels in that camera's image (origin at the top-left pixel's centre, x right,
  y down), written with full float precision (exact round trip);
- ``source``: ``seed``, ``human``, ``model`` (lower-case :class:`Source` names).

Rows are sorted by frame, camera, individual, keypoint (table order). Points without a label
(NaN) are never written; a point absent from the file stays untouched on reading.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path

import numpy as np

from napari_behaviorvlm.core.atomic import atomic_write_text, check_overwrite
from napari_behaviorvlm.core.pose import PoseTable, Source

__all__ = ["LABEL_COLUMNS", "LabelsCSVError", "read_labels_csv", "write_labels_csv"]

LABEL_COLUMNS = ["frame", "camera", "individual", "keypoint", "x", "y", "source"]
_REQUIRED = LABEL_COLUMNS[:6]


class LabelsCSVError(ValueError):
    """A labels CSV is malformed or does not match the pose table (names the row)."""


def write_labels_csv(path: str | os.PathLike, poses: PoseTable, mask: np.ndarray | None = None,
                     overwrite: bool = False) -> Path:
    """Write the 2D labels of ``poses`` (where ``mask``, bool ``(C, F, M, K)``, is True; all
    labeled points when None) to ``path`` atomically.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        ValueError: ``mask`` has the wrong shape.
    """
    path = Path(path)
    check_overwrite(path, overwrite)
    labeled = poses.labeled_mask()
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != labeled.shape:
            raise ValueError(f"mask has shape {mask.shape}, expected {labeled.shape} "
                             "(cameras, frames, individuals, keypoints)")
        labeled &= mask
    c_idx, f_idx, m_idx, k_idx = np.nonzero(labeled)
    order = np.lexsort((k_idx, m_idx, c_idx, f_idx))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(LABEL_COLUMNS)
    for i in order:
        c, f, m, k = int(c_idx[i]), int(f_idx[i]), int(m_idx[i]), int(k_idx[i])
        x, y = poses.points2d[c, f, m, k]
        writer.writerow([f, poses.camera_names[c], poses.individual_names[m],
                         poses.keypoint_names[k], repr(float(x)), repr(float(y)),
                         _source_name(int(poses.source[c, f, m, k]))])
    atomic_write_text(path, buf.getvalue())
    return path


def _source_name(code: int) -> str:
    try:
        return Source(code).name.lower()
    except ValueError:
        return "none"


def read_labels_csv(path: str | os.PathLike, poses: PoseTable,
                    source: Source | None = Source.SEED) -> PoseTable:
    """Fill ``poses`` in place with the labels of the CSV at ``path`` and return it.

    Args:
        path: A CSV with the columns of :data:`LABEL_COLUMNS` (``source`` optional).
        poses: The table to fill (its names and frame count define what is valid).
        source: Source given to every label read (default ``SEED``); None keeps each row's
            ``source`` column (then required; ``none`` rows are rejected).

    Raises:
        FileNotFoundError: no file at ``path``.
        LabelsCSVError: a missing column, an unknown camera/individual/keypoint name, a frame
            outside the table, a non-numeric or non-finite coordinate, or a point given twice;
            the message names the file and row (line number).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels CSV not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in _REQUIRED if c not in columns]
        if source is None and "source" not in columns:
            missing.append("source")
        if missing:
            raise LabelsCSVError(f"{path}: missing column(s) {missing}; expected a header "
                                 f"{','.join(LABEL_COLUMNS)}")
        cameras = {n: i for i, n in enumerate(poses.camera_names)}
        individuals = {n: i for i, n in enumerate(poses.individual_names)}
        keypoints = {n: i for i, n in enumerate(poses.keypoint_names)}
        rows = []
        seen: dict[tuple[int, int, int, int], int] = {}
        for line, row in enumerate(reader, start=2):
            where = f"{path}, line {line}"
            c = _lookup(cameras, row["camera"], "camera", where)
            m = _lookup(individuals, row["individual"], "individual", where)
            k = _lookup(keypoints, row["keypoint"], "keypoint", where)
            try:
                f = int(row["frame"])
            except (TypeError, ValueError):
                raise LabelsCSVError(f"{where}: frame {row['frame']!r} is not an integer") from None
            if not 0 <= f < poses.n_frames:
                raise LabelsCSVError(f"{where}: frame {f} is outside the session's frames "
                                     f"0..{poses.n_frames - 1}")
            try:
                x, y = float(row["x"]), float(row["y"])
            except (TypeError, ValueError):
                raise LabelsCSVError(f"{where}: x={row['x']!r}, y={row['y']!r} are not numbers") from None
            if not (math.isfinite(x) and math.isfinite(y)):
                raise LabelsCSVError(f"{where}: x, y must be finite (leave unlabeled points out)")
            src = source if source is not None else _parse_source(row.get("source"), where)
            key = (c, f, m, k)
            if key in seen:
                raise LabelsCSVError(f"{where}: {row['camera']}/{row['individual']}/"
                                     f"{row['keypoint']} at frame {f} is already given on line "
                                     f"{seen[key]}")
            seen[key] = line
            rows.append((key, x, y, src))
    for (c, f, m, k), x, y, src in rows:
        poses.set_label(c, f, m, k, (x, y), source=src)
    return poses


def _lookup(names: dict[str, int], value: str | None, kind: str, where: str) -> int:
    if value not in names:
        raise LabelsCSVError(f"{where}: unknown {kind} {value!r}; known: {sorted(names)}")
    return names[value]


def _parse_source(value: str | None, where: str) -> Source:
    text = (value or "").strip().upper()
    if text not in Source.__members__ or text == "NONE":
        raise LabelsCSVError(f"{where}: source {value!r} is not one of seed, human, model")
    return Source[text]
