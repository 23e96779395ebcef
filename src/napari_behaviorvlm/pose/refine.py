"""Stage 4 of the pose pipeline: cross-view refinement, confidence and flags (pure geometry).

For one multi-view frame, given each view's stage-3 assignment:

1. **RANSAC triangulation** of every keypoint over the views (inlier threshold
   ``threshold_px``), human labels weighted 10x a model label.
2. **Alternative hypotheses.** A keypoint whose 3D point is trusted (>= 3 inlier views, or 2
   inliers close to the temporal prediction) is reprojected into every view; each view is then
   re-solved as a one-to-one matching of the reprojections to the view's candidates (Hungarian,
   cost ``0.5 (d / 1.5 px)^2``, gated at ``threshold_px``). This evaluates, for every
   high-error view, the left/right swap (the partner's candidate), a neighbouring candidate and
   "missing" (no candidate inside the gate) and keeps the lowest-error configuration; inlier
   views keep their candidate because it is already the cheapest. The frame is then
   re-triangulated.
   Jumps and lost keypoints: a 3D point beyond ``max(jump_mm, 4 sigma)`` of its prediction, or
   a keypoint with no 3D point, is re-tried from the candidates nearest its reprojected
   prediction in every view (a lost keypoint only takes dots nobody holds); if they agree in
   >= 2 views near the prediction they replace its labels.
   Identities and sides: the same keypoint of two individuals is exchanged in every view when
   the exchange fits both predictions better by ``swap_margin_mm``; a left/right pair found with
   both keypoints on the wrong side of the body (:class:`BodyModel`, learned from the seeds) is
   swapped in every view. Views still above ``threshold_px`` lose the label ("missing" wins) and
   the point is refit. Human labels never change.
3. **Confidence** of each model label (0..1)::

       conf = exp(-0.5 (e / 2 px)^2) * (0.5 + 0.5 min(n, 3) / 3) * (0.5 + 0.5 c_reasoner)

   with ``e`` the reprojection error (0.3 in place of the Gaussian term when there is no 3D
   point), ``n`` the number of views of the 3D point and ``c_reasoner`` the stage-3
   confidence; a flagged label is capped at 0.5. Human labels keep confidence 1.
4. **Flags** (:class:`~napari_behaviorvlm.core.pose.Flag`), on model labels only:

   - ``HIGH_REPROJ_ERROR``: reprojection error > ``flag_reproj_px``;
   - ``FEW_VIEWS``: the keypoint has fewer than 2 views (no 3D point); set on every view of
     the keypoint when it has no label at all, so the frame shows up for review;
   - ``JUMP``: the 3D point is farther than ``max(jump_mm, 4 sigma)`` from the temporal
     prediction (sigma = the prediction's uncertainty in mm);
   - ``SWAP``: exchanging a left/right pair (or the same keypoint of two individuals) fits
     the temporal prediction better than the labels do, or the keypoint lies more than
     ``side_tolerance_mm`` on the wrong side of the body;
   - ``LOW_MODEL_CONFIDENCE``: raised by the reasoner (e.g. a model answer that failed
     validation, a failed request, or a model confidence below 0.5);
   - ``AMBIGUOUS``: the stage-3 margin is below ``ambiguous_margin`` and the 3D point has
     at most 2 views (nothing else confirms it); or a 2-view point lies farther than
     ``max(6 mm, 3 sigma)`` from its prediction; or the keypoint's rigid-link lengths break
     the seeds' body shape by more than ``shape_tolerance_mm``; or its distances to all the
     other keypoints lie outside the seeds' ranges by more than ``range_tolerance_mm`` (median
     over its partners, less ``range_spread_factor`` times the ranges' median width): a track
     on a consistent wrong dot seen in 3+ views, which no cross-view check can reject.
     A flagged keypoint is re-anchored on the body in the next frame (``pipeline.predict_3d``).
"""

from __future__ import annotations

import attrs
import numpy as np
from scipy.optimize import linear_sum_assignment

from napari_behaviorvlm.core.pose import Flag
from napari_behaviorvlm.core.skeleton import Skeleton
from napari_behaviorvlm.geometry.camera import CameraGroup
from napari_behaviorvlm.geometry.triangulation import (
    reprojection_errors,
    triangulate,
    triangulate_ransac,
)
from napari_behaviorvlm.pose.candidates import Candidates

__all__ = ["FrameResult", "RefineParams", "refine_frame", "score_frame"]

HUMAN_WEIGHT = 10.0


@attrs.define(frozen=True)
class RefineParams:
    """Thresholds of stage 4 and of the flag rules (px, mm).

    Attributes:
        threshold_px: RANSAC inlier threshold and gate of the alternative hypotheses.
        flag_reproj_px: HIGH_REPROJ_ERROR above this reprojection error.
        jump_mm: JUMP when farther than ``max(jump_mm, 4 sigma)`` from the prediction.
        ambiguous_margin: AMBIGUOUS below this stage-3 margin (with <= 2 views).
        swap_margin_mm: SWAP when the exchanged pair fits the prediction better by this much.
        reassign_sigma_px: Scale of the reprojection cost when re-solving a view.
        shape_tolerance_mm: AMBIGUOUS when a keypoint's rigid-link lengths deviate from the
            seeds' by more than this (median over its rigid partners).
        side_tolerance_mm: A left/right keypoint is on the wrong side of the body when it is
            more than this beyond the midline plane.
        range_tolerance_mm: AMBIGUOUS when a keypoint's distances to the other keypoints lie
            outside the seeds' range by more than this (median over its partners).
    """

    threshold_px: float = 4.0
    flag_reproj_px: float = 3.5
    jump_mm: float = 12.0
    ambiguous_margin: float = 0.3
    swap_margin_mm: float = 2.0
    reassign_sigma_px: float = 1.5
    shape_tolerance_mm: float = 7.0
    side_tolerance_mm: float = 2.0
    range_tolerance_mm: float = 5.0
    range_spread_factor: float = 0.2


@attrs.define(eq=False)
class FrameResult:
    """Stage 4 output for one frame (``C`` cameras, ``M`` individuals, ``K`` keypoints).

    Attributes:
        points2d: ``(C, M, K, 2)`` px final labels (NaN = none).
        confidence: ``(C, M, K)`` 0..1 (NaN where no label).
        reproj_error: ``(C, M, K)`` px (NaN where no label or no 3D point).
        flags: uint16 ``(C, M, K)``.
        points3d: ``(M, K, 3)`` mm (NaN where < 2 views).
        n_views: ``(M, K)`` int.
        n_changed: Model labels changed by the hypotheses (swaps, neighbours, recovered views).
        n_dropped: Model labels removed as "missing".
    """

    points2d: np.ndarray
    confidence: np.ndarray
    reproj_error: np.ndarray
    flags: np.ndarray
    points3d: np.ndarray
    n_views: np.ndarray
    n_changed: int = 0
    n_dropped: int = 0


def _weights(human: np.ndarray, conf: np.ndarray) -> np.ndarray:
    return np.where(human, HUMAN_WEIGHT, np.clip(np.nan_to_num(conf, nan=0.5), 0.1, 1.0))


def refine_frame(
    group: CameraGroup,
    skeleton: Skeleton,
    obs: np.ndarray,
    human: np.ndarray,
    candidates: list[Candidates],
    assign_index: np.ndarray,
    assign_conf: np.ndarray,
    assign_margin: np.ndarray,
    assign_flags: np.ndarray,
    predicted3d: np.ndarray | None = None,
    sigma3d: np.ndarray | None = None,
    params: RefineParams | None = None,
    use_refinement: bool = True,
    body: BodyModel | None = None,
) -> FrameResult:
    """Stage 4 for one frame (see the module docstring).

    Args:
        group: The calibrated cameras (axis ``C``).
        skeleton: For the left/right pairs.
        obs: ``(C, M, K, 2)`` px: stage-3 labels and the frame's human labels (NaN = none).
        human: ``(C, M, K)`` bool: ``obs`` is a human/seed label (never changed).
        candidates: Per view, the candidates the assignment indexes.
        assign_index: int ``(C, M, K)`` stage-3 candidate indices (-1 = none or human).
        assign_conf, assign_margin: ``(C, M, K)`` stage-3 confidence and margin.
        assign_flags: uint16 ``(C, M, K)`` reasoner flags.
        predicted3d: ``(M, K, 3)`` mm temporal prediction (NaN = none), for trust, JUMP, SWAP.
        sigma3d: ``(M, K)`` mm uncertainty of the prediction.
        params: Thresholds.
        use_refinement: False = the ablation without stage 4: plain triangulation of every
            labeled view, no hypotheses (flags and confidence are still computed).
        body: Shape priors from the seeds: a left/right pair found on the wrong sides of the
            body is swapped in every view (stage 4 only); a single keypoint on the wrong side
            is flagged SWAP, one breaking the seeds' rigid link lengths AMBIGUOUS.
    """
    params = params or RefineParams()
    n_cam, n_ind, n_kp = obs.shape[:3]
    obs = obs.copy()
    index = assign_index.copy()
    n_changed = n_dropped = 0
    if predicted3d is None:
        predicted3d = np.full((n_ind, n_kp, 3), np.nan)
    if sigma3d is None:
        sigma3d = np.full((n_ind, n_kp), 10.0)
    if use_refinement:
        weights = _weights(human, assign_conf)
        res = triangulate_ransac(obs, group, params.threshold_px, weights=weights)
        x3 = res.points3d
        near_pred = np.linalg.norm(x3 - predicted3d, axis=-1) < np.maximum(3.0 * sigma3d, 6.0)
        trusted = (res.n_views >= 3) | ((res.n_views == 2) & near_pred)
        trusted &= np.isfinite(x3).all(axis=-1)
        if trusted.any():
            proj = group.project(x3)  # (C, M, K, 2)
            for c in range(n_cam):
                changed = _resolve_view(c, proj[c], trusted, obs, human, index, candidates[c], params)
                n_changed += changed
            res = triangulate_ransac(obs, group, params.threshold_px, weights=_weights(human, assign_conf))
        # a trusted point that jumped away from a confident prediction: try the candidates
        # nearest the prediction in every view (the "neighbouring candidate" hypothesis in 3D)
        if _retry_jumps(group, res.points3d, obs, human, index, candidates, predicted3d,
                        sigma3d, params):
            n_changed += 1
            res = triangulate_ransac(obs, group, params.threshold_px, weights=_weights(human, assign_conf))
        # "missing" wins where a model label still does not fit a 3D point
        bad = (~human) & np.isfinite(res.reproj_error) & (res.reproj_error > params.threshold_px)
        bad &= (res.n_views >= 2)[None]
        if bad.any():
            n_dropped = int(bad.sum())
            obs[bad] = np.nan
            index[bad] = -1
        x3, n_views = res.points3d, res.n_views
        x3 = np.where((n_views >= 2)[..., None], x3, np.nan)
        if bad.any():
            # refit on the kept labels so the 3D point uses exactly the labels shown
            x3 = triangulate(obs, group, weights=_weights(human, assign_conf))
            n_views = np.isfinite(obs[..., 0]).sum(axis=0)
            x3 = np.where((n_views >= 2)[..., None], x3, np.nan)
        if _fix_identities(x3, predicted3d, obs, human, index, params.swap_margin_mm):
            n_changed += 1
            x3 = triangulate(obs, group, weights=_weights(human, assign_conf))
            n_views = np.isfinite(obs[..., 0]).sum(axis=0)
            x3 = np.where((n_views >= 2)[..., None], x3, np.nan)
        if body is not None and _fix_sides(skeleton, body, x3, obs, human, index):
            n_changed += 1
            x3 = triangulate(obs, group, weights=_weights(human, assign_conf))
            n_views = np.isfinite(obs[..., 0]).sum(axis=0)
            x3 = np.where((n_views >= 2)[..., None], x3, np.nan)
        if body is not None:
            dropped = _drop_outside_body(body, x3, obs, human, index)
            if dropped:
                n_dropped += dropped
                n_views = np.isfinite(obs[..., 0]).sum(axis=0)
    else:
        x3 = triangulate(obs, group, weights=_weights(human, assign_conf))
        n_views = np.isfinite(obs[..., 0]).sum(axis=0)
    out = score_frame(group, skeleton, obs, human, x3, n_views, assign_conf, assign_margin,
                      assign_flags, predicted3d, sigma3d, params, body)
    out.n_changed, out.n_dropped = n_changed, n_dropped
    return out


def _retry_jumps(group: CameraGroup, x3: np.ndarray, obs: np.ndarray, human: np.ndarray,
                 index: np.ndarray, candidates: list[Candidates], pred: np.ndarray,
                 sigma: np.ndarray, params: RefineParams) -> bool:
    """For each keypoint whose 3D point lies beyond ``max(jump_mm, 4 sigma)`` of its
    prediction, or that has no 3D point, triangulate the candidates nearest the reprojected
    prediction (for a lost keypoint: only dots nobody holds); when those agree (>= 2 inlier
    views) near the prediction, they replace the keypoint's labels (and leave the keypoints
    that held them). Returns whether anything changed."""
    limit = np.maximum(params.jump_mm, 4.0 * np.nan_to_num(sigma, nan=np.inf))
    dist = np.linalg.norm(x3 - pred, axis=-1)
    jumped = np.isfinite(dist) & (dist > limit)
    lost = ~np.isfinite(x3).all(axis=-1) & np.isfinite(pred).all(axis=-1)
    todo = np.argwhere(jumped | lost)
    if len(todo) == 0:
        return False
    n_cam = obs.shape[0]
    changed = False
    for m, k in todo:
        p2 = group.project(pred[m, k])  # (C, 2)
        alt = np.full((n_cam, 2), np.nan)
        alt_j = np.full(n_cam, -1)
        for c in range(n_cam):
            if human[c, m, k] or len(candidates[c]) == 0 or not np.isfinite(p2[c]).all():
                continue
            d = np.linalg.norm(candidates[c].xy - p2[c], axis=1)
            if lost[m, k]:  # a lost keypoint only takes a dot nobody holds
                d[index[c][index[c] >= 0]] = np.inf
            j = int(d.argmin())
            if not np.isfinite(d[j]):
                continue
            if d[j] < 2.0 * params.threshold_px + 2.0:
                alt[c], alt_j[c] = candidates[c].xy[j], j
        if np.isfinite(alt[:, 0]).sum() < 2:
            continue
        res = triangulate_ransac(alt[:, None], group, params.threshold_px)
        xa = res.points3d[0]
        if res.n_views[0] < 2 or not np.linalg.norm(xa - pred[m, k]) < limit[m, k]:
            continue
        for c in np.flatnonzero(res.inliers[:, 0]):
            j = alt_j[c]
            holders = np.argwhere(index[c] == j)
            for hm, hk in holders:
                if not human[c, hm, hk]:
                    index[c, hm, hk] = -1
                    obs[c, hm, hk] = np.nan
            index[c, m, k] = j
            obs[c, m, k] = alt[c]
        for c in np.flatnonzero(~res.inliers[:, 0] & ~human[:, m, k]):
            index[c, m, k] = -1
            obs[c, m, k] = np.nan
        changed = True
    return changed


def _resolve_view(c: int, proj: np.ndarray, trusted: np.ndarray, obs: np.ndarray,
                  human: np.ndarray, index: np.ndarray, cand: Candidates,
                  params: RefineParams) -> int:
    """Re-solve view ``c``: trusted keypoints take the candidates nearest their reprojections.

    Returns the number of model labels that changed.
    """
    n = len(cand)
    rows = np.argwhere(trusted & ~human[c] & np.isfinite(proj).all(axis=-1))
    if n == 0 or len(rows) == 0:
        return 0
    taken_by_human = np.zeros(n, bool)
    hum = np.argwhere(human[c])
    if len(hum):
        hxy = obs[c][human[c]]
        dh = np.linalg.norm(cand.xy[None] - hxy[:, None], axis=2)
        taken_by_human = (dh < 1.5).any(axis=0)
    pts = proj[rows[:, 0], rows[:, 1]]
    d = np.linalg.norm(pts[:, None] - cand.xy[None], axis=2)
    cost = 0.5 * (d / params.reassign_sigma_px) ** 2
    gate = 0.5 * (params.threshold_px / params.reassign_sigma_px) ** 2
    cost[(d > params.threshold_px) | taken_by_human[None]] = 1e6
    r = len(rows)
    full = np.full((r, n + r), 1e6)
    full[:, :n] = cost
    full[np.arange(r), n + np.arange(r)] = gate
    rr, cc = linear_sum_assignment(full)
    new = np.full(r, -1)
    for a, b in zip(rr, cc):
        if b < n and full[a, b] < 1e6:
            new[a] = b
    changed = 0
    claimed = set(int(j) for j in new if j >= 0)
    for (m, k), j in zip(rows, new):
        if j != index[c, m, k]:
            changed += 1
            index[c, m, k] = j
            obs[c, m, k] = cand.xy[j] if j >= 0 else np.nan
    # untrusted keypoints lose a candidate a trusted one claimed
    others = np.argwhere(~trusted & ~human[c] & (index[c] >= 0))
    for m, k in others:
        if int(index[c, m, k]) in claimed:
            index[c, m, k] = -1
            obs[c, m, k] = np.nan
            changed += 1
    return changed


def score_frame(group: CameraGroup, skeleton: Skeleton, obs: np.ndarray, human: np.ndarray,
                points3d: np.ndarray, n_views: np.ndarray, assign_conf: np.ndarray,
                assign_margin: np.ndarray, assign_flags: np.ndarray, predicted3d: np.ndarray,
                sigma3d: np.ndarray, params: RefineParams, body: BodyModel | None = None
                ) -> FrameResult:
    """Reprojection errors, confidences and flags of one frame's final labels."""
    n_cam, n_ind, n_kp = obs.shape[:3]
    labeled = np.isfinite(obs[..., 0])
    err = reprojection_errors(points3d, obs, group).astype(np.float32)
    err[~labeled] = np.nan
    flags = np.zeros((n_cam, n_ind, n_kp), np.uint16)
    flags |= np.where(np.isfinite(err) & (err > params.flag_reproj_px),
                      int(Flag.HIGH_REPROJ_ERROR), 0).astype(np.uint16)
    flags |= assign_flags.astype(np.uint16) & int(Flag.LOW_MODEL_CONFIDENCE | Flag.AMBIGUOUS)
    flags |= np.where(labeled & (np.nan_to_num(assign_margin, nan=1e3) < params.ambiguous_margin)
                      & (n_views <= 2)[None], int(Flag.AMBIGUOUS), 0).astype(np.uint16)
    kp_flags = np.zeros((n_ind, n_kp), np.uint16)
    kp_flags |= np.where(n_views < 2, int(Flag.FEW_VIEWS), 0).astype(np.uint16)
    has3 = np.isfinite(points3d).all(axis=-1)
    haspred = np.isfinite(predicted3d).all(axis=-1)
    dist = np.linalg.norm(points3d - predicted3d, axis=-1)
    jump = has3 & haspred & (dist > np.maximum(params.jump_mm, 4.0 * sigma3d))
    kp_flags |= np.where(jump, int(Flag.JUMP), 0).astype(np.uint16)
    # two views agree by construction: a 2-view point away from its prediction is unconfirmed
    unconfirmed = has3 & haspred & (n_views == 2) & (dist > np.maximum(6.0, 3.0 * sigma3d))
    kp_flags |= np.where(unconfirmed, int(Flag.AMBIGUOUS), 0).astype(np.uint16)
    kp_flags |= _swap_flags(skeleton, points3d, predicted3d, params.swap_margin_mm)
    if body is not None:
        resid = body.shape_residual(points3d)
        kp_flags |= np.where(np.nan_to_num(resid) > params.shape_tolerance_mm,
                             int(Flag.AMBIGUOUS), 0).astype(np.uint16)
        spread_resid = body.range_residual(points3d, params.range_spread_factor)
        kp_flags |= np.where(np.nan_to_num(spread_resid) > params.range_tolerance_mm,
                             int(Flag.AMBIGUOUS), 0).astype(np.uint16)
        lat = body.lateral(points3d) * body.side
        kp_flags |= np.where(np.nan_to_num(lat) < -params.side_tolerance_mm,
                             int(Flag.SWAP), 0).astype(np.uint16)
    any_label = labeled.any(axis=0)
    spread = np.where(labeled | ~any_label[None], kp_flags[None], 0).astype(np.uint16)
    flags |= spread
    flags[human] = 0
    geom = np.where(np.isfinite(err), np.exp(-0.5 * (np.nan_to_num(err) / 2.0) ** 2), 0.3)
    support = 0.5 + 0.5 * np.minimum(n_views, 3)[None] / 3.0
    conf = geom * support * (0.5 + 0.5 * np.clip(np.nan_to_num(assign_conf, nan=0.5), 0, 1))
    conf = np.where(flags > 0, np.minimum(conf, 0.5), conf)
    conf = np.where(human, 1.0, conf)
    conf = np.where(labeled, conf, np.nan).astype(np.float32)
    return FrameResult(obs, conf, err, flags, points3d, n_views.astype(np.int64))


def _fix_identities(x3: np.ndarray, pred: np.ndarray, obs: np.ndarray, human: np.ndarray,
                    index: np.ndarray, margin: float) -> bool:
    """Exchange, in every view, the model labels of one keypoint between two individuals when
    the exchange fits both predictions better by more than ``margin`` mm (identities stay
    apart). Returns whether anything changed."""
    n_ind, n_kp = x3.shape[:2]
    changed = False
    for m1 in range(n_ind):
        for m2 in range(m1 + 1, n_ind):
            for k in range(n_kp):
                xa, xb, pa, pb = x3[m1, k], x3[m2, k], pred[m1, k], pred[m2, k]
                if not (np.isfinite(xa).all() and np.isfinite(xb).all() and np.isfinite(pa).all()
                        and np.isfinite(pb).all()):
                    continue
                keep = np.linalg.norm(xa - pa) + np.linalg.norm(xb - pb)
                swap = np.linalg.norm(xa - pb) + np.linalg.norm(xb - pa)
                if swap + margin < keep and not (human[:, m1, k] | human[:, m2, k]).any():
                    obs[:, [m1, m2], k] = obs[:, [m2, m1], k]
                    index[:, [m1, m2], k] = index[:, [m2, m1], k]
                    x3[[m1, m2], k] = x3[[m2, m1], k]
                    changed = True
    return changed


def _drop_outside_body(body: BodyModel, x3: np.ndarray, obs: np.ndarray, human: np.ndarray,
                       index: np.ndarray, limit_mm: float = 20.0) -> int:
    """Remove, in every view, the model labels of a keypoint whose 3D point lies far outside
    its own body: the median over its located partners of how far the distance to each lies
    outside the seeds' range (:meth:`BodyModel.range_residual`) exceeds ``limit_mm`` (an ear
    on the other mouse, a tail on a floor reflection). The worst keypoint goes first and the
    rest are re-scored without it. Its 3D point becomes NaN, so the next frame re-anchors it
    on the body instead of following it. Returns the number of labels removed."""
    removed = 0
    for _ in range(x3.shape[0] * x3.shape[1]):
        resid = body.range_residual(x3)
        model = ~human.any(axis=0)
        resid = np.where(model & np.isfinite(resid), resid, -np.inf)
        m, k = np.unravel_index(int(np.argmax(resid)), resid.shape)
        if not resid[m, k] > limit_mm:
            break
        removed += int(np.isfinite(obs[:, m, k, 0]).sum())
        obs[:, m, k] = np.nan
        index[:, m, k] = -1
        x3[m, k] = np.nan
    return removed


def _fix_sides(skeleton: Skeleton, body: BodyModel, x3: np.ndarray, obs: np.ndarray,
               human: np.ndarray, index: np.ndarray) -> bool:
    """Swap, in every view, the model labels of a left/right pair found with both keypoints
    on the wrong side of the body. Returns whether anything changed."""
    lat = body.lateral(x3) * body.side
    changed = False
    for m in range(x3.shape[0]):
        for a, b in skeleton.symmetry_indices():
            if body.side[m, a] == 0 or body.side[m, b] == 0:
                continue
            if lat[m, a] < -1.5 and lat[m, b] < -1.5 and not (human[:, m, a] | human[:, m, b]).any():
                obs[:, m, [a, b]] = obs[:, m, [b, a]]
                index[:, m, [a, b]] = index[:, m, [b, a]]
                changed = True
    return changed


def _swap_flags(skeleton: Skeleton, x3: np.ndarray, pred: np.ndarray, margin: float) -> np.ndarray:
    """SWAP bits ``(M, K)``: an exchanged left/right pair (or the same keypoint of two
    individuals) fits the prediction better by more than ``margin`` mm."""
    n_ind, n_kp = x3.shape[:2]
    out = np.zeros((n_ind, n_kp), np.uint16)
    bit = int(Flag.SWAP)

    def check(a: tuple[int, int], b: tuple[int, int]) -> None:
        xa, xb, pa, pb = x3[a], x3[b], pred[a], pred[b]
        if not (np.isfinite(xa).all() and np.isfinite(xb).all() and np.isfinite(pa).all()
                and np.isfinite(pb).all()):
            return
        keep = np.linalg.norm(xa - pa) + np.linalg.norm(xb - pb)
        swap = np.linalg.norm(xa - pb) + np.linalg.norm(xb - pa)
        if swap + margin < keep:
            out[a] |= bit
            out[b] |= bit

    for m in range(n_ind):
        for ka, kb in skeleton.symmetry_indices():
            check((m, ka), (m, kb))
    for m1 in range(n_ind):
        for m2 in range(m1 + 1, n_ind):
            for k in range(n_kp):
                check((m1, k), (m2, k))
    return out


@attrs.define(eq=False)
class BodyModel:
    """Shape priors learned from the seed frames' 3D poses (one set per individual).

    Attributes:
        mean_dist: ``(M, K, K)`` mm, mean distance of every keypoint pair over the seeds.
        rigid: ``(M, K, K)`` bool, pairs whose distance varies by less than ``rigid_spread_mm``
            over the seeds (and are at least 5 mm apart): near-rigid links of the body.
        side: ``(M, K)`` +1 / -1 / 0: the side of the body (left +) each keypoint is on in
            the seeds (0 when not consistently off the midline by ``side_min_mm``).
        midline: Indices of keypoints without a left/right partner, in skeleton order; the
            first three define the body axis (forward = first minus the next two).
    """

    mean_dist: np.ndarray
    rigid: np.ndarray
    side: np.ndarray
    midline: list[int]
    min_dist: np.ndarray | None = None
    max_dist: np.ndarray | None = None

    @classmethod
    def from_seeds(cls, skeleton: Skeleton, poses: list[np.ndarray], rigid_spread_mm: float = 1.0,
                   side_min_mm: float = 3.0) -> BodyModel:
        mirror = skeleton.mirror_index()
        midline = [k for k in range(skeleton.n_keypoints) if mirror[k] == k]
        stack = np.stack(poses) if poses else np.full((1, 1, skeleton.n_keypoints, 3), np.nan)
        d = np.linalg.norm(stack[:, :, :, None] - stack[:, :, None], axis=-1)  # (S, M, K, K)
        with np.errstate(invalid="ignore"), _quiet():
            mean = np.nanmean(d, axis=0)
            lo, hi = np.nanmin(d, axis=0), np.nanmax(d, axis=0)
            spread = hi - lo
            n_ok = np.isfinite(d).sum(axis=0)
        rigid = (n_ok >= 2) & (spread < rigid_spread_mm) & (mean > 5.0)
        lat = np.stack([_lateral(p, midline) for p in poses]) if poses else np.full((1,) + stack.shape[1:3], np.nan)
        with _quiet():
            mean_sign = np.nanmean(np.sign(lat), axis=0)
            consistent = np.nanmin(np.abs(lat), axis=0) > side_min_mm
        side = np.where(consistent & (np.abs(mean_sign) == 1), np.sign(mean_sign), 0)
        return cls(mean, rigid, np.nan_to_num(side).astype(int), midline, lo, hi)

    def shape_residual(self, x3: np.ndarray) -> np.ndarray:
        """``(M, K)`` mm: median deviation of each keypoint's rigid-link lengths from the seeds
        (NaN with fewer than 2 rigid partners located)."""
        d = np.linalg.norm(x3[:, :, None] - x3[:, None], axis=-1)
        dev = np.where(self.rigid, np.abs(d - self.mean_dist), np.nan)
        with _quiet():
            med = np.nanmedian(dev, axis=2)
        n = np.isfinite(dev).sum(axis=2)
        return np.where(n >= 2, med, np.nan)

    def range_residual(self, x3: np.ndarray, spread_factor: float = 0.0,
                       min_partners: int = 3) -> np.ndarray:
        """``(M, K)`` mm: median, over every other located keypoint, of how far the distance
        to it lies outside the range the seeds showed (negative inside the range), less
        ``spread_factor`` times the median width of those ranges (a keypoint that moved a lot
        across the seeds, a paw, is allowed more). A track on a consistent wrong dot (a
        distractor, another keypoint's dot) seen in 3+ views breaks many of these distances
        at once. NaN with fewer than ``min_partners`` partners."""
        if self.min_dist is None or self.max_dist is None:
            return np.full(x3.shape[:2], np.nan)
        d = np.linalg.norm(x3[:, :, None] - x3[:, None], axis=-1)
        dev = np.maximum(d - self.max_dist, self.min_dist - d)
        n_kp = x3.shape[1]
        dev[:, np.arange(n_kp), np.arange(n_kp)] = np.nan
        width = self.max_dist - self.min_dist
        width[:, np.arange(n_kp), np.arange(n_kp)] = np.nan
        with _quiet():
            med = np.nanmedian(dev, axis=2) - spread_factor * np.nanmedian(width, axis=2)
        n = np.isfinite(dev).sum(axis=2)
        return np.where(n >= min_partners, med, np.nan)

    def lateral(self, x3: np.ndarray) -> np.ndarray:
        """``(M, K)`` mm: signed distance of each keypoint from the body's midline plane
        (left positive); NaN where the body axis is unknown."""
        return _lateral(x3, self.midline)


def _lateral(x3: np.ndarray, midline: list[int]) -> np.ndarray:
    """Signed lateral offset (mm, left +) of every keypoint, from the first 3 midline points."""
    n_ind, n_kp = x3.shape[:2]
    out = np.full((n_ind, n_kp), np.nan)
    if len(midline) < 3:
        return out
    a, b, c = midline[:3]
    for m in range(n_ind):
        fwd = 2 * x3[m, a] - x3[m, b] - x3[m, c]
        fwd[2] = 0.0
        norm = np.linalg.norm(fwd)
        if not np.isfinite(norm) or norm < 1e-6:
            continue
        fwd /= norm
        left = np.cross([0.0, 0.0, 1.0], fwd)
        out[m] = (x3[m] - x3[m, b]) @ left
    return out


class _quiet:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)
