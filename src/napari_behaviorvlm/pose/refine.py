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
   re-triangulated. Neither this nor the retry below gives a keypoint a candidate in a view
   where a body hides it (``hidden``, :mod:`.occlusion`).
   Jumps and lost keypoints: a 3D point beyond ``max(jump_mm, 4 sigma)`` of its prediction, or
   a keypoint with no 3D point, is re-tried from the candidates nearest its reprojected
   prediction in every view (a lost keypoint only takes dots nobody holds; no keypoint takes a
   dot stage 3 gave to a decoy, ``decoy_dots``); if they agree in >= 2 views near the
   prediction they replace its labels.
   Identities and sides: a keypoint at the predicted place of a keypoint that has no 3D point
   (of its own individual, or within 6 mm of another individual's; and ``claim_margin_mm``
   farther from its own prediction) is relabeled as that keypoint; the same keypoint of two individuals is exchanged in every view when
   the exchange fits both predictions better by ``swap_margin_mm``; a left/right pair found with
   both keypoints on the wrong side of the body (:class:`BodyModel`, learned from the seeds) is
   swapped in every view. A keypoint still without a 3D point takes a point that 4+ views'
   free dots (held by no label) agree on where that point sits at its place on the body
   (``reacquire_min_views``, :mod:`.reacquire`). Views still above ``threshold_px`` (``flag_reproj_px`` for a point
   seen in 4+ views, which keeps 3) lose the label ("missing" wins) and the point is refit;
   so does a model label of a 3-view point that the other two views reject
   (``odd_view_agree_px``: :func:`_odd_view_out`);
   so does, after scoring, a keypoint flagged both SWAP and AMBIGUOUS
   (``drop_swap_ambiguous``), and a 2-view point whose views disagree away from its
   prediction (``drop_weak_max_views``: nothing says which view is right). Human labels
   never change.
3. **Confidence** of each model label (0..1)::

       conf = exp(-0.5 (e / 2 px)^2) * (0.5 + 0.5 min(n, 3) / 3) * (0.5 + 0.5 c_reasoner)

   with ``e`` the reprojection error (0.3 in place of the Gaussian term when there is no 3D
   point), ``n`` the number of views of the 3D point and ``c_reasoner`` the stage-3
   confidence; a flagged label is capped at 0.5. Human labels keep confidence 1.
4. **Flags** (:class:`~napari_behaviorvlm.core.pose.Flag`), on model labels only:

   - ``HIGH_REPROJ_ERROR``: reprojection error > ``flag_reproj_px`` (a point seen in 4+
     views loses such a label in stage 4 instead: "missing" wins);
   - ``FEW_VIEWS``: the keypoint has fewer than 2 views (no 3D point); set on every view of
     the keypoint when it has no label at all, so the frame shows up for review;
   - ``JUMP``: a point seen in at most ``jump_max_views`` views lies farther than
     ``max(jump_mm, 4 sigma)`` from the temporal prediction (sigma = the prediction's
     uncertainty in mm; a jump more views confirm is a track coming back to its dot);
   - ``SWAP``: exchanging a left/right pair (or the same keypoint of two individuals) fits
     the temporal prediction better than the labels do; or a left/right keypoint lies more
     than ``side_tolerance_mm`` on the wrong side of the body; or the point sits at another
     keypoint's place on the body (:meth:`BodyModel.place_residuals`: its distances to the
     other keypoints misfit its own seed distances by more than ``identity_residual`` and
     fit another keypoint's within ``identity_fit`` and ``identity_ratio`` times better: a
     paw on an ear's dot; at the left/right partner's place of a keypoint lying more than
     ``own_side_mm`` on its own side, a doubt the tracker keeps but does not show:
     :func:`place_doubts`);
   - ``LOW_CONFIDENCE`` (shown for review, does not steer the run): the model labels of a 3D
     point average a confidence below ``low_confidence`` (a 2-view point: its weaker label):
     few views, a small disagreement between them and a close call in stage 3 together, none
     of which a rule above flags alone;
   - ``LOW_MODEL_CONFIDENCE``: raised by the reasoner (e.g. a model answer that failed
     validation, a failed request, or a model confidence below 0.5);
   - ``AMBIGUOUS``: a 2-view point (two views always agree with each other) that lies
     farther than ``max(unconfirmed_mm, unconfirmed_sigma * sigma)`` from its prediction, or
     farther than ``ambiguous_mm`` with a stage-3 margin below ``ambiguous_margin``; or a
     weakly supported point: at most ``weak_max_views`` views, a label more than
     ``weak_reproj_px`` off its reprojection and more than ``weak_mm`` from the prediction; or the
     keypoint's distances to all the other keypoints lie outside the seeds' ranges by more
     than ``range_tolerance_mm`` (median over its partners, less ``range_spread_factor``
     times the ranges' median width): a track on a consistent wrong dot, which no cross-view
     check can reject (shown on a point seen in at most ``range_shown_max_views`` views;
     on one more views confirm, mostly a pose no seed showed, a doubt the tracker holds
     without showing it: :func:`unshown_doubts`); or a point within ``decoy_mm`` of a
     body-attached distractor (an eye's shine, :mod:`~napari_behaviorvlm.pose.decoys`) placed by the frame's
     own labels: a paw by the face that took the eye's dot in every view that sees it.
     A flagged keypoint is re-anchored on the body in the next frame (``pipeline.predict_3d``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

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
from napari_behaviorvlm.geometry.vectors import vector_length
from napari_behaviorvlm.pose.candidates import Candidates
from napari_behaviorvlm.pose.reacquire import reacquire_lost

if TYPE_CHECKING:  # decoys.py builds on this module
    from napari_behaviorvlm.pose.decoys import Decoys

__all__ = ["FrameResult", "RefineParams", "nanmedian_last", "place_doubts", "refine_frame",
           "score_frame", "seed_pair_distances", "unshown_doubts"]

HUMAN_WEIGHT = 10.0
PARTLY_SEEN_MM = 5.0  # extra range of a keypoint pair that not every seed showed


def nanmedian_last(values: np.ndarray) -> np.ndarray:
    """``np.nanmedian(values, axis=-1)`` without its masked-array detour (the same numbers,
    ~10x faster on the small ``(M, K, K)`` arrays of the flag rules, which run every frame):
    NaN where a row has no finite value, and no warning."""
    values = np.asarray(values, dtype=float)
    ordered = np.sort(values, axis=-1)  # NaN last
    count = (~np.isnan(values)).sum(axis=-1)
    low = np.take_along_axis(ordered, (np.maximum(count - 1, 0) // 2)[..., None], axis=-1)[..., 0]
    high = np.take_along_axis(ordered, (count // 2)[..., None], axis=-1)[..., 0]
    return np.where(count > 0, (low + high) / 2.0, np.nan)


def _setting_converter(name: str, kind: type):
    """A converter that takes a setting to ``kind`` (float, int or bool) or raises a ValueError
    naming the setting (settings come back from a project file a person may have edited)."""
    def convert(value: Any) -> Any:
        if kind is bool and isinstance(value, (bool, np.bool_)):
            return bool(value)
        if kind is not bool and isinstance(value, (int, float, np.integer, np.floating)) \
                and not isinstance(value, (bool, np.bool_)):
            if kind is float:
                return float(value)
            if float(value).is_integer():
                return int(value)
        raise ValueError(f"RefineParams.{name} must be {kind.__name__}, got {value!r}; "
                         "fix or remove it in the project's pose_labeling settings")
    return convert


def _typed_settings(cls: type, fields: list[attrs.Attribute]) -> list[attrs.Attribute]:
    kinds = {"float": float, "int": int, "bool": bool}
    return [f.evolve(converter=_setting_converter(f.name, kinds[str(f.type)])) for f in fields]


@attrs.define(frozen=True, field_transformer=_typed_settings)
class RefineParams:
    """Thresholds of stage 4 and of the flag rules (px, mm).

    Attributes:
        threshold_px: RANSAC inlier threshold and gate of the alternative hypotheses.
        flag_reproj_px: HIGH_REPROJ_ERROR above this reprojection error.
        jump_mm: JUMP when farther than ``max(jump_mm, 4 sigma)`` from the prediction.
        ambiguous_margin: AMBIGUOUS below this stage-3 margin (with <= 2 views).
        swap_margin_mm: SWAP when the exchanged pair fits the prediction better by this much.
        reassign_sigma_px: Scale of the reprojection cost when re-solving a view.
        side_tolerance_mm: A left/right keypoint is on the wrong side of the body when it is
            more than this beyond the midline plane.
        range_tolerance_mm: AMBIGUOUS when a keypoint's distances to the other keypoints lie
            outside the seeds' range by more than this (median over its partners).
        range_spread_factor: Allowance of the range rule per mm of the ranges' median width.
        range_shown_max_views: The range rule is shown (AMBIGUOUS) on a point seen in at most
            this many views; on a point more views confirm it is a doubt the tracker holds
            without showing it (:func:`unshown_doubts`): a pose no seed showed (a paw raised
            to groom) is out of range as a whole, and on the benchmark sessions 452 of 491
            such points seen in 3+ views were right.
        ambiguous_mm: The small-margin rule needs the 2-view point this far from its
            prediction (a small margin near the prediction is two similar dots, both fine).
        unconfirmed_mm, unconfirmed_sigma: AMBIGUOUS when a 2-view point lies farther than
            ``max(unconfirmed_mm, unconfirmed_sigma * sigma)`` from its prediction.
        identity_residual: SWAP when a keypoint's distances to the others misfit its own
            place on the body (seed distances) by more than this (median, in units of the
            seeds' tolerance) ...
        identity_fit: ... fit another keypoint's place within this ...
        identity_ratio: ... and ``identity_ratio`` times better than their own.
        rigid_pair_mm, rigid_body_mm, rigid_tolerance_mm: OFF_RIGID_PAIR when a member of a
            rigid left/right pair lies more than ``rigid_tolerance_mm`` outside the seeds'
            range of its distance to the partner *and* of its distance to its nearest midline
            keypoint (:meth:`BodyModel.off_rigid_pair`). Rigid: the pair's distance varied less
            than ``rigid_pair_mm`` over the seeds and each member's distances to the midline
            keypoints less than ``rigid_body_mm`` (median): the ears, not the paws.
        own_side_mm: ... except at its left/right partner's place for a keypoint more than
            this on its own side of the body's midline plane (a doubt the tracker keeps but
            the user is not shown: :func:`place_doubts`).
        drop_swap_ambiguous: A model keypoint flagged both SWAP and AMBIGUOUS loses its
            labels (an identity doubt another rule confirms; 86 % of them were > 5 mm off on
            the tuning sessions).
        odd_view_agree_px: A point seen in exactly 3 views loses a model label more than
            ``threshold_px`` from the point its other two views triangulate when those two
            agree within this many px (0: off; :func:`_odd_view_out`) ...
        odd_view_clear_mm: ... unless the two put it within this distance of another
            individual's keypoint (0: everywhere).
        drop_weak_max_views: With ``drop_swap_ambiguous``, a weakly supported model keypoint
            (see ``weak_*``) seen in at most this many views loses its labels too (0: off).
        claim_margin_mm: A model keypoint whose 3D point lies near another keypoint's
            prediction (within ``max(6 mm, 2 sigma)``, 6 mm for another individual's) that has
            no 3D point, and this much
            closer to it than to its own prediction, is relabeled as that keypoint (``inf``:
            off).
        jump_max_views: JUMP only for a point seen in at most this many views (a jump that
            more views confirm is a track coming back to its dot, not an error).
        weak_max_views, weak_reproj_px, weak_mm: AMBIGUOUS when a point seen in at most
            ``weak_max_views`` views has a label more than ``weak_reproj_px`` from its
            reprojection (its few views disagree) and lies more than ``weak_mm`` from its
            prediction (the window disagrees too).
        decoy_mm: AMBIGUOUS when a point lies within this distance of one of its individual's
            decoys (seed-learned distractors such as the eyes' shine), placed by the frame's
            own labels (0: off).
        low_confidence: LOW_CONFIDENCE (review only) on the labels of a 3D point whose model
            labels' confidence averages below this, or, for a point seen in exactly 2 views,
            whose weaker model label's confidence is below this (two views always agree: the
            point is no surer than its weaker view) (0: off).
        reacquire_min_views: a lost keypoint (no 3D point) takes a 3D point that this many
            views' free dots agree on, where it sits at the keypoint's place on the body
            (:mod:`.reacquire`; below 2: off).
    """

    threshold_px: float = 4.0
    flag_reproj_px: float = 3.5
    jump_mm: float = 12.0
    ambiguous_margin: float = 0.3
    swap_margin_mm: float = 2.0
    reassign_sigma_px: float = 1.5
    side_tolerance_mm: float = 2.0
    range_tolerance_mm: float = 5.0
    range_spread_factor: float = 0.2
    range_shown_max_views: int = 2
    ambiguous_mm: float = 6.0
    unconfirmed_mm: float = 6.0
    unconfirmed_sigma: float = 3.0
    weak_max_views: int = 3
    weak_reproj_px: float = 1.5
    weak_mm: float = 5.0
    identity_residual: float = 1.2
    identity_fit: float = 0.8
    identity_ratio: float = 1.5
    own_side_mm: float = 5.0
    rigid_pair_mm: float = 2.0
    rigid_body_mm: float = 6.5
    rigid_tolerance_mm: float = 3.0
    jump_max_views: int = 3
    drop_swap_ambiguous: bool = True
    drop_weak_max_views: int = 2
    odd_view_agree_px: float = 0.5
    odd_view_clear_mm: float = 20.0
    claim_margin_mm: float = 3.0
    decoy_mm: float = 5.0
    low_confidence: float = 0.4
    reacquire_min_views: int = 4


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
        unshown_doubt: ``(M, K)`` uint16, the flag bits the tracker holds on a model
            keypoint without showing them (:func:`unshown_doubts`); None = none.
    """

    points2d: np.ndarray
    confidence: np.ndarray
    reproj_error: np.ndarray
    flags: np.ndarray
    points3d: np.ndarray
    n_views: np.ndarray
    n_changed: int = 0
    n_dropped: int = 0
    unshown_doubt: np.ndarray | None = None


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
    decoys: Decoys | None = None,
    hidden: np.ndarray | None = None,
    decoy_dots: Sequence[np.ndarray] | None = None,
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
            is flagged SWAP, one at another keypoint's place SWAP, one outside the seeds'
            distance ranges AMBIGUOUS.
        decoys: Distractors learned from the seeds: a point at one is flagged AMBIGUOUS.
        hidden: ``(C, M, K)`` bool: a body hides the keypoint from the view
            (:mod:`.occlusion`): the hypotheses give it no candidate there.
        decoy_dots: Per view, bool ``(N,)`` over its candidates: the dots stage 3 gave to a
            decoy (an eye's shine) at a lower cost than any keypoint's
            (:attr:`~napari_behaviorvlm.pose.reasoner.ViewAssignment.decoy_dots`); the
            neighbouring-candidate hypothesis does not take them.
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
        near_pred = vector_length(x3 - predicted3d) < np.maximum(3.0 * sigma3d, 6.0)
        trusted = (res.n_views >= 3) | ((res.n_views == 2) & near_pred)
        trusted &= np.isfinite(x3).all(axis=-1)
        if trusted.any():
            proj = group.project(x3)  # (C, M, K, 2)
            for c in range(n_cam):
                seen = trusted if hidden is None else trusted & ~hidden[c]
                changed = _resolve_view(c, proj[c], seen, obs, human, index, candidates[c], params)
                n_changed += changed
            res = triangulate_ransac(obs, group, params.threshold_px, weights=_weights(human, assign_conf))
        # a trusted point that jumped away from a confident prediction: try the candidates
        # nearest the prediction in every view (the "neighbouring candidate" hypothesis in 3D)
        if _retry_jumps(group, res.points3d, obs, human, index, candidates, predicted3d,
                        sigma3d, params, hidden, decoy_dots):
            n_changed += 1
            res = triangulate_ransac(obs, group, params.threshold_px, weights=_weights(human, assign_conf))
        # "missing" wins where a model label still does not fit a 3D point (a point seen in
        # 4+ views also loses a label that would be flagged HIGH_REPROJ_ERROR: 3 remain)
        limit = np.where(res.n_views >= 4, params.flag_reproj_px, params.threshold_px)
        bad = (~human) & np.isfinite(res.reproj_error) & (res.reproj_error > limit[None])
        bad &= (res.n_views >= 2)[None]
        bad |= _odd_view_out(obs, group, _weights(human, assign_conf), human, res.n_views,
                             res.points3d, params)
        if bad.any():
            n_dropped = int(bad.sum())
            obs[bad] = np.nan
            index[bad] = -1
        x3, n_views = res.points3d, res.n_views
        x3 = np.where((n_views >= 2)[..., None], x3, np.nan)
        if bad.any():
            # refit on the kept labels so the 3D point uses exactly the labels shown
            x3, n_views = _retriangulate(obs, group, _weights(human, assign_conf))
        if _fix_identities(x3, predicted3d, obs, human, index, params.swap_margin_mm):
            n_changed += 1
            x3, n_views = _retriangulate(obs, group, _weights(human, assign_conf))
        if body is not None and _fix_sides(skeleton, body, x3, obs, human, index):
            n_changed += 1
            x3, n_views = _retriangulate(obs, group, _weights(human, assign_conf))
        if params.claim_margin_mm < np.inf and _give_to_missing(
                x3, predicted3d, sigma3d, obs, human, index, params.claim_margin_mm):
            n_changed += 1
            x3, n_views = _retriangulate(obs, group, _weights(human, assign_conf))
        if body is not None and reacquire_lost(group, skeleton, body, x3, obs, human, index,
                                               candidates, params, hidden, decoy_dots):
            n_changed += 1
            x3, n_views = _retriangulate(obs, group, _weights(human, assign_conf))
        if body is not None:
            dropped = _drop_outside_body(body, x3, obs, human, index)
            if dropped:
                n_dropped += dropped
                n_views = np.isfinite(obs[..., 0]).sum(axis=0)
    else:
        x3 = triangulate(obs, group, weights=_weights(human, assign_conf))
        n_views = np.isfinite(obs[..., 0]).sum(axis=0)
    out = score_frame(group, skeleton, obs, human, x3, n_views, assign_conf, assign_margin,
                      assign_flags, predicted3d, sigma3d, params, body, decoys)
    if use_refinement and params.drop_swap_ambiguous:
        # an identity doubt the other rules confirm: "missing" wins (the keypoint is left
        # without a 3D point, flagged FEW_VIEWS and placed on the body in the next frame)
        kp = np.bitwise_or.reduce(out.flags, axis=0)
        if out.unshown_doubt is not None:  # the tracker's doubts count here as flags
            kp = kp | out.unshown_doubt
        both = int(Flag.SWAP | Flag.AMBIGUOUS)
        doubt = (kp & both) == both
        # two views that disagree, away from the window: nothing says which view is right
        # (beyond what the prediction's own uncertainty allows: fast motion is not a doubt)
        doubt |= _weakly_supported(out.reproj_error, x3, n_views, predicted3d,
                                  params.drop_weak_max_views, params,
                                  params.unconfirmed_sigma * np.nan_to_num(sigma3d, nan=np.inf))
        doubt &= ~human.any(axis=0) & np.isfinite(x3).all(axis=-1)
        if doubt.any():
            n_dropped += int(np.isfinite(obs[:, doubt, 0]).sum())
            obs[:, doubt] = np.nan
            x3 = np.where(doubt[..., None], np.nan, x3)
            n_views = np.where(doubt, 0, n_views)
            out = score_frame(group, skeleton, obs, human, x3, n_views, assign_conf,
                              assign_margin, assign_flags, predicted3d, sigma3d, params, body,
                              decoys)
    out.n_changed, out.n_dropped = n_changed, n_dropped
    return out


def _retry_jumps(group: CameraGroup, x3: np.ndarray, obs: np.ndarray, human: np.ndarray,
                 index: np.ndarray, candidates: list[Candidates], pred: np.ndarray,
                 sigma: np.ndarray, params: RefineParams, hidden: np.ndarray | None = None,
                 decoy_dots: Sequence[np.ndarray] | None = None) -> bool:
    """For each keypoint whose 3D point lies beyond ``max(jump_mm, 4 sigma)`` of its
    prediction, or that has no 3D point, triangulate the candidates nearest the reprojected
    prediction (for a lost keypoint: only dots nobody holds; none in a view where ``hidden``
    ``(C, M, K)`` says a body hides it; never a dot stage 3 gave to a decoy, ``decoy_dots``
    per view bool ``(N,)``); when those agree (>= 2 inlier
    views) near the prediction, they replace the keypoint's labels (and leave the keypoints
    that held them). Returns whether anything changed."""
    limit = np.maximum(params.jump_mm, 4.0 * np.nan_to_num(sigma, nan=np.inf))
    dist = vector_length(x3 - pred)
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
            if hidden is not None and hidden[c, m, k]:
                continue
            d = vector_length(candidates[c].xy - p2[c])
            if lost[m, k]:  # a lost keypoint only takes a dot nobody holds
                d[index[c][index[c] >= 0]] = np.inf
            if decoy_dots is not None and len(decoy_dots[c]) == len(d):
                d[decoy_dots[c]] = np.inf
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
        dh = vector_length(cand.xy[None] - hxy[:, None])
        taken_by_human = (dh < 1.5).any(axis=0)
    pts = proj[rows[:, 0], rows[:, 1]]
    d = vector_length(pts[:, None] - cand.xy[None])
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


def _weakly_supported(reproj_error: np.ndarray, points3d: np.ndarray, n_views: np.ndarray,
                     predicted3d: np.ndarray, max_views: int, params: RefineParams,
                     beyond_mm: np.ndarray | float = 0.0) -> np.ndarray:
    """``(M, K)`` bool: a 3D point seen in at most ``max_views`` views whose views disagree
    (a label more than ``weak_reproj_px`` off its reprojection, ``reproj_error`` ``(C, M, K)``
    px) and that lies more than ``max(weak_mm, beyond_mm)`` from its prediction (the window
    disagrees too)."""
    has3 = np.isfinite(points3d).all(axis=-1)
    haspred = np.isfinite(predicted3d).all(axis=-1)
    worst = np.where(np.isfinite(reproj_error), reproj_error, 0.0).max(axis=0)
    weak = has3 & haspred & (n_views <= max_views) & (worst > params.weak_reproj_px)
    far = vector_length(points3d - predicted3d) > np.maximum(params.weak_mm, beyond_mm)
    return weak & far


def score_frame(group: CameraGroup, skeleton: Skeleton, obs: np.ndarray, human: np.ndarray,
                points3d: np.ndarray, n_views: np.ndarray, assign_conf: np.ndarray,
                assign_margin: np.ndarray, assign_flags: np.ndarray, predicted3d: np.ndarray,
                sigma3d: np.ndarray, params: RefineParams, body: BodyModel | None = None,
                decoys: Decoys | None = None) -> FrameResult:
    """Reprojection errors, confidences and flags of one frame's final labels."""
    n_cam, n_ind, n_kp = obs.shape[:3]
    labeled = np.isfinite(obs[..., 0])
    err = reprojection_errors(points3d, obs, group).astype(np.float32)
    err[~labeled] = np.nan
    flags = np.zeros((n_cam, n_ind, n_kp), np.uint16)
    flags |= np.where(np.isfinite(err) & (err > params.flag_reproj_px),
                      int(Flag.HIGH_REPROJ_ERROR), 0).astype(np.uint16)
    flags |= assign_flags.astype(np.uint16) & int(Flag.LOW_MODEL_CONFIDENCE | Flag.AMBIGUOUS)
    kp_flags = np.zeros((n_ind, n_kp), np.uint16)
    kp_flags |= np.where(n_views < 2, int(Flag.FEW_VIEWS), 0).astype(np.uint16)
    has3 = np.isfinite(points3d).all(axis=-1)
    haspred = np.isfinite(predicted3d).all(axis=-1)
    dist = vector_length(points3d - predicted3d)
    far = has3 & haspred & (n_views == 2)
    # a close call in stage 3 that only 2 views support and that left the prediction
    close_call = labeled & (np.nan_to_num(assign_margin, nan=1e3) < params.ambiguous_margin)
    flags |= np.where(close_call & (far & (dist > params.ambiguous_mm))[None],
                      int(Flag.AMBIGUOUS), 0).astype(np.uint16)
    jump = has3 & haspred & (n_views <= params.jump_max_views)
    jump &= dist > np.maximum(params.jump_mm, 4.0 * sigma3d)
    kp_flags |= np.where(jump, int(Flag.JUMP), 0).astype(np.uint16)
    # two views agree by construction: a 2-view point away from its prediction is unconfirmed
    unconfirmed = far & (dist > np.maximum(params.unconfirmed_mm, params.unconfirmed_sigma * sigma3d))
    kp_flags |= np.where(unconfirmed, int(Flag.AMBIGUOUS), 0).astype(np.uint16)
    weak = _weakly_supported(err, points3d, n_views, predicted3d, params.weak_max_views, params)
    kp_flags |= np.where(weak, int(Flag.AMBIGUOUS), 0).astype(np.uint16)
    kp_flags |= _swap_flags(skeleton, points3d, predicted3d, params.swap_margin_mm)
    if decoys is not None and params.decoy_mm > 0:
        kp_flags |= np.where(_on_decoy(decoys, points3d, params.decoy_mm),
                             int(Flag.AMBIGUOUS), 0).astype(np.uint16)
    if body is not None:
        shown_body, unshown = _body_doubts(skeleton, body, points3d, n_views, params)
        kp_flags |= shown_body
        off_rigid = body.off_rigid_pair(skeleton, points3d, params.rigid_pair_mm,
                                        params.rigid_body_mm)
        kp_flags |= np.where(np.nan_to_num(off_rigid) > params.rigid_tolerance_mm,
                             int(Flag.OFF_RIGID_PAIR), 0).astype(np.uint16)
        lat = body.lateral(points3d) * body.side
        kp_flags |= np.where(np.nan_to_num(lat) < -params.side_tolerance_mm,
                             int(Flag.SWAP), 0).astype(np.uint16)
    unshown_doubt = None
    if body is not None:
        unshown_doubt = np.where((labeled & ~human).any(axis=0), unshown, 0).astype(np.uint16)
    any_label = labeled.any(axis=0)
    spread = np.where(labeled | ~any_label[None], kp_flags[None], 0).astype(np.uint16)
    flags |= spread
    flags[human] = 0
    geom = np.where(np.isfinite(err), np.exp(-0.5 * (np.nan_to_num(err) / 2.0) ** 2), 0.3)
    support = 0.5 + 0.5 * np.minimum(n_views, 3)[None] / 3.0
    conf = geom * support * (0.5 + 0.5 * np.clip(np.nan_to_num(assign_conf, nan=0.5), 0, 1))
    if params.low_confidence > 0:
        # review only: a 3D point whose model labels average a low confidence
        model = labeled & ~human
        n_model = model.sum(axis=0)
        mean_conf = np.where(model, conf, 0.0).sum(axis=0) / np.maximum(n_model, 1)
        weaker = np.where(model, conf, np.inf).min(axis=0)
        low = (n_views >= 2) & (n_model > 0) & ~human.any(axis=0)
        low &= np.where(n_views == 2, weaker, mean_conf) < params.low_confidence
        flags |= np.where(model & low[None], int(Flag.LOW_CONFIDENCE), 0).astype(np.uint16)
    conf = np.where(flags > 0, np.minimum(conf, 0.5), conf)
    conf = np.where(human, 1.0, conf)
    conf = np.where(labeled, conf, np.nan).astype(np.float32)
    return FrameResult(obs, conf, err, flags, points3d, n_views.astype(np.int64),
                       unshown_doubt=unshown_doubt)


def _on_decoy(decoys: Decoys, x3: np.ndarray, within_mm: float) -> np.ndarray:
    """``(M, K)`` bool: points ``x3`` ``(M, K, 3)`` mm within ``within_mm`` of one of their
    individual's decoys, placed by ``x3`` itself (a decoy's anchors are the ears and the back,
    ~10 mm from an eye: they never count as at it)."""
    near = np.zeros(x3.shape[:2], bool)
    if not len(decoys):
        return near
    placed, _ = decoys.predict(x3, np.ones(x3.shape[:2]))
    for m, spot in zip(decoys.individual, placed):
        with np.errstate(invalid="ignore"):
            near[m] |= vector_length(x3[m] - spot) < within_mm
    return near


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


def _odd_view_out(obs: np.ndarray, group: CameraGroup, weights: np.ndarray, human: np.ndarray,
                  n_views: np.ndarray, points3d: np.ndarray, params: RefineParams) -> np.ndarray:
    """``(C, M, K)`` bool: the model labels of points seen in exactly 3 views (all RANSAC
    inliers, ``n_views`` ``(M, K)``) that lie more than ``threshold_px`` from the point their
    other two views triangulate, where those two agree within ``odd_view_agree_px``.

    One wrong dot among three views (a view where the keypoint is hidden and a dot lies near
    its epipolar lines) pulls the all-view fit millimetres off while no view's reprojection
    error passes the RANSAC gate: the fit spreads the miss over the three. The two views that
    agree win; a point where more than one view would go keeps its labels, and so does one
    whose two agreeing views put it within ``odd_view_clear_mm`` of another individual's
    keypoint (``points3d`` ``(M, K, 3)`` mm): there two views may agree by chance on the other
    mouse's dot.
    """
    odd = np.zeros(obs.shape[:3], bool)
    if not params.odd_view_agree_px > 0:
        return odd
    labeled = np.isfinite(obs[..., 0])
    three = (labeled.sum(axis=0) == 3) & (n_views == 3) & (labeled & ~human).any(axis=0)
    if not three.any():
        return odd
    # every view left out in turn, all at once: axis 1 is the view left out
    n_cam = obs.shape[0]
    sub, w = obs[:, three], weights[:, three]  # (C, n, 2), (C, n)
    left_out = np.eye(n_cam, dtype=bool)[:, :, None]  # (C, C_out, 1)
    others = np.where(left_out[..., None], np.nan, sub[:, None])  # (C, C_out, n, 2)
    x = triangulate(others, group, weights=np.broadcast_to(w[:, None], others.shape[:-1]))
    err = reprojection_errors(x, np.broadcast_to(sub[:, None], others.shape), group)
    own = np.diagonal(err, axis1=0, axis2=1).T  # (C_out, n): each view against the other two
    rest = np.where(left_out | ~labeled[:, three][:, None], 0.0, err).max(axis=0)  # (C_out, n)
    hit = labeled[:, three] & ~human[:, three] & (own > params.threshold_px)
    hit &= rest < params.odd_view_agree_px
    if points3d.shape[0] > 1 and params.odd_view_clear_mm > 0:
        other_mice = np.stack([np.delete(points3d, m, axis=0).reshape(-1, 3)
                               for m in np.nonzero(three)[0]])  # (n, (M - 1) K, 3)
        near = vector_length(x[:, :, None] - other_mice[None]) < params.odd_view_clear_mm
        hit &= ~near.any(axis=-1)
    odd[:, three] = hit & (hit.sum(axis=0) == 1)[None]
    return odd


def _retriangulate(obs: np.ndarray, group: CameraGroup, weights: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """3D points ``(M, K, 3)`` mm from relabeled views (NaN with fewer than 2 views) and the
    view counts ``(M, K)``."""
    n_views = np.isfinite(obs[..., 0]).sum(axis=0)
    x3 = triangulate(obs, group, weights=weights)
    return np.where((n_views >= 2)[..., None], x3, np.nan), n_views


def _give_to_missing(x3: np.ndarray, pred: np.ndarray, sigma: np.ndarray, obs: np.ndarray,
                     human: np.ndarray, index: np.ndarray, margin: float) -> bool:
    """Relabel a keypoint that sits at another, missing keypoint's predicted place.

    Keypoint ``b`` (of any individual) has no 3D point; keypoint ``a`` (of the same or of
    another individual) has one that lies within ``max(6 mm, 2 sigma_b)`` of ``b``'s prediction
    (6 mm when ``a`` belongs to another individual) and more than ``margin`` mm closer to it than to its own prediction: ``a`` took ``b``'s dots
    (a paw hidden in some views takes the other paw's dots and leaves it unlabeled; with two
    mice, a paw takes the other mouse's tail dot). ``a``'s labels go to ``b`` in every view and
    ``a`` is left missing. Human labels never move. Returns whether anything changed."""
    n_ind, n_kp = x3.shape[:2]
    changed = False
    has3 = np.isfinite(x3).all(axis=-1)
    haspred = np.isfinite(pred).all(axis=-1)
    model = ~human.any(axis=0)
    for mb, b in zip(*np.nonzero(~has3 & haspred & model)):
        best, source = np.inf, None
        for ma, a in zip(*np.nonzero(has3 & model)):
            d_ab = float(np.linalg.norm(x3[ma, a] - pred[mb, b]))
            d_aa = float(np.linalg.norm(x3[ma, a] - pred[ma, a])) if haspred[ma, a] else np.inf
            gate = max(6.0, 2.0 * sigma[mb, b]) if ma == mb else 6.0
            if d_ab < gate and d_ab + margin < d_aa and d_ab < best:
                best, source = d_ab, (ma, a)
        if source is None:
            continue
        obs[:, mb, b], index[:, mb, b] = obs[:, source[0], source[1]], index[:, source[0], source[1]]
        obs[:, source[0], source[1]], index[:, source[0], source[1]] = np.nan, -1
        x3[mb, b], x3[source] = x3[source], np.nan
        has3[mb, b], has3[source] = True, False
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


def _body_doubts(skeleton: Skeleton, body: BodyModel, x3: np.ndarray, n_views: np.ndarray,
                 params: RefineParams) -> tuple[np.ndarray, np.ndarray]:
    """The rules on the body learned from the seeds: ``(shown, unshown)`` flag bits, ``(M, K)``
    uint16, from the 3D points ``x3`` ``(M, K, 3)`` mm and their views ``n_views`` ``(M, K)``.

    SWAP: at another keypoint's place (:func:`place_doubts`; at the left/right partner's place
    clearly on its own side: unshown). AMBIGUOUS: the keypoint's distances to the others lie
    outside the seeds' ranges (:meth:`BodyModel.range_residual` above ``range_tolerance_mm``;
    seen in more than ``range_shown_max_views`` views: unshown, a pose no seed showed more
    often than a wrong dot).
    """
    at_other, at_partner = place_doubts(skeleton, body, x3, params)
    resid = body.range_residual(x3, params.range_spread_factor)
    off_range = np.nan_to_num(resid) > params.range_tolerance_mm
    seen_more = n_views > params.range_shown_max_views
    swap, ambiguous = int(Flag.SWAP), int(Flag.AMBIGUOUS)
    shown = np.where(at_other, swap, 0) | np.where(off_range & ~seen_more, ambiguous, 0)
    unshown = np.where(at_partner, swap, 0) | np.where(off_range & seen_more, ambiguous, 0)
    return shown.astype(np.uint16), unshown.astype(np.uint16)


def unshown_doubts(skeleton: Skeleton, body: BodyModel, x3: np.ndarray, n_views: np.ndarray,
                   params: RefineParams) -> np.ndarray:
    """``(M, K)`` uint16: the flag bits the tracker holds on a keypoint without showing them
    (the pipeline's re-anchoring, revisit and keep check, stage 4's SWAP + AMBIGUOUS drop;
    :func:`_body_doubts`). Worked out from the 3D points and views alone, so a pose table
    gives back the doubts its run held."""
    return _body_doubts(skeleton, body, x3, n_views, params)[1]


def place_doubts(skeleton: Skeleton, body: BodyModel, x3: np.ndarray, params: RefineParams
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The body-place identity rule: ``(shown, unshown)``, ``(M, K)`` bool.

    A point sits at another keypoint's place when its distances to the other located
    keypoints misfit its own seed distances (:meth:`BodyModel.place_residuals`, median >
    ``identity_residual``) but fit another keypoint's within ``identity_fit`` and
    ``identity_ratio`` times better (+0.3): a paw tracked on an ear's dot. ``shown`` is flagged
    SWAP. ``unshown`` are the hits at the left/right partner's place of a keypoint lying more
    than ``own_side_mm`` on its own side of the body: distances cannot tell a side, and on the
    tuning sessions 44 of 47 such hits were right labels. They are not shown to the user, but
    the tracker still doubts them (the pipeline's re-anchoring, revisit and keep check, and
    stage 4's SWAP + AMBIGUOUS drop): dropping them from the tracker cost accuracy.
    """
    res = body.place_residuals(x3)
    own = np.diagonal(res, axis1=1, axis2=2)

    def hit(other: np.ndarray) -> np.ndarray:
        return (own > params.identity_residual) & (other < params.identity_fit) \
            & (params.identity_ratio * other + 0.3 < own)

    n_ind, n_kp = x3.shape[:2]
    own_side = (body.side != 0) & (np.nan_to_num(body.lateral(x3) * body.side) > params.own_side_mm)
    partner = np.zeros((n_ind, n_kp, n_kp), bool)
    partner[:, np.arange(n_kp), skeleton.mirror_index()] = own_side
    shown = hit(_other_place(res, partner))
    return shown, hit(_other_place(res)) & ~shown


def seed_pair_distances(poses: np.ndarray | Sequence[np.ndarray]
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distance of every keypoint pair over the seed poses.

    Args:
        poses: ``(S, M, K, 3)`` mm (or S arrays ``(M, K, 3)``), NaN = not labeled.

    Returns:
        ``mean``, ``lo``, ``hi``: ``(M, K, K)`` mm, the mean, smallest and largest distance
        (NaN for a pair no seed showed); ``n_seen``: ``(M, K, K)`` int, seeds that showed both.
    """
    stack = np.asarray(poses, dtype=float)
    d = vector_length(stack[:, :, :, None] - stack[:, :, None])  # (S, M, K, K)
    with np.errstate(invalid="ignore"), _quiet():
        mean = np.nanmean(d, axis=0)
        lo, hi = np.nanmin(d, axis=0), np.nanmax(d, axis=0)
    return mean, lo, hi, np.isfinite(d).sum(axis=0)


@attrs.define(eq=False)
class BodyModel:
    """Shape priors learned from the seed frames' 3D poses (one set per individual).

    Attributes:
        mean_dist: ``(M, K, K)`` mm, mean distance of every keypoint pair over the seeds.
        side: ``(M, K)`` +1 / -1 / 0: the side of the body (left +) each keypoint is on in
            the seeds (0 when not consistently off the midline by ``side_min_mm``).
        midline: Indices of keypoints without a left/right partner, in skeleton order; the
            first three define the body axis (forward = first minus the next two).
        min_dist, max_dist: ``(M, K, K)`` mm, the range of every pair's distance over the seeds.
        n_seen: ``(M, K, K)`` int, how many seeds showed both keypoints of the pair.
    """

    mean_dist: np.ndarray
    side: np.ndarray
    midline: list[int]
    min_dist: np.ndarray | None = None
    max_dist: np.ndarray | None = None
    n_seen: np.ndarray | None = None

    @classmethod
    def from_seeds(cls, skeleton: Skeleton, poses: list[np.ndarray], side_min_mm: float = 3.0
                   ) -> BodyModel:
        mirror = skeleton.mirror_index()
        midline = [k for k in range(skeleton.n_keypoints) if mirror[k] == k]
        stack = np.stack(poses) if poses else np.full((1, 1, skeleton.n_keypoints, 3), np.nan)
        mean, lo, hi, n_ok = seed_pair_distances(stack)
        lat = np.stack([_lateral(p, midline) for p in poses]) if poses else np.full((1,) + stack.shape[1:3], np.nan)
        with _quiet():
            mean_sign = np.nanmean(np.sign(lat), axis=0)
            consistent = np.nanmin(np.abs(lat), axis=0) > side_min_mm
        side = np.where(consistent & (np.abs(mean_sign) == 1), np.sign(mean_sign), 0)
        # only a keypoint with a left/right partner has a side (a tail tip that happened to
        # lie left of the midline in every seed does not)
        side = np.where(mirror != np.arange(skeleton.n_keypoints), side, 0)
        return cls(mean, np.nan_to_num(side).astype(int), midline, lo, hi, n_ok)

    def range_residual(self, x3: np.ndarray, spread_factor: float = 0.0,
                       min_partners: int = 3) -> np.ndarray:
        """``(M, K)`` mm: median, over every other located keypoint, of how far the distance
        to it lies outside the range the seeds showed (negative inside the range), less
        ``spread_factor`` times the median width of those ranges (a keypoint that moved a lot
        across the seeds, a paw, is allowed more). A track on a consistent wrong dot (a
        distractor, another keypoint's dot) seen in 3+ views breaks many of these distances
        at once. A pair that not every seed showed is allowed ``PARTLY_SEEN_MM`` more. NaN
        with fewer than ``min_partners`` partners."""
        if self.min_dist is None or self.max_dist is None:
            return np.full(x3.shape[:2], np.nan)
        d = vector_length(x3[:, :, None] - x3[:, None])
        dev = np.maximum(d - self.max_dist, self.min_dist - d)
        n_kp = x3.shape[1]
        dev = np.where(self._partly_seen(), dev - PARTLY_SEEN_MM, dev)
        dev[:, np.arange(n_kp), np.arange(n_kp)] = np.nan
        width = self.max_dist - self.min_dist
        width[:, np.arange(n_kp), np.arange(n_kp)] = np.nan
        med = nanmedian_last(dev) - spread_factor * nanmedian_last(width)
        n = np.isfinite(dev).sum(axis=2)
        return np.where(n >= min_partners, med, np.nan)

    def place_residuals(self, x3: np.ndarray, min_partners: int = 3) -> np.ndarray:
        """How well each keypoint's 3D point sits at every keypoint's place on the body.

        The place of keypoint ``j`` is its distances to the other keypoints in the seeds. For
        a point ``x`` and a candidate identity ``j`` the residual is the median, over the
        located partners ``k`` (neither the keypoint itself nor ``j``), of
        ``|d(x, x_k) - mean_d(j, k)| / (1 mm + 0.5 spread(j, k))`` (``spread``: how much that
        distance varied over the seeds, so a paw is allowed more than an ear; a pair that not
        every seed showed gets ``PARTLY_SEEN_MM`` more). A track on another keypoint's dot (a
        paw on an ear's dot) fits that keypoint's place far better than its own.

        Returns:
            ``(M, K, K)``: ``[m, a, j]`` the residual of point ``a`` as keypoint ``j`` (NaN
            without a 3D point or with fewer than ``min_partners`` partners).
        """
        n_ind, n_kp = x3.shape[:2]
        out = np.full((n_ind, n_kp, n_kp), np.nan)
        if self.min_dist is None or self.max_dist is None or self.n_seen is None:
            return out
        eye = np.eye(n_kp, dtype=bool)
        for m in range(n_ind):
            ok = np.isfinite(x3[m]).all(axis=-1)
            d = vector_length(x3[m][:, None] - x3[m][None])  # (a, k)
            # point a as keypoint j against partner k: neither a itself nor j
            skip = eye[:, None, :] | eye[None, :, :] | ~ok[None, None, :]
            out[m] = np.where(ok[:, None], self._place_fit(m, d, skip, min_partners), np.nan)
        return out

    def point_residuals(self, x3: np.ndarray, point: np.ndarray, min_partners: int = 3,
                        rigid_partners: int = 0) -> np.ndarray:
        """``(M, K)``: the residual of a 3D ``point`` (mm) as each keypoint ``[m, j]`` of each
        individual, against that individual's located keypoints in ``x3`` ``(M, K, 3)`` (the
        measure of :meth:`place_residuals`, for a point no keypoint holds: a dot found again
        for a lost keypoint). ``rigid_partners`` > 0: only that many located partners count,
        those whose distance to ``j`` varied least over the seeds (a tail tip's place is its
        distance to the tail, not to a paw). NaN with fewer than ``min_partners`` partners."""
        n_ind, n_kp = x3.shape[:2]
        out = np.full((n_ind, n_kp), np.nan)
        if self.min_dist is None or self.max_dist is None or self.n_seen is None:
            return out
        eye = np.eye(n_kp, dtype=bool)
        for m in range(n_ind):
            ok = np.isfinite(x3[m]).all(axis=-1)
            d = vector_length(x3[m] - point)[None]  # (1, k)
            skip = eye | ~ok[None, :]  # (j, k)
            if rigid_partners > 0:
                spread = np.where(skip, np.inf, np.nan_to_num(self.max_dist[m] - self.min_dist[m],
                                                              nan=np.inf))
                rank = np.argsort(np.argsort(spread, axis=1, kind="stable"), axis=1)
                skip = skip | (rank >= rigid_partners)
            out[m] = self._place_fit(m, d, skip[None], min_partners)[0]
        return out

    def _place_fit(self, m: int, d: np.ndarray, skip: np.ndarray, min_partners: int
                   ) -> np.ndarray:
        """``(A, J)``: median over the partners ``k`` not in ``skip`` ``(A, J, K)`` of
        ``|d[a, k] - mean_d(j, k)| / (1 mm + 0.5 spread(j, k))`` for individual ``m`` (``d``
        ``(A, K)`` mm, distances of ``A`` points to its keypoints)."""
        spread = self.max_dist[m] - self.min_dist[m] + np.where(self._partly_seen()[m],
                                                                PARTLY_SEEN_MM, 0.0)
        tol = 1.0 + 0.5 * spread  # (J, K)
        dev = np.abs(d[:, None, :] - self.mean_dist[m][None]) / tol[None]
        dev = np.where(skip, np.nan, dev)
        n = np.isfinite(dev).sum(axis=2)
        return np.where(n >= min_partners, nanmedian_last(dev), np.nan)

    def off_rigid_pair(self, skeleton: Skeleton, x3: np.ndarray, rigid_pair_mm: float,
                       rigid_body_mm: float) -> np.ndarray:
        """``(M, K)`` mm: for each member of a rigid left/right pair, how far its distances to
        the partner and to its nearest midline keypoint (in the seeds) *both* lie outside the
        seeds' ranges (the smaller of the two); NaN for other keypoints or when a point is
        missing.

        Rigid: the pair is a body region of its own (the skeleton's ``ears``; 3 seeds can hold
        any pair still, as the paws of a short clip), every seed showed it, its distance varied
        less than ``rigid_pair_mm`` over them, and each member's distances to the midline
        keypoints varied less than ``rigid_body_mm`` (median): the ears (0.0-1.3 mm and
        1.5-5.7 mm on 36 simulated seed sets), not the hind paws, which 3 seeds can hold a
        near-constant 0.9-1.1 mm apart but which move along the body (7.5-9.7 mm). An ear tracked onto a paw's dot next to the
        head breaks both links; an ear whose partner is wrong breaks only one.
        """
        n_ind, n_kp = x3.shape[:2]
        out = np.full((n_ind, n_kp), np.nan)
        if self.min_dist is None or self.max_dist is None or self.n_seen is None or not self.midline:
            return out
        width = self.max_dist - self.min_dist
        full = int(self.n_seen.max())
        pair_regions = [sorted(idx) for idx in skeleton.region_indices().values() if len(idx) == 2]
        for m in range(n_ind):
            for a, b in skeleton.symmetry_indices():
                if sorted((a, b)) not in pair_regions:
                    continue
                moves = nanmedian_last(width[m][[a, b]][:, self.midline]).max()
                if not (self.n_seen[m, a, b] >= full and width[m, a, b] < rigid_pair_mm
                        and moves < rigid_body_mm):
                    continue
                for k, partner in ((a, b), (b, a)):
                    to_midline = self.mean_dist[m, k, self.midline]
                    if not np.isfinite(to_midline).any():
                        continue
                    near = self.midline[int(np.nanargmin(to_midline))]
                    d = vector_length(x3[m, k] - x3[m, [partner, near]])
                    outside = np.maximum(d - self.max_dist[m, k, [partner, near]],
                                         self.min_dist[m, k, [partner, near]] - d)
                    out[m, k] = np.min(outside)  # NaN when a point is missing
        return out

    def _partly_seen(self) -> np.ndarray:
        """``(M, K, K)`` bool: pairs not shown by every seed (their range from fewer seeds is
        too narrow: it is widened by ``PARTLY_SEEN_MM``)."""
        if self.n_seen is None:
            return np.zeros(self.mean_dist.shape, bool)
        return self.n_seen < max(2, int(self.n_seen.max()))

    def lateral(self, x3: np.ndarray) -> np.ndarray:
        """``(M, K)`` mm: signed distance of each keypoint from the body's midline plane
        (left positive); NaN where the body axis is unknown."""
        return _lateral(x3, self.midline)


def _other_place(res: np.ndarray, excluded: np.ndarray | None = None) -> np.ndarray:
    """``(M, K)`` smallest residual of each point as another keypoint (``res`` ``(M, K, K)``
    from :meth:`BodyModel.place_residuals`), leaving out the ``excluded`` identities."""
    skip = np.eye(res.shape[-1], dtype=bool)[None]
    if excluded is not None:
        skip = skip | excluded
    with _quiet():
        return np.nanmin(np.where(skip, np.nan, res), axis=2)


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
