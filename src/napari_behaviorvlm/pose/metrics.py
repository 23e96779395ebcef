"""Accuracy of a labeled pose table against ground truth (synthetic sessions).

Definitions (``C`` cameras, ``F`` frames, ``M`` individuals, ``K`` keypoints):

- A 3D keypoint ``(f, m, k)`` is *evaluated* when it is truly visible in at least 2 views
  (a point seen by fewer cannot be triangulated by anyone) and ``f`` is in the evaluated
  frames (seed frames excluded). Its 3D error is the distance in mm between the labeled and the
  true 3D point; a keypoint left without a 3D point counts as *missing* (``coverage`` is the
  share not missing) and its error as infinite for the flag metrics.
- ``mean_3d_error_mm``, ``median_3d_error_mm``, ``p95_3d_error_mm``: over evaluated keypoints
  that have a 3D point; also per region.
- ``pck_5px``: share of truly visible 2D keypoints (camera, frame, individual, keypoint) whose
  label lies within 5 px of the truth (a missing label is a miss).
- ``identity_swap_rate``: share of evaluated keypoints with a 3D point that lies closer to the
  true position of any other keypoint (of its own individual or another: a left/right partner,
  a paw at the face, the other mouse's tail) than to its own.
  ``per_individual_swap_rate`` (two or more individuals): the same per individual, over its
  own evaluated keypoints (the issue's targets hold per mouse).
- ``swap_flag_share``: share of those swapped keypoints that carry a flag in at least one view
  (how many of the swaps a reviewer is shown; None without swaps).
- ``individual_exchange_frames``: frames where an individual's labeled body centre (the mean
  of its labeled keypoints) lies closer to another individual's true centre than to its own,
  both true centres taken over the same keypoints.
- ``flag_recall``: share of evaluated keypoints with 3D error > 5 mm (or missing) that carry a
  flag in at least one view; ``flag_precision``: share of flagged evaluated keypoints whose error
  is > 5 mm (or missing).
- ``located_flag_recall``: the same recall over the keypoints that have a 3D point only. A
  missing keypoint is always flagged (``FEW_VIEWS``), so ``flag_recall`` counts every one as a
  found error; this one tells how many of the wrong 3D points a reviewer is shown (on the
  two-mouse benchmark sessions 0.59 pooled, against 0.95 for ``flag_recall``).
- Counts behind the ratios, to pool sessions: ``n_bad``, ``n_flagged``, ``n_flagged_bad``,
  ``n_located_bad``, ``n_located_flagged_bad``,
  ``n_located`` (evaluated with a 3D point), ``n_swapped``, ``n_swapped_flagged``, ``n_evaluated``,
  ``sum_3d_error_mm``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_behaviorvlm.core.pose import PoseTable
from napari_behaviorvlm.core.skeleton import Skeleton

__all__ = ["evaluate_poses"]

BAD_MM = 5.0


def _stats(values: np.ndarray) -> dict[str, float | None]:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return {"mean": None, "median": None, "p95": None}
    return {"mean": float(values.mean()), "median": float(np.median(values)),
            "p95": float(np.percentile(values, 95))}


def evaluate_poses(poses: PoseTable, skeleton: Skeleton, true3d: np.ndarray, true2d: np.ndarray,
                   visible: np.ndarray, frames: Sequence[int] | None = None) -> dict[str, Any]:
    """Accuracy metrics (see the module docstring).

    Args:
        poses: The labeled table.
        true3d: ``(F, M, K, 3)`` mm; ``true2d`` ``(C, F, M, K, 2)`` px; ``visible``
            ``(C, F, M, K)`` bool.
        frames: Frames to evaluate (all when None).
    """
    sel = np.arange(poses.n_frames) if frames is None else np.asarray(list(frames), dtype=int)
    est3 = poses.points3d[sel]
    tru3 = true3d[sel]
    vis = visible[:, sel]
    evaluated = vis.sum(axis=0) >= 2  # (F', M, K)
    err = np.linalg.norm(est3 - tru3, axis=-1)
    has3 = np.isfinite(err)
    ev_err = np.where(evaluated & has3, err, np.nan)
    flagged = (poses.flags[:, sel] > 0).any(axis=0)
    bad = evaluated & (~has3 | (err > BAD_MM))
    n_bad, n_flag = int(bad.sum()), int((flagged & evaluated).sum())
    out: dict[str, Any] = {}
    s = _stats(ev_err.ravel())
    out["mean_3d_error_mm"], out["median_3d_error_mm"], out["p95_3d_error_mm"] = s["mean"], s["median"], s["p95"]
    out["coverage"] = float((evaluated & has3).sum() / max(evaluated.sum(), 1))
    out["n_evaluated"] = int(evaluated.sum())
    per_region = {}
    for region, idx in skeleton.region_indices().items():
        rs = _stats(ev_err[..., idx].ravel())
        per_region[region] = {"mean_3d_error_mm": rs["mean"], "median_3d_error_mm": rs["median"],
                              "p95_3d_error_mm": rs["p95"]}
    out["per_region"] = per_region
    if poses.n_individuals > 1:
        out["per_individual"] = {
            name: _stats(ev_err[:, m].ravel())["mean"] for m, name in enumerate(poses.individual_names)
        }
    # 2D PCK
    est2 = poses.points2d[:, sel]
    d2 = np.linalg.norm(est2 - true2d[:, sel], axis=-1)
    out["pck_5px"] = float((np.nan_to_num(d2, nan=np.inf)[vis] < 5.0).mean()) if vis.any() else None
    # identity swaps: closer to another keypoint's truth than to its own
    n_ind, n_kp = est3.shape[1:3]
    flat_true = tru3.reshape(len(sel), n_ind * n_kp, 3)
    flat_est = est3.reshape(len(sel), n_ind * n_kp, 3)
    dist = np.linalg.norm(flat_est[:, :, None] - flat_true[:, None], axis=-1)  # (F', MK, MK)
    own = np.diagonal(dist, axis1=1, axis2=2).copy()
    dist_other = dist.copy()
    idx = np.arange(n_ind * n_kp)
    dist_other[:, idx, idx] = np.inf
    swapped = (np.nanmin(np.nan_to_num(dist_other, nan=np.inf), axis=2) < own).reshape(len(sel), n_ind, n_kp)
    ok = evaluated & has3
    out["identity_swap_rate"] = float((swapped & ok).sum() / max(ok.sum(), 1))
    if n_ind > 1:
        out["per_individual_swap_rate"] = {
            name: float((swapped & ok)[:, m].sum() / max(ok[:, m].sum(), 1))
            for m, name in enumerate(poses.individual_names)
        }
    # individual exchange
    exch = 0
    if n_ind > 1:
        # each labeled centre against the true centres of the same keypoints (a mouse with
        # two right labels at its tail is not the other mouse because its full centre is far)
        located = np.isfinite(est3).all(axis=-1)  # (F', M, K)
        n_located = located.sum(axis=2)[..., None]  # (F', M, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ce = np.where(located[..., None], est3, 0).sum(axis=2) / n_located  # (F', M, 3)
            ct = (np.where(located[:, :, None, :, None], tru3[:, None], 0).sum(axis=3)
                  / n_located[..., None])  # (F', M labeled, M true, 3)
        dd = np.linalg.norm(ce[:, :, None] - ct, axis=-1)  # (F', M labeled, M true)
        own_c = np.diagonal(dd, axis1=1, axis2=2).copy()
        dd[:, np.arange(n_ind), np.arange(n_ind)] = np.inf
        exch = int((np.nan_to_num(dd, nan=np.inf).min(axis=2) < own_c).any(axis=1).sum())
    out["individual_exchange_frames"] = exch
    out["flag_recall"] = float((bad & flagged).sum() / n_bad) if n_bad else 1.0
    out["flag_precision"] = float((bad & flagged).sum() / n_flag) if n_flag else 1.0
    located_bad = bad & has3
    out["n_located_bad"] = int(located_bad.sum())
    out["n_located_flagged_bad"] = int((located_bad & flagged).sum())
    out["located_flag_recall"] = (out["n_located_flagged_bad"] / out["n_located_bad"]
                                  if out["n_located_bad"] else 1.0)
    # counts behind the ratios, so that several sessions can be pooled (pose.benchmark)
    out["n_bad"] = n_bad
    out["n_flagged"] = n_flag
    out["n_flagged_bad"] = int((bad & flagged).sum())
    out["n_located"] = int(ok.sum())
    out["n_swapped"] = int((swapped & ok).sum())
    out["n_swapped_flagged"] = int((swapped & ok & flagged).sum())
    out["swap_flag_share"] = (out["n_swapped_flagged"] / out["n_swapped"]
                              if out["n_swapped"] else None)
    out["sum_3d_error_mm"] = float(np.nansum(ev_err))
    return out
