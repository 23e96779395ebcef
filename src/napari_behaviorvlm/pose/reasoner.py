"""Stages 1-3 of the pose pipeline for one view: regions, assignment inside a region, harmony.

A :class:`Reasoner` names the anonymous QD candidates of one view (camera, frame):

1. **regions** (:meth:`Reasoner.locate_regions`): where each body region (ears, back, paws,
   tail) of each individual is in the view: a 2D offset that moves the region's predicted
   keypoints onto the candidates, a centre and a radius (px);
2. **assignment inside a region** (:meth:`Reasoner.assign_region`): a cost for every
   (keypoint, candidate) pair of the region and a preferred candidate per keypoint (or none:
   "not visible");
3. **harmony** (:meth:`Reasoner.harmonize`, shared): one-to-one assignment over every region
   and individual of the view (no candidate used twice), by the Hungarian algorithm over the
   stacked region costs with a "not visible" column per keypoint; each keypoint gets a
   *margin* (how much worse the best alternative is: another candidate, none, or the swap with
   its left/right partner) and a confidence.

:class:`LocalReasoner` (the default, no network) uses the per-keypoint prediction the pipeline
computes from the rolling window (the previous frames' 3D pose reprojected into this view, or
their 2D labels), a robust region-level translation fit, distances normalised by the
prediction's uncertainty and a brightness term. The VLM reasoners are in
:mod:`napari_behaviorvlm.pose.vlm_reasoner` (importable from here as ``VLMReasoner`` and
``HybridReasoner``).

Costs are negative log-likelihood-like: ``0.5 * (d / sigma)**2`` for a candidate at distance
``d`` px from a prediction with uncertainty ``sigma`` px; "not visible" costs
``0.5 * gate**2``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs
import numpy as np
from scipy.optimize import linear_sum_assignment

from napari_behaviorvlm.core.skeleton import Skeleton
from napari_behaviorvlm.geometry.vectors import vector_length
from napari_behaviorvlm.pose.candidates import Candidates

__all__ = [
    "HybridReasoner",
    "LocalReasoner",
    "Reasoner",
    "RegionAnswer",
    "RegionEstimate",
    "ViewAssignment",
    "ViewContext",
    "ViewExample",
    "harmonize",
]

_BIG = 1e6
SIGMA0_PX = 2.0
DECOY_GATE = 3.5


@attrs.define(eq=False)
class ViewExample:
    """One few-shot example of a view: an accepted frame of the rolling window (or a seed).

    Attributes:
        frame: Session frame.
        points2d: ``(M, K, 2)`` accepted 2D labels in px (NaN = not visible / unlabeled).
    """

    frame: int
    points2d: np.ndarray


@attrs.define(eq=False)
class ViewContext:
    """Everything a reasoner may use to name the candidates of one view.

    Attributes:
        camera: Camera index (axis ``C``); ``camera_name`` its name.
        frame: Session frame.
        candidates: The view's QD candidates (stage 0).
        predicted: ``(M, K, 2)`` px, where each keypoint is expected (NaN = no prediction).
        sigma: ``(M, K)`` px, the prediction's uncertainty (1 standard deviation).
        expected_visible: ``(M, K)`` bool, the keypoint should be seen here (in the image and
            labeled in the window's view; a guess, not a rule).
        locked: ``(M, K)`` bool, already labeled by a human in this frame: not assigned.
        skeleton: The keypoints, regions and left/right pairs.
        individual_names: Names of the ``M`` individuals.
        examples: The few-shot window in this view, most recent first.
        ref_peak: ``(K,)`` typical candidate brightness of each keypoint (NaN = unknown).
        image: Callable ``() -> (H, W) uint8`` giving the view's image (loaded on demand, for
            image-based reasoners); None when images are not available.
        example_image: Callable ``(frame) -> (H, W) uint8`` for an example frame, or None.
        decoys: ``(D, 2)`` px, predicted body-attached distractors (the eyes' shine, learned
            from the seeds by :class:`~napari_behaviorvlm.pose.decoys.Decoys`; NaN = none);
            ``decoy_sigma`` ``(D,)`` px their uncertainty. Stage 3 lets them compete for the
            candidates and drops their answers.
    """

    camera: int
    camera_name: str
    frame: int
    candidates: Candidates
    predicted: np.ndarray
    sigma: np.ndarray
    expected_visible: np.ndarray
    locked: np.ndarray
    skeleton: Skeleton
    individual_names: list[str]
    examples: list[ViewExample] = attrs.field(factory=list)
    ref_peak: np.ndarray | None = None
    image: Callable[[], np.ndarray] | None = None
    example_image: Callable[[int], np.ndarray] | None = None
    decoys: np.ndarray | None = None
    decoy_sigma: np.ndarray | None = None

    @property
    def n_individuals(self) -> int:
        return int(self.predicted.shape[0])


@attrs.define(eq=False)
class RegionEstimate:
    """Stage 1: one region of one individual in a view.

    Attributes:
        individual: Individual index; ``region`` the region name; ``keypoints`` its indices.
        offset: ``(2,)`` px, translation that moves the region's predictions onto candidates.
        center: ``(2,)`` px, region centre after the offset (NaN when nothing is predicted).
        radius: px, a radius around ``center`` that holds the region's keypoints.
    """

    individual: int
    region: str
    keypoints: list[int]
    offset: np.ndarray
    center: np.ndarray
    radius: float


@attrs.define(eq=False)
class RegionAnswer:
    """Stage 2: costs and choices for the keypoints of one region of one individual.

    Attributes:
        individual, region, keypoints: As in :class:`RegionEstimate`.
        cost: ``(len(keypoints), N)`` cost of giving candidate ``j`` to each keypoint.
        none_cost: ``(len(keypoints),)`` cost of "not visible".
        choice: ``(len(keypoints),)`` preferred candidate index, -1 = not visible.
        confidence: ``(len(keypoints),)`` 0..1 confidence of the choice.
        flags: ``(len(keypoints),)`` uint16 :class:`Flag` bits raised by the reasoner
            (e.g. LOW_MODEL_CONFIDENCE for an untrusted model answer).
        source: ``"local"`` or ``"vlm"``.
    """

    individual: int
    region: str
    keypoints: list[int]
    cost: np.ndarray
    none_cost: np.ndarray
    choice: np.ndarray
    confidence: np.ndarray
    flags: np.ndarray
    source: str = "local"


@attrs.define(eq=False)
class ViewAssignment:
    """Stage 3 result for one view.

    Attributes:
        index: int ``(M, K)``: candidate index per keypoint, -1 = not visible / locked.
        xy: ``(M, K, 2)`` px of the assigned candidates (NaN where none).
        confidence: ``(M, K)`` 0..1.
        margin: ``(M, K)`` cost gap to the best alternative (large = clear).
        flags: uint16 ``(M, K)`` reasoner flags (LOW_MODEL_CONFIDENCE, AMBIGUOUS).
        decoy_dots: bool ``(N,)`` over the view's candidates: those a body-attached distractor
            (``ViewContext.decoys``) won, at a lower cost than any keypoint's for that dot.
    """

    index: np.ndarray
    xy: np.ndarray
    confidence: np.ndarray
    margin: np.ndarray
    flags: np.ndarray
    decoy_dots: np.ndarray = attrs.field(factory=lambda: np.zeros(0, bool))


@runtime_checkable
class Reasoner(Protocol):
    """Stages 1-2 for one view; stage 3 (:func:`harmonize`) is shared."""

    use_regions: bool

    def locate_regions(self, ctx: ViewContext) -> list[RegionEstimate]:
        """Stage 1: one estimate per (individual, region) (one per individual without regions)."""
        ...

    def assign_regions(self, ctx: ViewContext, regions: list[RegionEstimate]) -> list[RegionAnswer]:
        """Stage 2: one answer per estimate."""
        ...


# --------------------------------------------------------------------------- local reasoner
@attrs.define(eq=False)
class LocalReasoner:
    """Geometry, seeds and temporal continuity; no network.

    Attributes:
        use_regions: Run stage 1 (region-level translation fit) and stage 2 per region; False
            gives the naive ablation: every keypoint of an individual matched at once against
            its raw prediction.
        gate: "Not visible" when a candidate is farther than ``gate`` sigmas.
        brightness_weight: Weight of the squared log-ratio between a candidate's peak and the
            keypoint's typical peak.
        region_prior_px: Scale in px of the prior against large region offsets.
    """

    use_regions: bool = True
    gate: float = 3.5
    brightness_weight: float = 0.5
    region_prior_px: float = 12.0
    last_calls: int = 0

    def locate_regions(self, ctx: ViewContext) -> list[RegionEstimate]:
        groups = _region_groups(ctx.skeleton, self.use_regions)
        cand = ctx.candidates.xy
        # one slot per (individual, region), individuals outer; each slot's keypoints padded
        # to the largest region
        n_reg = len(groups)
        width = max(len(kps) for kps in groups.values())
        padded = np.full((n_reg, width), -1)
        for r, kps in enumerate(groups.values()):
            padded[r, :len(kps)] = kps
        slot_m = np.repeat(np.arange(ctx.n_individuals), n_reg)[:, None]  # (S, 1)
        slot_kp = np.tile(padded, (ctx.n_individuals, 1))  # (S, width)
        real = slot_kp >= 0
        kp = np.maximum(slot_kp, 0)
        pred = ctx.predicted[slot_m, kp]  # (S, width, 2)
        sig = ctx.sigma[slot_m, kp]
        known = real & np.isfinite(pred).all(axis=-1)
        free = known & ~ctx.locked[slot_m, kp]
        fit = (free.sum(axis=1) >= 2) & (self.use_regions and len(cand) > 0)
        offset = np.zeros((len(kp), 2))
        if fit.any():
            fs, fw = np.nonzero(free & fit[:, None])  # slot by slot, keypoints in order
            offset[fit] = _fit_offsets(pred[fs, fw], sig[fs, fw], np.cumsum(fit)[fs] - 1,
                                       cand, self.gate, self.region_prior_px)
        # centre: mean of the known predictions (summed in order; the gaps add exact zeros)
        count = known.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            centre = np.where(known[..., None], pred, 0.0).sum(axis=1) / count[:, None] + offset
        reach = vector_length(pred - centre[:, None] + offset[:, None])
        radius = np.where(known, reach, -np.inf).max(axis=1, initial=-np.inf)
        spread = 3.0 * np.nanmax(np.where(real, sig, -np.inf), axis=1, initial=5.0)
        out = []
        names = list(groups)
        for s in range(len(kp)):
            m, r = divmod(s, n_reg)
            if count[s]:
                centre_s, radius_s = centre[s], float(radius[s])
            else:
                centre_s, radius_s = np.full(2, np.nan), 0.0
            out.append(RegionEstimate(m, names[r], list(groups[names[r]]), offset[s], centre_s,
                                      radius_s + float(spread[s])))
        return out

    def assign_regions(self, ctx: ViewContext, regions: list[RegionEstimate]) -> list[RegionAnswer]:
        if not regions:
            return []
        # the geometric costs of every region's keypoints in one call, one small assignment
        # per region, then every keypoint's margin at once
        ind = np.concatenate([np.full(len(est.keypoints), est.individual) for est in regions])
        kps = np.concatenate([est.keypoints for est in regions])
        offset = np.concatenate([np.broadcast_to(est.offset, (len(est.keypoints), 2))
                                 for est in regions])
        sig = np.maximum(ctx.sigma[ind, kps], 0.5)
        cost = geometric_cost(ctx.predicted[ind, kps] + offset, sig, ctx.candidates, self.gate,
                              None if ctx.ref_peak is None else ctx.ref_peak[kps],
                              self.brightness_weight)
        cost[ctx.locked[ind, kps]] = _BIG
        n = cost.shape[1]
        none_cost = np.full(len(kps), 0.5 * self.gate ** 2)
        choice = np.empty(len(kps), dtype=int)
        bounds = np.cumsum([0] + [len(est.keypoints) for est in regions])
        for a, b in zip(bounds[:-1], bounds[1:]):
            full = np.full((b - a, n + b - a), _BIG)
            full[:, :n] = cost[a:b]
            full[np.arange(b - a), n + np.arange(b - a)] = none_cost[a:b]
            choice[a:b] = _solved_choice(full, n)
        conf = margin_confidence(_margins(cost, choice, n, none_cost))
        return [RegionAnswer(est.individual, est.region, list(est.keypoints), cost[a:b],
                             none_cost[a:b], choice[a:b], conf[a:b],
                             np.zeros(b - a, np.uint16), "local")
                for est, a, b in zip(regions, bounds[:-1], bounds[1:])]


def _region_groups(skeleton: Skeleton, use_regions: bool) -> dict[str, list[int]]:
    if use_regions and skeleton.regions:
        return skeleton.region_indices()
    return {"all": list(range(skeleton.n_keypoints))}


def geometric_cost(pred: np.ndarray, sigma: np.ndarray, candidates: Candidates, gate: float,
                   ref_peak: np.ndarray | None = None, brightness_weight: float = 0.5) -> np.ndarray:
    """``(K', N)`` cost ``0.5 (d/sigma)^2 + 2 log(sigma / 2 px)`` (+ brightness term),
    ``_BIG`` beyond the gate or where the prediction is missing."""
    n = len(candidates)
    if n == 0:
        return np.zeros((len(pred), 0))
    d = vector_length(pred[:, None, :] - candidates.xy[None]) / sigma[:, None]
    # + log(sigma^2 / sigma0^2): the Gaussian's normalisation, so an uncertain prediction
    # does not win a dot from a confident one at the same normalised distance
    cost = 0.5 * d ** 2 + np.log(np.maximum(sigma, SIGMA0_PX) / SIGMA0_PX)[:, None] * 2.0
    if ref_peak is not None and brightness_weight > 0:
        ratio = np.log(np.maximum(candidates.peak[None, :], 1.0) / np.maximum(ref_peak[:, None], 1.0))
        cost = cost + brightness_weight * np.where(np.isfinite(ratio), ratio ** 2, 0.0)
    cost[~(d <= gate)] = _BIG
    return cost


def _fit_offsets(pred: np.ndarray, sig: np.ndarray, region: np.ndarray, cand: np.ndarray,
                 gate: float, prior_px: float) -> np.ndarray:
    """Robust translation of each region's predictions onto the candidates (px), all regions of
    a view at once.

    Per region, the hypotheses are no offset and every (keypoint, nearby candidate)
    displacement; each is scored by the summed truncated cost of every keypoint's nearest
    candidate plus a prior on the offset. The prior's scale is at most twice the region's
    smallest sigma: a shift that a confident keypoint's prediction rules out is not bought by
    its uncertain neighbours (which would slide a chain such as the tail by one dot, each
    keypoint onto the next one's dot).

    Args:
        pred: ``(Kt, 2)`` px predictions of every region's keypoints (finite), region by region.
        sig: ``(Kt,)`` px prediction sigmas.
        region: ``(Kt,)`` int region of each keypoint: ``0 .. R-1``, sorted, none empty.
        cand: ``(N, 2)`` px candidate positions (``N >= 1``).

    Returns:
        ``(R, 2)`` px offset per region.
    """
    n_reg = int(region[-1]) + 1
    sizes = np.bincount(region, minlength=n_reg)
    starts = np.cumsum(sizes) - sizes
    prior = np.minimum(prior_px, 2.0 * np.minimum.reduceat(sig, starts))
    search = gate * np.maximum.reduceat(sig, starts) + prior
    diff = cand[None] - pred[:, None]  # (Kt, N, 2)
    dist_all = vector_length(diff)
    ki, ci = np.nonzero(dist_all < search[region][:, None])
    # hypotheses grouped by region, each group's "no offset" first
    hyp_region = np.concatenate([np.arange(n_reg), region[ki]])
    order = np.argsort(hyp_region, kind="stable")
    hyp_region = hyp_region[order]
    hyps = np.concatenate([np.zeros((n_reg, 2)), diff[ki, ci]])[order]
    # every hypothesis moves its region's keypoints, padded to the largest region
    width = int(sizes.max())
    slot = np.arange(width)
    real = slot[None] < sizes[:, None]  # (R, width)
    member = np.where(real, starts[:, None] + slot[None], 0)[hyp_region]  # (H, width)
    moved = pred[member] + hyps[:, None, :]  # (H, width, 2)
    # a keypoint's nearest candidate only counts inside its gate: a candidate farther than
    # search + gate * sigma (+ 1 px for rounding) from every prediction of a region cannot
    # change that region's costs, so each region looks only at its own nearby candidates
    # (padded with a candidate at infinity)
    near = dist_all <= (search[region] + gate * sig + 1.0)[:, None]  # (Kt, N)
    near_region = np.zeros((n_reg, len(cand)), bool)
    np.logical_or.at(near_region, region, near)
    n_near = near_region.sum(axis=1)
    n_cols = max(int(n_near.max()), 1)
    nearby_first = np.argsort(~near_region, axis=1, kind="stable")[:, :n_cols]
    cols = np.where(np.arange(n_cols) < n_near[:, None], nearby_first, len(cand))
    padded = np.vstack([cand, np.full((1, 2), np.inf)])
    near_xy = padded[cols[hyp_region]]  # (H, n, 2)
    gap_x = moved[:, :, None, 0] - near_xy[:, None, :, 0]  # (H, width, n)
    gap_y = moved[:, :, None, 1] - near_xy[:, None, :, 1]
    dist = np.sqrt((gap_x * gap_x + gap_y * gap_y).min(axis=2))
    term = np.minimum(0.5 * (dist / sig[member]) ** 2, 0.5 * gate ** 2)
    # the padding adds exact zeros after each region's own terms
    cost = np.where(real[hyp_region], term, 0.0).sum(axis=1)
    cost += 0.5 * (vector_length(hyps) / prior[hyp_region]) ** 2
    first = np.searchsorted(hyp_region, np.arange(n_reg))
    ends = np.append(first[1:], len(hyps))
    best = np.stack([hyps[a + int(np.argmin(cost[a:b]))] for a, b in zip(first, ends)])
    # refine: residual of the inliers under the best offset, weighted by 1 / sigma^2 (an
    # uncertain keypoint must not drag a confident one off its dot)
    moved = pred + best[region]
    dd = vector_length(moved[:, None] - cand[None])
    j = dd.argmin(axis=1)
    inl = dd[np.arange(len(pred)), j] < 2.0 * sig
    # per region, in keypoint order (the outliers add exact zeros)
    w = np.where(inl, 1.0 / sig ** 2, 0.0)
    shift = (cand[j] - moved) * w[:, None]
    total = np.stack([np.bincount(region, shift[:, 0], n_reg),
                      np.bincount(region, shift[:, 1], n_reg)], axis=1)
    refined = np.bincount(region, inl, n_reg) >= 2
    with np.errstate(invalid="ignore", divide="ignore"):
        step = total / np.bincount(region, w, n_reg)[:, None]
    return np.where(refined[:, None], best + step, best)


def _solved_choice(full: np.ndarray, n: int) -> np.ndarray:
    """Hungarian solution of ``full`` (rows x (``n`` candidates + one "none" column per row)):
    per row, the candidate taken, or -1 for none (or a ``_BIG`` cell)."""
    rows, cols = linear_sum_assignment(full)
    choice = np.full(len(full), -1)
    taken = (cols < n) & (full[rows, cols] < _BIG)
    choice[rows[taken]] = cols[taken]
    return choice


def margin_confidence(margin: np.ndarray) -> np.ndarray:
    """Map a cost margin to a 0..1 confidence (logistic; margin 2 -> 0.5)."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(margin, dtype=np.float64) - 2.0) * 1.5))


def _margins(full: np.ndarray, choice: np.ndarray, n: int, none_cost: np.ndarray,
             mirror: np.ndarray | None = None) -> np.ndarray:
    """Per row: cost of its best alternative minus the cost of its choice (>= 0)."""
    k = len(choice)
    rows = np.arange(k)
    chosen = np.where(choice >= 0, full[rows, np.maximum(choice, 0)], none_cost)
    alt = full[:, :n].copy()
    ok = choice >= 0
    alt[rows[ok], choice[ok]] = np.inf
    best_alt = np.minimum(alt.min(axis=1, initial=np.inf), np.where(ok, none_cost, np.inf))
    margin = best_alt - chosen
    if mirror is not None:
        # each pair (a, b = mirror[a] > a) once, both labeled: the cost of exchanging them
        pair = (mirror > rows) & ok
        pair[pair] = ok[mirror[pair]]
        a, b = rows[pair], mirror[pair]
        ca, cb = choice[a], choice[b]
        swap = full[a, cb] + full[b, ca] - full[a, ca] - full[b, cb]
        margin[a] = np.minimum(margin[a], swap)
        margin[b] = np.minimum(margin[b], swap)
    return np.clip(margin, 0.0, 1e3)


def harmonize(ctx: ViewContext, answers: list[RegionAnswer]) -> ViewAssignment:
    """Stage 3: one-to-one assignment of the view's candidates over every region answer.

    The stacked region costs are solved jointly (Hungarian) so no candidate serves two
    keypoints; each answer comes in with the costs its reasoner gave (the model reasoner gives
    its chosen candidate cost 0: a strong hint, not a rule). Margins include the left/right
    swap of every symmetric pair. The view's decoys (``ctx.decoys``) take part as extra rows
    whose answers are dropped: a dot a decoy explains better goes to no keypoint.
    """
    m_count, k_count = ctx.predicted.shape[:2]
    n = len(ctx.candidates)
    ind = np.array([a.individual for a in answers for _ in a.keypoints], dtype=int)
    kp = np.array([k for a in answers for k in a.keypoints], dtype=int)
    r = len(kp)
    dec = _decoy_costs(ctx)
    r_all = r + len(dec)
    full = np.full((r_all, n + r_all), _BIG)
    none = np.full(r_all, 0.5 * DECOY_GATE ** 2)
    conf_in = np.ones(r)
    flags_in = np.zeros(r, np.uint16)
    if r:
        full[:r, :n] = np.concatenate([a.cost for a in answers])
        none[:r] = np.concatenate([a.none_cost for a in answers])
        conf_in[:] = np.concatenate([a.confidence for a in answers])
        flags_in[:] = np.concatenate([a.flags for a in answers])
    full[r:, :n] = dec
    full[np.arange(r_all), n + np.arange(r_all)] = none
    choice = np.full(r_all, -1)
    if r:
        choice = _solved_choice(full, n)
    # the dots a decoy won at a lower cost than any keypoint could have had them for
    decoy_dots = np.zeros(n, bool)
    rows = np.flatnonzero((choice[r:] >= 0) & (choice[r:] < n)) + r
    if len(rows):
        dots = choice[rows]
        best_keypoint = full[:r, dots].min(axis=0)
        decoy_dots[dots[full[rows, dots] <= best_keypoint]] = True
    choice, full, none = choice[:r], full[:r], none[:r]
    row_of = np.full((m_count, k_count), -1)
    row_of[ind, kp] = np.arange(r)
    mirror = row_of[ind, np.asarray(ctx.skeleton.mirror_index(), dtype=int)[kp]]
    margin = _margins(full, choice, n, none, mirror)

    index = np.full((m_count, k_count), -1)
    xy = np.full((m_count, k_count, 2), np.nan)
    conf = np.zeros((m_count, k_count))
    marg = np.zeros((m_count, k_count))
    flags = np.zeros((m_count, k_count), np.uint16)
    index[ind, kp] = choice
    chosen = choice >= 0
    xy[ind[chosen], kp[chosen]] = ctx.candidates.xy[choice[chosen]]
    marg[ind, kp] = margin
    c = margin_confidence(margin)
    conf[ind, kp] = np.where(conf_in < c, conf_in, c)  # the smaller; a NaN input keeps c
    flags[ind, kp] = flags_in
    return ViewAssignment(index, xy, conf, marg, flags, decoy_dots)


def _decoy_costs(ctx: ViewContext) -> np.ndarray:
    """``(D', N)`` geometric costs of the view's predicted decoys (those with a prediction)."""
    if ctx.decoys is None or not len(ctx.decoys) or not len(ctx.candidates):
        return np.zeros((0, len(ctx.candidates)))
    sig = np.full(len(ctx.decoys), 5.0) if ctx.decoy_sigma is None else ctx.decoy_sigma
    ok = np.isfinite(ctx.decoys).all(axis=1) & np.isfinite(sig)
    return geometric_cost(ctx.decoys[ok], np.maximum(sig[ok], 0.5), ctx.candidates, DECOY_GATE)


def __getattr__(name: str):
    if name in ("VLMReasoner", "HybridReasoner"):
        from napari_behaviorvlm.pose import vlm_reasoner

        return getattr(vlm_reasoner, name)
    raise AttributeError(name)

