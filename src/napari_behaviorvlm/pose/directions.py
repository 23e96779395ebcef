"""Both directions through a stretch of frames: the choice per keypoint (pure arrays, no I/O).

A labeling run labels each frame in one direction, from its nearer seed: forward from the
earlier seed up to a gap's midpoint, backward from the later one after it, backward from the
first seed down to frame 0 and forward from the last seed to the session's end. With
``both_directions`` (:class:`~napari_behaviorvlm.pose.pipeline.LabelingConfig`) each such
stretch is labeled in the other direction too (a gap from both of its seeds; the frames
before the first seed forward from frame 0, those after the last backward from the last
frame), and where the two labelings disagree on a keypoint, the track that fits better is
kept. A wrong track mostly starts where a paw takes another keypoint's dot and ends where it
comes back; labeled from the other side, the same stretch is mostly right (on the five 2-mouse
benchmark sessions, of the 16-78 keypoints a forward labeling of the whole gaps swapped, only
7-18 were swapped the same way by the backward one, docs/pose-pipeline.md).

For each keypoint, a *disagreement run* is a stretch of consecutive gap frames where the two
labelings place it more than ``DISAGREE_MM`` apart (or one of them leaves it without a 3D
point). Each run is decided as a whole; outside the runs the two agree and the frame keeps its
default labels. A track's cost over a run is

    doubted share + PLACE_WEIGHT * place residual + jump / JUMP_SCALE_MM

- *doubted share*: the run's frames where the track's keypoint carries a steering flag or has
  no 3D point;
- *place residual*: :meth:`~napari_behaviorvlm.pose.refine.BodyModel.place_residuals` of the
  track's point as itself, against the keypoints of its individual on which both labelings
  agree, averaged over the run (``MISSING_PLACE`` where there is none): a paw on the other
  mouse's tail fits its own place on the body badly;
- *jump*: at each end of the run, the distance from the track's point to the agreed labels
  just outside the run, extrapolated at constant velocity from the 2 agreed frames there (or
  the 1 agreed frame), averaged over the ends: a track that left its dot jumps at both ends.

The cheaper track wins; an exact tie keeps the default labels. Weights: tuned on the five
2-mouse sessions' logged labelings; the outcome moved by at most 0.02 points of swap rate over
``PLACE_WEIGHT`` 0.25-1 and ``JUMP_SCALE_MM`` 10-40 mm (docs/pose-pipeline.md).
"""

from __future__ import annotations

import numpy as np

from napari_behaviorvlm.pose.refine import BodyModel

__all__ = ["DISAGREE_MM", "choose_backward", "disagreement_runs", "own_place_residual"]

DISAGREE_MM = 2.0
PLACE_WEIGHT = 0.5
JUMP_SCALE_MM = 10.0
MISSING_PLACE = 2.0


def disagreement_runs(forward3d: np.ndarray, backward3d: np.ndarray,
                      tolerance_mm: float = DISAGREE_MM) -> list[tuple[int, int, int, int]]:
    """Stretches where two labelings disagree on a keypoint.

    Args:
        forward3d, backward3d: ``(F, M, K, 3)`` mm, NaN = no 3D point.
        tolerance_mm: Points closer than this agree; two missing points agree too.

    Returns:
        ``(individual, keypoint, first frame, last frame)`` (inclusive) per run, frames as
        indices into axis 0.
    """
    located_f = np.isfinite(forward3d).all(axis=-1)
    located_b = np.isfinite(backward3d).all(axis=-1)
    with np.errstate(invalid="ignore"):
        close = np.linalg.norm(forward3d - backward3d, axis=-1) <= tolerance_mm
    disagree = ~(close | (~located_f & ~located_b))  # (F, M, K)
    runs = []
    for m, k in zip(*np.nonzero(disagree.any(axis=0))):
        frames = np.flatnonzero(disagree[:, m, k])
        breaks = np.flatnonzero(np.diff(frames) > 1)
        for first, last in zip(np.r_[frames[0], frames[breaks + 1]], np.r_[frames[breaks], frames[-1]]):
            runs.append((int(m), int(k), int(first), int(last)))
    return runs


def choose_backward(forward3d: np.ndarray, backward3d: np.ndarray, forward_doubt: np.ndarray,
                    backward_doubt: np.ndarray, body: BodyModel, nearer_backward: np.ndarray,
                    tolerance_mm: float = DISAGREE_MM) -> np.ndarray:
    """Which keypoints take the backward labeling (see the module docstring).

    Args:
        forward3d, backward3d: ``(F, M, K, 3)`` mm over a stretch, labeled forward from its
            first frame and backward from its last (NaN = no 3D point). The two end frames
            (seeds, or the session's first or last frame) may be included: the two agree there.
        forward_doubt, backward_doubt: ``(F, M, K)`` bool, the keypoint carries a steering flag
            in some view or has no 3D point.
        body: Shape priors from the seeds.
        nearer_backward: ``(F,)`` bool, the default run labeled the frame backward (ties and
            agreement keep the default labels).

    Returns:
        ``(F, M, K)`` bool: take the backward labeling's keypoint.
    """
    take = np.broadcast_to(np.asarray(nearer_backward, bool)[:, None, None],
                           forward3d.shape[:3]).copy()
    with np.errstate(invalid="ignore"):
        agree = np.linalg.norm(forward3d - backward3d, axis=-1) <= tolerance_mm
    for m, k, first, last in disagreement_runs(forward3d, backward3d, tolerance_mm):
        cost_f = _track_cost(forward3d, forward_doubt, forward3d, agree, body, m, k, first, last)
        cost_b = _track_cost(backward3d, backward_doubt, forward3d, agree, body, m, k, first,
                             last)
        if cost_b != cost_f:
            take[first:last + 1, m, k] = cost_b < cost_f
    return take


def _track_cost(track3d: np.ndarray, doubt: np.ndarray, agreed3d: np.ndarray, agree: np.ndarray,
                body: BodyModel, m: int, k: int, first: int, last: int) -> float:
    """The cost of one labeling's track of keypoint ``(m, k)`` over frames ``first..last``;
    ``agreed3d`` holds the labels where ``agree`` says both labelings agree."""
    run = slice(first, last + 1)
    doubted = float(doubt[run, m, k].mean())
    places = [own_place_residual(body, track3d[f, m, k], agreed3d[f], agree[f], m, k)
              for f in range(first, last + 1)]
    places = [p for p in places if np.isfinite(p)]
    place = float(np.mean(places)) if places else MISSING_PLACE
    jumps = []
    for end, step in ((first, -1), (last, +1)):
        if not np.isfinite(track3d[end, m, k]).all():
            continue
        outside = [end + step * i for i in (1, 2)]
        known = [f for f in outside if 0 <= f < len(track3d) and agree[f, m, k]
                 and np.isfinite(agreed3d[f, m, k]).all()]
        if len(known) == 2 and known[0] == end + step:
            expected = 2.0 * agreed3d[known[0], m, k] - agreed3d[known[1], m, k]
        elif known and known[0] == end + step:
            expected = agreed3d[known[0], m, k]
        else:
            continue
        jumps.append(float(np.linalg.norm(track3d[end, m, k] - expected)))
    jump = float(np.mean(jumps)) if jumps else 0.0
    return doubted + PLACE_WEIGHT * place + jump / JUMP_SCALE_MM


def own_place_residual(body: BodyModel, point: np.ndarray, agreed3d: np.ndarray,
                       agree: np.ndarray, m: int, k: int) -> float:
    """How badly ``point`` ``(3,)`` mm sits at keypoint ``(m, k)``'s own place on the body
    (:meth:`~napari_behaviorvlm.pose.refine.BodyModel.place_residuals`), against the points of
    ``agreed3d`` ``(M, K, 3)`` where ``agree`` ``(M, K)`` says two labelings agree. NaN when
    ``point`` is missing or too few agreed partners are located."""
    if not np.isfinite(point).all():
        return float("nan")
    x = np.where(agree[..., None], agreed3d, np.nan)
    x[m, k] = point
    return float(body.place_residuals(x)[m, k, k])
