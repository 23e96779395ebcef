"""Vectorized multi-view triangulation: weighted DLT, reprojection errors, RANSAC over views.

Conventions:

- ``points2d`` has shape ``(C, ..., 2)``: one row per camera of the :class:`CameraGroup`, in the
  group's order, then any number of point axes (frames, keypoints, ...), then ``(x, y)`` in
  **distorted** image pixels (what a detector or a human clicks). NaN marks a missing view.
- ``weights`` has shape ``(C, ...)``: a confidence per view and point (>= 0; 0 or NaN ignores the
  view). Weights scale the DLT rows, so only their ratios across views matter.
- 3D points are ``(..., 3)`` world millimetres; NaN where fewer than 2 views were usable.

Every function works on all points at once: the pixels are undistorted per camera in one OpenCV
call, the DLT systems of every point are built column by column as ``(2C, N)`` arrays and each
point's least-squares solution of ``A [X, 1]^T = 0`` comes from its 3 x 3 normal equations,
solved in closed form for every point at once. World coordinates are centred and scaled on the cameras
before solving (Hartley-style conditioning), so noise-free points come back to ~1e-9 mm.
"""

from __future__ import annotations

from itertools import combinations

import attrs
import numpy as np

from napari_behaviorvlm.geometry.camera import CameraGroup, rig_arrays
from napari_behaviorvlm.geometry.vectors import vector_length

__all__ = ["TriangulationResult", "reprojection_errors", "triangulate", "triangulate_ransac"]

# Points x camera pairs evaluated at once by triangulate_ransac (bounds its memory).
_PAIR_BATCH = 20000


def _check_points2d(points2d, group: CameraGroup) -> np.ndarray:
    points2d = np.asarray(points2d, dtype=np.float64)
    if points2d.ndim < 2 or points2d.shape[-1] != 2:
        raise ValueError(f"points2d must have shape (C, ..., 2), got {points2d.shape}")
    if points2d.shape[0] != len(group):
        raise ValueError(
            f"points2d has {points2d.shape[0]} views but the calibration has {len(group)} cameras "
            f"({', '.join(group.names)}); the first axis must follow the calibration's camera order"
        )
    return points2d


def _check_weights(weights, shape: tuple[int, ...]) -> np.ndarray:
    if weights is None:
        return np.ones(shape)
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != shape:
        raise ValueError(f"weights must have shape {shape} (C, ...), got {weights.shape}")
    weights = np.where(np.isfinite(weights), weights, 0.0)
    if (weights < 0).any():
        raise ValueError("weights must be >= 0 (a confidence per view and point)")
    return weights


def _undistort_all(points2d: np.ndarray, group: CameraGroup) -> np.ndarray:
    """(C, N, 2) distorted px -> (C, N, 2) normalized undistorted coordinates (NaN kept)."""
    return np.stack([cam.undistort(points2d[i]) for i, cam in enumerate(group)])


def _dlt(norm: np.ndarray, weights: np.ndarray, proj: np.ndarray, origin: np.ndarray,
         scale: float, min_views: int = 2) -> np.ndarray:
    """Weighted linear triangulation on normalized coordinates, all points at once.

    Each usable view adds the two DLT rows ``x P3 - P1`` and ``y P3 - P2`` (scaled by its
    weight) to the point's system ``A [X, 1]^T = 0``; the least-squares solution comes from the
    3 x 3 normal equations, solved in closed form (adjugate) for every point at once.

    Args:
        norm: (K, *S, 2) undistorted normalized image coordinates, NaN = missing.
        weights: (K, *S) row weights (0 = ignore the view).
        proj: conditioned projection matrices of the K views, broadcastable to (K, *S, 3, 4):
            (K, 1, 3, 4) for the same cameras at every point.

    Returns:
        (*S, 3) world mm; NaN where fewer than ``min_views`` views have a positive weight.
    """
    valid = np.isfinite(norm).all(axis=-1) & (weights > 0)
    w = np.where(valid, weights, 0.0)
    x = np.where(valid, norm[..., 0], 0.0) * w
    y = np.where(valid, norm[..., 1], 0.0) * w
    # A's columns, each (2K, N): rows x * P3 - P1 then y * P3 - P2, scaled by the weight
    cols = [np.concatenate([x * proj[..., 2, j] - w * proj[..., 0, j],
                            y * proj[..., 2, j] - w * proj[..., 1, j]]) for j in range(4)]

    def dot(i: int, j: int) -> np.ndarray:  # (A^T A)[i, j] for every point, (*S,)
        return np.einsum("k...,k...->...", cols[i], cols[j])

    a, b, c, d, e, f = dot(0, 0), dot(0, 1), dot(0, 2), dot(1, 1), dot(1, 2), dot(2, 2)
    r0, r1, r2 = -dot(0, 3), -dot(1, 3), -dot(2, 3)
    adj00, adj01, adj02 = d * f - e * e, c * e - b * f, b * e - c * d
    adj11, adj12, adj22 = a * f - c * c, b * c - a * e, a * d - b * b
    det = a * adj00 + b * adj01 + c * adj02
    enough = valid.sum(axis=0) >= min_views
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_det = np.where(enough, 1.0 / det, np.nan)
        out = np.stack([
            adj00 * r0 + adj01 * r1 + adj02 * r2,
            adj01 * r0 + adj11 * r1 + adj12 * r2,
            adj02 * r0 + adj12 * r1 + adj22 * r2,
        ], axis=-1) * inv_det[..., None]
    out = out * scale + origin
    out[~np.isfinite(out).all(axis=-1)] = np.nan
    return out


def triangulate(points2d, group: CameraGroup, weights=None) -> np.ndarray:
    """Triangulate 2D points seen by several cameras (weighted linear DLT, all points at once).

    Args:
        points2d: (C, ..., 2) distorted pixel coordinates, NaN = missing view.
        group: The calibrated cameras, in the order of axis 0.
        weights: Optional (C, ...) confidences (>= 0); 0 or NaN drops that view for that point.

    Returns:
        (..., 3) world points in mm; NaN where fewer than 2 views are usable.
    """
    points2d = _check_points2d(points2d, group)
    lead = points2d.shape[1:-1]
    flat = points2d.reshape(len(group), -1, 2)
    w = _check_weights(weights, points2d.shape[:-1]).reshape(len(group), -1)
    rig = rig_arrays(group.cameras)
    origin, scale, proj = rig.origin, rig.scale, rig.conditioned[:, None]
    out = _dlt(_undistort_all(flat, group), w, proj, origin, scale)
    return out.reshape(lead + (3,))


def reprojection_errors(points3d, points2d, group: CameraGroup) -> np.ndarray:
    """Distance in px between each observed 2D point and the projection of its 3D point.

    Args:
        points3d: (..., 3) world mm (NaN allowed).
        points2d: (C, ..., 2) observed distorted px (NaN = missing).
        group: The calibrated cameras.

    Returns:
        (C, ...) px; NaN where the 2D or 3D point is missing or the point is behind the camera.
    """
    points2d = _check_points2d(points2d, group)
    points3d = np.asarray(points3d, dtype=np.float64)
    if points3d.shape[:-1] != points2d.shape[1:-1] or points3d.shape[-1] != 3:
        raise ValueError(
            f"points3d shape {points3d.shape} does not match points2d shape {points2d.shape}: "
            "expected (..., 3) with the same ... as (C, ..., 2)"
        )
    projected = group.project(points3d)
    return vector_length(projected - points2d)


@attrs.define(eq=False)
class TriangulationResult:
    """Result of :func:`triangulate_ransac`.

    Attributes:
        points3d: (..., 3) world mm; NaN where no hypothesis reached ``min_views`` inliers.
        reproj_error: (C, ...) px, the distance between every observed 2D point (inlier or not)
            and the projection of ``points3d``; NaN where the view is missing or no 3D point.
        n_views: (...) int, number of views used in the final fit (0 where ``points3d`` is NaN).
        inliers: (C, ...) bool, the views used in the final fit.
    """

    points3d: np.ndarray
    reproj_error: np.ndarray
    n_views: np.ndarray
    inliers: np.ndarray


def triangulate_ransac(points2d, group: CameraGroup, threshold_px: float = 15.0, weights=None,
                       min_views: int = 2) -> TriangulationResult:
    """Robust triangulation: RANSAC over views, vectorized over points.

    The hypotheses are the fit on all observed views and every pair of cameras; each is
    triangulated for all points at once and every view with a 2D point scores as an inlier when
    it reprojects within ``threshold_px``. Points whose all-view fit already has every view as an
    inlier skip the pairs. Per point, the hypothesis with the most inliers wins (ties: the
    smallest mean inlier error); the point is then refitted by weighted DLT on the winning
    inliers, and the inlier set is re-scored once against the refitted point (views may join or
    leave) and refitted again.

    Args:
        points2d: (C, ..., 2) distorted px, NaN = missing view.
        group: The calibrated cameras, in the order of axis 0.
        threshold_px: Inlier threshold on the reprojection error, px.
        weights: Optional (C, ...) confidences for the refit (0 or NaN = view unusable).
        min_views: Minimum number of inlier views for a point to be kept (>= 2).

    Returns:
        A :class:`TriangulationResult`.
    """
    if min_views < 2:
        raise ValueError(f"min_views must be >= 2, got {min_views}")
    if not threshold_px > 0:
        raise ValueError(f"threshold_px must be > 0, got {threshold_px}")
    points2d = _check_points2d(points2d, group)
    n_cam = len(group)
    lead = points2d.shape[1:-1]
    flat = points2d.reshape(n_cam, -1, 2)
    w = _check_weights(weights, points2d.shape[:-1]).reshape(n_cam, -1)
    observed = np.isfinite(flat).all(axis=-1) & (w > 0)  # (C, N)
    rig = rig_arrays(group.cameras)
    origin, scale, proj = rig.origin, rig.scale, rig.conditioned
    norm = _undistort_all(flat, group)

    # hypothesis 0: all observed views. Points where every observed view is an inlier cannot be
    # beaten on inlier count, so the pair hypotheses only run on the others.
    pts = _dlt(norm, np.where(observed, w, 0.0), proj[:, None], origin, scale)
    err = reprojection_errors(pts, flat, group)
    best_inliers = observed & (err < threshold_px)
    best_count = best_inliers.sum(axis=0)
    with np.errstate(invalid="ignore"):
        best_err = np.where(best_inliers, err, 0.0).sum(axis=0) / np.maximum(best_count, 1)
    best_err[best_count == 0] = np.inf
    todo = np.flatnonzero(best_count < observed.sum(axis=0))
    # every camera pair at once for a chunk of points: hypotheses along a new axis P
    pairs = np.array(list(combinations(range(n_cam), 2)), dtype=np.int64).reshape(-1, 2)
    first, second = pairs[:, 0], pairs[:, 1]
    pair_proj = np.stack([proj[first], proj[second]])[:, :, None]  # (2, P, 1, 3, 4)
    chunk = max(1, _PAIR_BATCH // max(len(pairs), 1))
    for start in range(0, todo.size if len(pairs) else 0, chunk):
        idx = todo[start:start + chunk]
        usable = observed[:, idx]
        w_used = np.where(usable, w[:, idx], 0.0)
        norm_idx = norm[:, idx]
        pair_norm = np.stack([norm_idx[first], norm_idx[second]])  # (2, P, n, 2)
        pair_w = np.stack([w_used[first], w_used[second]])
        pts = _dlt(pair_norm, pair_w, pair_proj, origin, scale)  # (P, n, 3)
        err = vector_length(group.project(pts) - flat[:, None, idx])  # (C, P, n)
        inl = usable[:, None] & (err < threshold_px)
        count = inl.sum(axis=0)  # (P, n)
        with np.errstate(invalid="ignore"):
            mean_err = np.where(inl, err, 0.0).sum(axis=0) / np.maximum(count, 1)
        # per point: most inliers, then smallest mean inlier error (first pair on exact ties)
        pick = np.argmin(np.where(count == count.max(axis=0), mean_err, np.inf), axis=0)
        cols = np.arange(idx.size)
        count, mean_err, inl = count[pick, cols], mean_err[pick, cols], inl[:, pick, cols]
        better = (count > best_count[idx]) | ((count == best_count[idx]) & (count > 0)
                                              & (mean_err < best_err[idx]))
        sel = idx[better]
        best_count[sel] = count[better]
        best_err[sel] = mean_err[better]
        best_inliers[:, sel] = inl[:, better]

    inliers = best_inliers
    pts = _dlt(norm, np.where(inliers, w, 0.0), proj[:, None], origin, scale, min_views=min_views)
    err = reprojection_errors(pts, flat, group)
    # one re-scoring against the refitted point: views may join or leave the inlier set, but a
    # point never drops below min_views this way
    rescored = observed & (err < threshold_px)
    rescored = np.where((rescored.sum(axis=0) >= min_views)[None], rescored, inliers)
    if not np.array_equal(rescored, inliers):
        inliers = rescored
        pts = _dlt(norm, np.where(inliers, w, 0.0), proj[:, None], origin, scale,
                   min_views=min_views)
        err = reprojection_errors(pts, flat, group)
    ok = np.isfinite(pts).all(axis=1)
    inliers = inliers & ok[None]
    return TriangulationResult(
        points3d=pts.reshape(lead + (3,)),
        reproj_error=err.reshape((n_cam,) + lead),
        n_views=inliers.sum(axis=0).astype(np.int64).reshape(lead),
        inliers=inliers.reshape((n_cam,) + lead),
    )
