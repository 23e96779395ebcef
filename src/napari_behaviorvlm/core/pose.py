"""The pose table: every keypoint label of a session, 2D per camera and 3D, with provenance.

This is the single source of truth that napari layers, exporters and the benchmarks read.

Axes and units (``C`` cameras, ``F`` frames, ``M`` individuals, ``K`` keypoints):

- ``points2d``  float64 ``(C, F, M, K, 2)``: ``x, y`` in pixels of that camera's image (origin at
  the top-left pixel's centre, x to the right, y down); NaN where there is no label.
- ``confidence`` float32 ``(C, F, M, K)``: 0..1, 1 for human and seed labels; NaN where no label.
- ``source``     int8 ``(C, F, M, K)``: a :class:`Source` code.
- ``reproj_error`` float32 ``(C, F, M, K)``: distance in px between the 2D label and the
  reprojection of the 3D point into that camera; NaN where either is missing.
- ``flags``      uint16 ``(C, F, M, K)``: a bitwise OR of :class:`Flag` reasons; 0 = not flagged.
- ``points3d``   float64 ``(F, M, K, 3)``: ``x, y, z`` in millimetres in the calibration's world
  frame; NaN where not triangulated.
- ``n_views``    int8 ``(F, M, K)``: number of cameras used for the 3D point.

Frame indices are session frames (0-based), the same for every camera after frame offsets.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import attrs
import numpy as np

__all__ = ["STEERING_FLAGS", "Flag", "PoseTable", "Source", "flag_reasons"]


class Source(enum.IntEnum):
    """Where a 2D label came from. Human and seed labels are never overwritten by a model run."""

    NONE = 0
    SEED = 1
    HUMAN = 2
    MODEL = 3

    @property
    def is_human(self) -> bool:
        return self in (Source.SEED, Source.HUMAN)


class Flag(enum.IntFlag):
    """Reasons a label is doubtful and should be reviewed (bit flags).

    The rules that raise them are in :mod:`napari_behaviorvlm.pose.refine` (docs:
    pose-pipeline.md, "Flags"): ``SWAP`` covers any identity doubt (left/right partner, the
    other mouse, another body part's place, the wrong side of the body); ``AMBIGUOUS`` a label
    nothing confirms (a close call or a 2-view point away from the prediction) or a 2-view
    pose outside the seeds' distance ranges; ``OFF_RIGID_PAIR`` a member of a rigid left/right
    pair (the ears) away from both its partner and the body's midline; ``LOW_CONFIDENCE`` a 3D
    point whose model labels' confidence averages low (a 2-view point: its weaker label's).
    Every flag but ``OFF_RIGID_PAIR`` and ``LOW_CONFIDENCE`` also steers the labeling run
    (:data:`STEERING_FLAGS`).
    """

    HIGH_REPROJ_ERROR = 1
    FEW_VIEWS = 2
    JUMP = 4
    SWAP = 8
    LOW_MODEL_CONFIDENCE = 16
    AMBIGUOUS = 32
    OFF_RIGID_PAIR = 64
    LOW_CONFIDENCE = 128


FLAG_DESCRIPTIONS: dict[Flag, str] = {
    Flag.HIGH_REPROJ_ERROR: "high reprojection error",
    Flag.FEW_VIEWS: "seen in fewer than 2 views",
    Flag.JUMP: "jump against the previous frame",
    Flag.SWAP: "possible swap: left/right, other mouse or another keypoint's place",
    Flag.LOW_MODEL_CONFIDENCE: "low model confidence",
    Flag.AMBIGUOUS: "ambiguous or unconfirmed (few views, off the window or the body shape)",
    Flag.OFF_RIGID_PAIR: "away from its rigid partner and the body (an ear off the other ear and the neck)",
    Flag.LOW_CONFIDENCE: "low confidence (few views that disagree a little, a close call)",
}

#: The flags a labeling run treats as doubts about the label (re-anchoring, revisits): all but
#: ``OFF_RIGID_PAIR`` and ``LOW_CONFIDENCE``, which are shown for review only (steering by
#: ``OFF_RIGID_PAIR`` helped one mouse and hurt two on the benchmark sessions,
#: docs/pose-pipeline.md).
STEERING_FLAGS = int(Flag.HIGH_REPROJ_ERROR | Flag.FEW_VIEWS | Flag.JUMP | Flag.SWAP
                     | Flag.LOW_MODEL_CONFIDENCE | Flag.AMBIGUOUS)


def flag_reasons(bits: int) -> list[str]:
    """Human-readable reasons for a flag bitmask, in a fixed order."""
    return [text for flag, text in FLAG_DESCRIPTIONS.items() if int(bits) & int(flag)]


HUMAN_SOURCES = np.array([int(Source.SEED), int(Source.HUMAN)], dtype=np.int8)


def _names(value: Sequence[str]) -> list[str]:
    return [str(v) for v in value]


@attrs.define(eq=False)
class PoseTable:
    """All 2D and 3D keypoint labels of a session (see the module docstring for shapes/units).

    Build an empty one with :meth:`empty`; arrays are plain numpy arrays you may read directly.
    Write 2D labels through :meth:`set_label` (or assign arrays and call :meth:`validate`).
    """

    camera_names: list[str] = attrs.field(converter=_names)
    keypoint_names: list[str] = attrs.field(converter=_names)
    individual_names: list[str] = attrs.field(converter=_names)
    points2d: np.ndarray
    confidence: np.ndarray
    source: np.ndarray
    reproj_error: np.ndarray
    flags: np.ndarray
    points3d: np.ndarray
    n_views: np.ndarray

    def __attrs_post_init__(self) -> None:
        self.validate()

    @classmethod
    def empty(
        cls,
        camera_names: Sequence[str],
        n_frames: int,
        individual_names: Sequence[str],
        keypoint_names: Sequence[str],
    ) -> PoseTable:
        """A table with no labels: NaN positions, source NONE, no flags."""
        c, f, m, k = len(camera_names), int(n_frames), len(individual_names), len(keypoint_names)
        return cls(
            camera_names=camera_names,
            keypoint_names=keypoint_names,
            individual_names=individual_names,
            points2d=np.full((c, f, m, k, 2), np.nan),
            confidence=np.full((c, f, m, k), np.nan, dtype=np.float32),
            source=np.zeros((c, f, m, k), dtype=np.int8),
            reproj_error=np.full((c, f, m, k), np.nan, dtype=np.float32),
            flags=np.zeros((c, f, m, k), dtype=np.uint16),
            points3d=np.full((f, m, k, 3), np.nan),
            n_views=np.zeros((f, m, k), dtype=np.int8),
        )

    # ----------------------------------------------------------------- shape
    @property
    def n_cameras(self) -> int:
        return len(self.camera_names)

    @property
    def n_frames(self) -> int:
        return int(self.points2d.shape[1])

    @property
    def n_individuals(self) -> int:
        return len(self.individual_names)

    @property
    def n_keypoints(self) -> int:
        return len(self.keypoint_names)

    def validate(self) -> None:
        """Check array shapes and dtypes against the names; coerce dtypes.

        Raises:
            ValueError: naming the array whose shape is wrong.
        """
        c, m, k = self.n_cameras, self.n_individuals, self.n_keypoints
        f = np.asarray(self.points2d).shape[1] if np.ndim(self.points2d) == 5 else -1
        expected = {
            "points2d": ((c, f, m, k, 2), np.float64),
            "confidence": ((c, f, m, k), np.float32),
            "source": ((c, f, m, k), np.int8),
            "reproj_error": ((c, f, m, k), np.float32),
            "flags": ((c, f, m, k), np.uint16),
            "points3d": ((f, m, k, 3), np.float64),
            "n_views": ((f, m, k), np.int8),
        }
        for name, (shape, dtype) in expected.items():
            arr = np.asarray(getattr(self, name))
            if arr.shape != shape:
                raise ValueError(
                    f"PoseTable.{name} has shape {arr.shape}, expected {shape} "
                    f"(cameras, frames, individuals, keypoints = {c}, {f}, {m}, {k})"
                )
            setattr(self, name, np.ascontiguousarray(arr, dtype=dtype))

    # ----------------------------------------------------------------- indexing
    def camera_index(self, camera: str | int) -> int:
        return camera if isinstance(camera, (int, np.integer)) else self.camera_names.index(camera)

    def keypoint_index(self, keypoint: str | int) -> int:
        if isinstance(keypoint, (int, np.integer)):
            return int(keypoint)
        return self.keypoint_names.index(keypoint)

    def individual_index(self, individual: str | int) -> int:
        if isinstance(individual, (int, np.integer)):
            return int(individual)
        return self.individual_names.index(individual)

    # ----------------------------------------------------------------- editing
    def set_label(
        self,
        camera: str | int,
        frame: int,
        individual: str | int,
        keypoint: str | int,
        xy: Sequence[float] | None,
        source: Source = Source.HUMAN,
        confidence: float | None = None,
    ) -> None:
        """Set (or with ``xy=None`` clear) one 2D label.

        Human and seed labels get confidence 1 and lose any flag; clearing sets source NONE.
        3D positions are not recomputed here (see ``geometry.triangulation``).
        """
        c = self.camera_index(camera)
        i = self.individual_index(individual)
        k = self.keypoint_index(keypoint)
        if xy is None:
            self.points2d[c, frame, i, k] = np.nan
            self.confidence[c, frame, i, k] = np.nan
            self.source[c, frame, i, k] = Source.NONE
        else:
            self.points2d[c, frame, i, k] = np.asarray(xy, dtype=np.float64)
            self.source[c, frame, i, k] = int(source)
            if Source(source).is_human:
                confidence = 1.0
            self.confidence[c, frame, i, k] = np.nan if confidence is None else confidence
        self.flags[c, frame, i, k] = 0
        self.reproj_error[c, frame, i, k] = np.nan

    def human_mask(self, frame: int | None = None) -> np.ndarray:
        """Bool ``(C, F, M, K)``: labels from a seed or a human (never overwritten by a model);
        ``(C, M, K)`` for one ``frame``."""
        source = self.source if frame is None else self.source[:, frame]
        return np.isin(source, HUMAN_SOURCES)

    def labeled_mask(self) -> np.ndarray:
        """Bool ``(C, F, M, K)``: a 2D position is present."""
        return ~np.isnan(self.points2d[..., 0])

    def seed_frames(self) -> list[int]:
        """Frames holding at least one seed label, ascending."""
        return sorted(int(f) for f in np.unique(np.nonzero(self.source == Source.SEED)[1]))

    def human_frames(self) -> list[int]:
        """Frames holding at least one seed or human label, ascending."""
        return sorted(int(f) for f in np.unique(np.nonzero(self.human_mask())[1]))

    def flagged_frames(self) -> list[int]:
        """Frames with at least one flagged label, ascending."""
        return sorted(int(f) for f in np.unique(np.nonzero(self.flags)[1]))

    def merge_model_results(self, other: PoseTable, frames: Sequence[int] | None = None) -> None:
        """Copy ``other``'s labels into this table for ``frames`` (all when None), in place,
        keeping every seed and human label of this table untouched.

        ``other`` must have the same cameras, individuals and keypoints.
        """
        if (other.camera_names, other.individual_names, other.keypoint_names) != (
            self.camera_names, self.individual_names, self.keypoint_names
        ):
            raise ValueError("Pose tables differ in cameras, individuals or keypoints")
        sel = np.arange(self.n_frames) if frames is None else np.asarray(list(frames), dtype=int)
        keep = self.human_mask()[:, sel]
        for name in ("points2d", "confidence", "source", "reproj_error", "flags"):
            mine, theirs = getattr(self, name), getattr(other, name)
            block = mine[:, sel]
            mask = ~keep if name != "points2d" else ~keep[..., None].repeat(2, -1)
            block[mask] = theirs[:, sel][mask]
            mine[:, sel] = block
        self.points3d[sel] = other.points3d[sel]
        self.n_views[sel] = other.n_views[sel]

    # ----------------------------------------------------------------- (de)serialisation
    ARRAY_FIELDS = (
        "points2d", "confidence", "source", "reproj_error", "flags", "points3d", "n_views",
    )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays by field name (for lossless saving)."""
        return {name: getattr(self, name) for name in self.ARRAY_FIELDS}

    def names(self) -> dict[str, list[str]]:
        return {
            "camera_names": list(self.camera_names),
            "keypoint_names": list(self.keypoint_names),
            "individual_names": list(self.individual_names),
        }

    @classmethod
    def from_arrays(cls, names: dict[str, list[str]], arrays: dict[str, np.ndarray]) -> PoseTable:
        return cls(**names, **{name: np.asarray(arrays[name]) for name in cls.ARRAY_FIELDS})

    def copy(self) -> PoseTable:
        return PoseTable.from_arrays(self.names(), {k: v.copy() for k, v in self.to_arrays().items()})

    def equals(self, other: PoseTable) -> bool:
        """True when names and every array are identical (NaN equal to NaN)."""
        if self.names() != other.names():
            return False
        return all(
            np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
            for a, b in zip(self.to_arrays().values(), other.to_arrays().values())
        )
