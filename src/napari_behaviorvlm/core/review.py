"""The review queue: the doubtful labels a run flagged, and what the user does with them.

No Qt: the napari Review widget lists :func:`review_items`, jumps with
:func:`next_flagged_frame` and calls :func:`accept_labels`; a script can do the same.
"""

from __future__ import annotations

import attrs
import numpy as np

from napari_behaviorvlm.core.pose import PoseTable, Source, flag_reasons
from napari_behaviorvlm.core.project import Project

__all__ = ["ReviewCounts", "ReviewItem", "accept_labels", "flagged_mask", "next_flagged_frame",
           "review_counts", "review_items"]


@attrs.frozen
class ReviewItem:
    """One flagged 2D label.

    Attributes:
        frame: Session frame. camera/individual/keypoint: names.
        flags: The :class:`~napari_behaviorvlm.core.pose.Flag` bitmask; reasons: its texts.
        confidence: 0..1. reproj_error: px (NaN when unknown).
    """

    frame: int
    camera: str
    individual: str
    keypoint: str
    flags: int
    reasons: tuple[str, ...]
    confidence: float
    reproj_error: float

    def describe(self) -> str:
        err = "" if np.isnan(self.reproj_error) else f", {self.reproj_error:.1f} px"
        return (f"frame {self.frame} {self.camera} {self.individual}/{self.keypoint}: "
                f"{', '.join(self.reasons)} (conf {self.confidence:.2f}{err})")


def flagged_mask(poses: PoseTable) -> np.ndarray:
    """Bool ``(C, F, M, K)``: labels (a 2D position is present) carrying a flag. Flags on
    missing labels (a keypoint not found in a view) have nothing to drag and are not listed."""
    return (poses.flags != 0) & poses.labeled_mask()


def review_items(poses: PoseTable, frames: list[int] | None = None) -> list[ReviewItem]:
    """Every flagged label (optionally only in ``frames``), ordered by frame, camera, individual,
    keypoint."""
    flags = poses.flags
    c, f, m, k = np.nonzero(flagged_mask(poses))
    if frames is not None:
        keep = np.isin(f, np.asarray(frames, dtype=int))
        c, f, m, k = c[keep], f[keep], m[keep], k[keep]
    order = np.lexsort((k, m, c, f))
    return [
        ReviewItem(
            frame=int(f[i]), camera=poses.camera_names[c[i]],
            individual=poses.individual_names[m[i]], keypoint=poses.keypoint_names[k[i]],
            flags=int(flags[c[i], f[i], m[i], k[i]]),
            reasons=tuple(flag_reasons(int(flags[c[i], f[i], m[i], k[i]]))),
            confidence=float(poses.confidence[c[i], f[i], m[i], k[i]]),
            reproj_error=float(poses.reproj_error[c[i], f[i], m[i], k[i]]),
        )
        for i in order
    ]


@attrs.frozen
class ReviewCounts:
    """What is left to review: flagged labels and frames holding at least one."""

    labels: int
    frames: int


def review_counts(poses: PoseTable) -> ReviewCounts:
    flagged = flagged_mask(poses)
    return ReviewCounts(labels=int(flagged.sum()), frames=int(flagged.any(axis=(0, 2, 3)).sum()))


def next_flagged_frame(poses: PoseTable, current: int, direction: int = 1,
                       wrap: bool = True) -> int | None:
    """The next (``direction=1``) or previous (``-1``) frame with a flagged label, strictly after
    (before) ``current``; wraps around when ``wrap``; None when nothing is flagged."""
    if direction not in (1, -1):
        raise ValueError(f"direction must be 1 or -1, not {direction}")
    frames = np.nonzero(flagged_mask(poses).any(axis=(0, 2, 3)))[0]
    if not len(frames):
        return None
    if direction == 1:
        later = frames[frames > current]
        if len(later):
            return int(later[0])
        return int(frames[0]) if wrap else None
    earlier = frames[frames < current]
    if len(earlier):
        return int(earlier[-1])
    return int(frames[-1]) if wrap else None


def accept_labels(project: Project, frame: int, camera: str | int | None = None,
                  individual: str | int | None = None, keypoint: str | int | None = None) -> int:
    """The user checked flagged labels and agrees: they become human labels at their current
    position (confidence 1, no flag, never overwritten by a run, part of the next run's
    few-shot window). ``None`` selects all cameras/individuals/keypoints of ``frame``.

    Returns:
        The number of labels accepted.
    """
    from napari_behaviorvlm.core.labeling import update_frame_geometry

    poses = project.poses
    sel_c = slice(None) if camera is None else poses.camera_index(camera)
    sel_m = slice(None) if individual is None else poses.individual_index(individual)
    sel_k = slice(None) if keypoint is None else poses.keypoint_index(keypoint)
    flags = poses.flags[:, frame]
    mask = np.zeros(flags.shape, dtype=bool)
    mask[sel_c, sel_m, sel_k] = True
    mask &= flags != 0
    if not mask.any():
        return 0
    labeled = mask & np.isfinite(poses.points2d[:, frame, ..., 0])
    source = poses.source[:, frame]
    source[labeled & (source != int(Source.SEED))] = int(Source.HUMAN)
    poses.confidence[:, frame][labeled] = 1.0
    flags[mask] = 0
    update_frame_geometry(project, frame)
    # retriangulation may flag again what the human just accepted: a human label is final
    poses.flags[:, frame][mask] = 0
    return int(mask.sum())
