"""Stage 4: a lost keypoint found again among the dots nobody holds (pure geometry).

A keypoint the tracker lost (no 3D point) is predicted from the seed pose that best fits its
body (:func:`~napari_behaviorvlm.pose.pipeline.predict_3d`); a tail tip or a paw far from
that pose stays lost for many frames while its dot is in plain view (on the default two-mouse
benchmark session, a tail tip visible in all six views went unlabeled for 57 frames), and a
lost keypoint's dots are free for another keypoint to take.

Here the frame's free dots (held by no label, not given to a decoy) are matched across the
views: ``reacquire_min_views`` (4) or more views whose free dots triangulate to one 3D point
within ``threshold_px`` make a *free point*, a real dot nobody claimed. A free point becomes a
lost keypoint of an individual whose keypoints are at least half located when

- it sits at that keypoint's place on the body: its distances to the keypoint's two most
  rigid located partners (those whose distance to it varied least over the seeds: a tail
  tip's are the tail's, not a paw's) fit the seeds within ``identity_fit``
  (:meth:`~napari_behaviorvlm.pose.refine.BodyModel.point_residuals`);
- it fits there clearly better (``identity_ratio``) than at any other keypoint's place, of
  either individual, lost or located (a located keypoint may hold a wrong dot while its own
  is the free one); the left/right partner is no rival when the point lies more than
  ``own_side_mm`` on the keypoint's side of the body, and a point on the wrong side
  (``side_tolerance_mm``) is not taken;
- ``reacquire_min_views`` of its views remain where no body hides the keypoint.

The best fit goes first; each free point serves one keypoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
import numpy as np

from napari_behaviorvlm.core.skeleton import Skeleton
from napari_behaviorvlm.geometry.camera import CameraGroup
from napari_behaviorvlm.geometry.triangulation import triangulate
from napari_behaviorvlm.geometry.vectors import vector_length
from napari_behaviorvlm.pose.candidates import Candidates

if TYPE_CHECKING:
    from napari_behaviorvlm.pose.refine import BodyModel, RefineParams

__all__ = ["FreePoints", "agreeing_points", "free_dots", "free_points", "reacquire_lost"]

HELD_PX = 1.0  # a candidate this close to a label in its view is held by it
RIGID_PARTNERS = 2  # a free point's place: its distances to the keypoint's most rigid partners
# the brightest free dots of a view that the search pairs (the pairs grow with the square: a
# view full of reflections must not stall a frame; the benchmark sessions have at most 10)
MAX_FREE_DOTS = 24


@attrs.define(eq=False)
class FreePoints:
    """3D points made of dots nobody holds.

    Attributes:
        points3d: ``(P, 3)`` mm.
        dots: int ``(P, C)``: the candidate index each view gives the point (-1 = none).
    """

    points3d: np.ndarray
    dots: np.ndarray

    def __len__(self) -> int:
        return len(self.points3d)


def free_dots(candidates: Sequence[Candidates], labels: np.ndarray, held_px: float = HELD_PX,
              decoy_dots: Sequence[np.ndarray] | None = None, max_dots: int | None = None
              ) -> list[np.ndarray]:
    """Per view, the indices of the candidates no label holds (none within ``held_px`` of a
    label in ``labels`` ``(C, M, K, 2)`` px) and no decoy won (``decoy_dots``, per view bool
    ``(N,)``); at most ``max_dots`` of them, the brightest (None: all)."""
    out = []
    for c, cand in enumerate(candidates):
        free = np.ones(len(cand), bool)
        lab = labels[c].reshape(-1, 2)
        lab = lab[np.isfinite(lab).all(axis=-1)]
        if len(cand) and len(lab):
            free &= vector_length(cand.xy[:, None] - lab[None]).min(axis=1) > held_px
        if decoy_dots is not None and len(decoy_dots[c]) == len(cand):
            free &= ~decoy_dots[c]
        idx = np.flatnonzero(free)
        if max_dots is not None and len(idx) > max_dots:
            idx = np.sort(idx[np.argsort(-cand.peak[idx], kind="stable")[:max_dots]])
        out.append(idx)
    return out


def _support(group: CameraGroup, points3d: np.ndarray, xy: Sequence[np.ndarray],
             agree_px: float) -> tuple[np.ndarray, np.ndarray]:
    """For ``points3d`` ``(P, 3)`` mm: per view the nearest of the dots ``xy[c]`` ``(N_c, 2)``
    closer than ``agree_px`` to the reprojection (its position in ``xy[c]``, -1 = none)
    ``(P, C)``, and its distance ``(P, C)`` px (inf = none)."""
    proj = group.project(points3d)  # (C, P, 2)
    n_pts = len(points3d)
    pick = np.full((n_pts, len(xy)), -1)
    dist = np.full((n_pts, len(xy)), np.inf)
    for c, pts in enumerate(xy):
        if len(pts) == 0 or n_pts == 0:
            continue
        d = np.nan_to_num(vector_length(proj[c][:, None] - pts[None]), nan=np.inf)  # (P, n)
        j = d.argmin(axis=1)
        best = d[np.arange(n_pts), j]
        ok = best < agree_px
        pick[ok, c], dist[ok, c] = j[ok], best[ok]
    return pick, dist


def agreeing_points(group: CameraGroup, xy: Sequence[np.ndarray], agree_px: float,
                    min_views: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of dots from two views (``xy[c]`` ``(N_c, 2)`` px), triangulated; the points
    that ``min_views`` or more views support (a dot closer than ``agree_px`` to the
    reprojection), in view-pair order: ``(P, 3)`` mm and the supporting dots ``(P, C)``
    (positions in ``xy[c]``, -1 = none)."""
    n_cam = len(xy)
    blocks = []
    for c1 in range(n_cam):
        for c2 in range(c1 + 1, n_cam):
            a, b = xy[c1], xy[c2]
            if not len(a) or not len(b):
                continue
            pts = np.full((n_cam, len(a), len(b), 2), np.nan)
            pts[c1] = a[:, None]
            pts[c2] = b[None]
            blocks.append(pts.reshape(n_cam, -1, 2))
    if not blocks:
        return np.zeros((0, 3)), np.zeros((0, n_cam), int)
    x3 = triangulate(np.concatenate(blocks, axis=1), group)
    x3 = x3[np.isfinite(x3).all(axis=-1)]
    pick, _ = _support(group, x3, xy, agree_px)
    keep = (pick >= 0).sum(axis=1) >= min_views
    return x3[keep], pick[keep]


def free_points(group: CameraGroup, candidates: Sequence[Candidates], labels: np.ndarray,
                agree_px: float, min_views: int = 3,
                decoy_dots: Sequence[np.ndarray] | None = None) -> FreePoints:
    """The 3D points that ``min_views`` or more views' free dots (:func:`free_dots`, the
    ``MAX_FREE_DOTS`` brightest of a view) agree on (:func:`agreeing_points`), each refit on its
    supporting dots and checked again; each dot serves one point (the best supported first, then
    the smallest reprojection error).

    Args:
        group: The cameras (axis ``C``).
        candidates: Per view, the candidates.
        labels: ``(C, M, K, 2)`` px, the frame's labels (a candidate within 1 px is held).
        agree_px: A view supports a point with a free dot this close to its reprojection.
        min_views: Views a free point needs.
        decoy_dots: Per view, bool ``(N,)``: dots a decoy won (never free).
    """
    n_cam = len(candidates)
    free = free_dots(candidates, labels, HELD_PX, decoy_dots, MAX_FREE_DOTS)
    xy = [candidates[c].xy[free[c]] for c in range(n_cam)]
    x3, pick = agreeing_points(group, xy, agree_px, min_views)
    empty = FreePoints(np.zeros((0, 3)), np.zeros((0, n_cam), int))
    if not len(x3):
        return empty
    pts = np.full((n_cam, len(pick), 2), np.nan)
    for c in range(n_cam):
        has = pick[:, c] >= 0
        pts[c, has] = xy[c][pick[has, c]]
    x3 = triangulate(pts, group)
    pick, dist = _support(group, x3, xy, agree_px)
    n_sup = (pick >= 0).sum(axis=1)
    mean_err = np.where(pick >= 0, dist, 0.0).sum(axis=1) / np.maximum(n_sup, 1)
    points, dots = [], []
    used: list[set[int]] = [set() for _ in range(n_cam)]
    for p in np.lexsort((mean_err, -n_sup)):
        views = np.flatnonzero(pick[p] >= 0)
        if n_sup[p] < min_views or not np.isfinite(x3[p]).all() \
                or any(pick[p, c] in used[c] for c in views):
            continue
        for c in views:
            used[c].add(pick[p, c])
        points.append(x3[p])
        dots.append([free[c][pick[p, c]] if pick[p, c] >= 0 else -1 for c in range(n_cam)])
    if not points:
        return empty
    return FreePoints(np.array(points), np.array(dots))


def reacquire_lost(group: CameraGroup, skeleton: Skeleton, body: BodyModel, x3: np.ndarray,
                   obs: np.ndarray, human: np.ndarray, index: np.ndarray,
                   candidates: Sequence[Candidates], params: RefineParams,
                   hidden: np.ndarray | None = None,
                   decoy_dots: Sequence[np.ndarray] | None = None) -> bool:
    """Give lost model keypoints the free points at their places on the body (module
    docstring). ``x3`` ``(M, K, 3)`` mm, ``obs`` ``(C, M, K, 2)`` px and ``index`` ``(C, M,
    K)`` are updated in place; ``human`` ``(C, M, K)`` labels never move; ``hidden`` ``(C, M,
    K)``: views where a body hides the keypoint. Returns whether anything changed."""
    min_views = params.reacquire_min_views
    lost = ~np.isfinite(x3).all(axis=-1) & ~human.any(axis=0)
    if min_views < 2 or not lost.any():
        return False
    found = free_points(group, candidates, obs, params.threshold_px, min_views, decoy_dots)
    if len(found) == 0:
        return False
    n_ind, n_kp = x3.shape[:2]
    located = np.isfinite(x3).all(axis=-1)
    # an individual found again on a body that is itself mostly lost would follow it astray
    lost &= (located.sum(axis=1) * 2 >= n_kp)[:, None]
    lost_ids = [(int(m), int(k)) for m, k in np.argwhere(lost)]
    mirror = skeleton.mirror_index()
    options = []
    for p, point in enumerate(found.points3d):
        res = body.point_residuals(x3, point, RIGID_PARTNERS, RIGID_PARTNERS)  # (M, K)
        for m, k in lost_ids:
            fit = res[m, k]
            if not fit <= params.identity_fit:
                continue
            own_side = 0.0  # a keypoint without a side (the tail) has no partner to spare
            if body.side[m, k] != 0:
                trial = x3.copy()
                trial[m, k] = point
                own_side = np.nan_to_num(body.lateral(trial)[m, k] * body.side[m, k], nan=0.0)
                if own_side < -params.side_tolerance_mm:
                    continue
            # rivals: every other keypoint, lost or not (a located one may hold a wrong dot
            # while its own is the free one), but not the left/right partner when the side
            # tells them apart
            rival = np.ones((n_ind, n_kp), bool)
            rival[m, k] = False
            if own_side > params.own_side_mm:
                rival[m, mirror[k]] = False
            if (params.identity_ratio * fit + 0.3 >= np.nan_to_num(res[rival], nan=np.inf)).any():
                continue
            options.append((float(fit), p, m, k))
    changed = False
    taken: set[int] = set()
    for _, p, m, k in sorted(options):
        if p in taken or np.isfinite(x3[m, k]).all():
            continue
        views = found.dots[p] >= 0
        if hidden is not None:
            views &= ~hidden[:, m, k]
        if views.sum() < min_views:
            continue
        for c in np.flatnonzero(views):
            index[c, m, k] = found.dots[p, c]
            obs[c, m, k] = candidates[c].xy[found.dots[p, c]]
        x3[m, k] = found.points3d[p]
        taken.add(p)
        changed = True
    return changed
