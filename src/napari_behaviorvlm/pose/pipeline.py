"""The few-shot pose pipeline over a whole session: from seed frames to every frame.

:func:`run_labeling` names the QD dots of every frame not yet done, in order outward from the
seed frames, and writes model labels, 3D points, confidences and flags into the project's
:class:`~napari_behaviorvlm.core.pose.PoseTable`. Human and seed labels are never overwritten.

Order and temporal context. The frames between two seed frames are split at the midpoint: the
first half is labeled forward from the earlier seed, the second half backward from the later
one (frames before the first seed backward from it, after the last seed forward). Each frame's
*rolling window* is the ``window`` frames just before it in its direction, read from the pose
table at that moment: a human correction made (and retriangulated with
:func:`retriangulate_frame`) enters the window at once, and a resumed run sees exactly what an
uninterrupted one would have, so cancel + resume gives the same result. The split points depend
only on the seed frames.

Prediction. With ``use_refinement`` (the full pipeline) each keypoint's 3D position is
predicted from the window (constant velocity, damped by ``velocity_damping``; the last known
position with a growing uncertainty when the keypoint was missed; a rigid fit of the latest
full pose onto the keypoints that are known when it was never seen in the window) and
reprojected into every view with its uncertainty in px. Without it (the ablations), each view
is tracked on its own from its 2D labels.

Per frame: candidates in every view (stage 0, :mod:`.candidates`), stages 1-3 per view by the
reasoner (:mod:`.reasoner`), stage 4 over the views (:mod:`.refine`), then the results are
merged into the pose table and the frame is recorded as done in ``project.settings``.
"""

from __future__ import annotations

import bisect
import copy
import logging
import os
import pickle
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import attrs
import numpy as np

from napari_behaviorvlm.core.pose import HUMAN_SOURCES, STEERING_FLAGS, Flag, PoseTable, Source
from napari_behaviorvlm.core.project import Project
from napari_behaviorvlm.geometry.vectors import vector_length
from napari_behaviorvlm.pose.candidates import (
    CandidateParams,
    Candidates,
    detect_candidates,
    detection_image,
)
from napari_behaviorvlm.pose.decoys import Decoys, find_unlabeled_points
from napari_behaviorvlm.pose.detect_worker import DetectionWorker
from napari_behaviorvlm.pose.directions import (
    DISAGREE_MM,
    MISSING_PLACE,
    choose_backward,
    own_place_residual,
)
from napari_behaviorvlm.pose.occlusion import BodyOccluders, fit_body_occluders
from napari_behaviorvlm.pose.reasoner import LocalReasoner, Reasoner, ViewContext, ViewExample, harmonize
from napari_behaviorvlm.pose.refine import (
    BodyModel,
    FrameResult,
    RefineParams,
    nanmedian_last,
    refine_frame,
    score_frame,
    seed_pair_distances,
    unshown_doubts,
)

__all__ = [
    "LabelingConfig",
    "LabelingReport",
    "SETTINGS_KEY",
    "done_frames",
    "labeling_order",
    "make_reasoner",
    "retriangulate_frame",
    "run_labeling",
]

log = logging.getLogger(__name__)

SETTINGS_KEY = "pose_labeling"
BACKENDS = ("local", "vlm", "hybrid")
# what a keypoint's labels cost when a revisit and the labels before it disagree
# (:func:`_revisit_costs`; a doubt costs 1). Chosen on the revisits logged from the ten
# benchmark sessions (1 and 2 mice, seeds 0-4; docs/pose-pipeline.md, *The revisit's choice,
# keypoint by keypoint*)
REVISIT_CLAIMED_COST = 0.5
REVISIT_MISSING_COST = 0.75
REVISIT_PLACE_WEIGHT = 0.25

FrameSource = Callable[[int, int], np.ndarray]


def _backend(value: str) -> str:
    value = str(value).lower()
    if value not in BACKENDS:
        raise ValueError(f"unknown labeling backend {value!r}; choose one of {', '.join(BACKENDS)}")
    return value


@attrs.define
class LabelingConfig:
    """How :func:`run_labeling` works.

    Attributes:
        backend: ``"local"`` (geometry, no network), ``"vlm"`` (a vision-language model names
            the candidates of every region) or ``"hybrid"`` (local, and the model only where the
            local result is flagged).
        vlm: The model endpoint (``napari_behaviorvlm.vlm.VLMConfig``) for vlm/hybrid.
        window: Frames in the rolling window.
        candidates: Stage-0 detection parameters.
        refine: Stage-4 and flag thresholds.
        use_regions: Stages 1-2 per body region (False: every keypoint matched at once).
        use_refinement: 3D prediction and stage 4 (False: views tracked independently, plain
            triangulation).
        use_occlusion: With ``use_refinement``: a model keypoint whose predicted position a
            body hides from a camera (:mod:`.occlusion`, learned from the seeds) takes no label
            in that view, in stages 3 and 4.
        velocity_damping: Fraction of the last frame-to-frame velocity carried forward.
        two_sided_reach: Local backend, full pipeline: a frame left with a flagged model
            keypoint is labeled again once the frames up to this many after it (in the
            run's direction) are labeled, each keypoint predicted from its trusted labels on
            both sides (:func:`predict_two_sided`) instead of from one side only, and kept
            keypoint by keypoint where its labels cost no more (:func:`_keep_revisit`). 0 = off.
        final_pass_reach: Local backend, full pipeline: once the frames up to this many after
            a revisited frame are revisited too, a frame still holding a doubted model keypoint
            is labeled a last time, each keypoint predicted from its trusted labels up to this
            many frames on both sides, now that both sides hold their revisited labels (the
            revisit saw only the first labeling of the frames after it); kept keypoint by
            keypoint where its labels cost less (:func:`_keep_revisit`). 0 = off.
        both_directions: Local backend, full pipeline, not a relabel: every stretch that the
            run's frames cover whole is labeled in both directions (by default each frame in
            one, from its nearer seed): each gap between two seed frames from both of its
            seeds, the frames before the first seed forward from frame 0 too and those after
            the last backward from the last frame too. Where the two labelings disagree on a
            keypoint the better-fitting track is kept (:mod:`.directions`). Fewer swaps and a
            lower error, at about 0.45x the frames/s on the benchmark sessions
            (docs/pose-pipeline.md).
        cache_dir: On-disk answer cache of the VLM client (None: the client's default).
    """

    backend: str = attrs.field(default="local", converter=_backend)
    vlm: Any = None
    window: int = 5
    candidates: CandidateParams = attrs.field(factory=CandidateParams)
    refine: RefineParams = attrs.field(factory=RefineParams)
    use_regions: bool = True
    use_refinement: bool = True
    use_occlusion: bool = True
    velocity_damping: float = 0.8
    two_sided_reach: int = attrs.field(default=2, converter=int,
                                       validator=attrs.validators.ge(0))
    final_pass_reach: int = attrs.field(default=4, converter=int,
                                        validator=attrs.validators.ge(0))
    both_directions: bool = False
    cache_dir: str | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-safe description stored in the project's settings (no secrets)."""
        out: dict[str, Any] = {
            "backend": self.backend,
            "window": self.window,
            "use_regions": self.use_regions,
            "use_refinement": self.use_refinement,
            "use_occlusion": self.use_occlusion,
            "two_sided_reach": self.two_sided_reach,
            "final_pass_reach": self.final_pass_reach,
            "both_directions": self.both_directions,
            "candidates": attrs.asdict(self.candidates),
            "refine": attrs.asdict(self.refine),
        }
        if self.vlm is not None:
            out["vlm"] = {"base_url": getattr(self.vlm, "base_url", None),
                          "model": getattr(self.vlm, "model", None),
                          "api_key_env": getattr(self.vlm, "api_key_env", None)}
        return out


@attrs.define(eq=False)
class LabelingReport:
    """What a :func:`run_labeling` call did.

    Attributes:
        frames_done: Frames labeled by this call, in processing order.
        frames_skipped: Frames already done (kept) or seed frames.
        n_todo: Frames this call set out to label.
        seconds: Wall time of the call.
        cancelled: ``should_stop`` ended the call early (finished frames are kept).
        view_frames: Views labeled (frames x cameras).
        vlm_calls: Model calls made (cache hits excluded); ``vlm_usage`` the client's counters.
        n_changed, n_dropped: Stage-4 label changes and labels dropped as "missing" (both
            passes).
        n_flagged: Model labels flagged in the frames done.
        n_revisited: Frames labeled a second time with the two-sided prediction;
            ``n_revisit_kept`` of them kept that second labeling.
        n_final_pass: Frames labeled a last time from both sides (``final_pass_reach``);
            ``n_final_kept`` of them kept that labeling.
        n_other_direction: Keypoints (frame x individual x keypoint) that took the labels of
            the labeling in the other direction (``both_directions``).
    """

    frames_done: list[int] = attrs.field(factory=list)
    frames_skipped: int = 0
    n_todo: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    view_frames: int = 0
    vlm_calls: int = 0
    vlm_usage: dict[str, Any] = attrs.field(factory=dict)
    n_changed: int = 0
    n_dropped: int = 0
    n_flagged: int = 0
    n_revisited: int = 0
    n_revisit_kept: int = 0
    n_final_pass: int = 0
    n_final_kept: int = 0
    n_other_direction: int = 0

    @property
    def frames_per_second(self) -> float:
        return len(self.frames_done) / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames_done": len(self.frames_done), "frames_skipped": self.frames_skipped,
            "n_todo": self.n_todo, "seconds": round(self.seconds, 3), "cancelled": self.cancelled,
            "frames_per_second": round(self.frames_per_second, 2) if self.seconds > 0 else None,
            "view_frames": self.view_frames, "vlm_calls": self.vlm_calls,
            "vlm_usage": self.vlm_usage, "n_changed": self.n_changed,
            "n_dropped": self.n_dropped, "n_flagged": self.n_flagged,
            "n_revisited": self.n_revisited, "n_revisit_kept": self.n_revisit_kept,
            "n_final_pass": self.n_final_pass, "n_final_kept": self.n_final_kept,
            "n_other_direction": self.n_other_direction,
        }


# --------------------------------------------------------------------------- bookkeeping
def _ranges(frames: Sequence[int]) -> list[list[int]]:
    out: list[list[int]] = []
    for f in sorted(set(int(x) for x in frames)):
        if out and f == out[-1][1] + 1:
            out[-1][1] = f
        else:
            out.append([f, f])
    return out


def done_frames(project: Project) -> set[int]:
    """Frames a labeling run has finished (recorded in ``project.settings``)."""
    spans = project.settings.get(SETTINGS_KEY, {}).get("done", [])
    return {f for a, b in spans for f in range(int(a), int(b) + 1)}


def _add_to_ranges(ranges: list[list[int]], frame: int) -> None:
    """Insert ``frame`` into sorted, disjoint, inclusive ``[first, last]`` ranges in place
    (O(log n) search: a long session records a finished frame without re-sorting them all)."""
    i = bisect.bisect_right(ranges, frame, key=lambda r: r[0])
    if i and ranges[i - 1][0] <= frame <= ranges[i - 1][1]:
        return
    left = i > 0 and ranges[i - 1][1] == frame - 1
    right = i < len(ranges) and ranges[i][0] == frame + 1
    if left and right:
        ranges[i - 1][1] = ranges[i][1]
        del ranges[i]
    elif left:
        ranges[i - 1][1] = frame
    elif right:
        ranges[i][0] = frame
    else:
        ranges.insert(i, [frame, frame])


def _mark_done(project: Project, done_ranges: list[list[int]], config: LabelingConfig,
               pending: Sequence[tuple[int, bool]] = (), final: Sequence[int] = ()) -> None:
    """Record the finished frames (as ranges), the frames labeled once that still wait
    for their two-sided revisit (``(frame, doubtful)``) and the revisited frames that wait for
    their final pass (a resumed run does both in the same order)."""
    entry = project.settings.setdefault(SETTINGS_KEY, {})
    entry["done"] = done_ranges
    entry["revisit"] = [[int(f), bool(d)] for f, d in pending]
    entry["final_pass"] = [int(f) for f in final]
    entry["config"] = config.summary()


def _saved_entries(project: Project, key: str, parse: Callable[[Any], Any], keeps: str
                   ) -> list[Any]:
    """The entries of a stopped run's queue ``key`` in the project's settings, each read by
    ``parse``. An entry ``parse`` refuses (a hand-edited project) is skipped with a warning
    that says what its frame ``keeps`` instead: labels that are complete and flagged, so
    nothing is lost."""
    out: list[Any] = []
    for item in project.settings.get(SETTINGS_KEY, {}).get(key, []) or []:
        try:
            out.append(parse(item))
        except (TypeError, ValueError):
            warnings.warn(f"ignoring a malformed entry {item!r} in the project's "
                          f"settings[{SETTINGS_KEY!r}][{key!r}]: that frame keeps its {keeps}",
                          stacklevel=3)
    return out


def _revisit_entry(item: Any) -> tuple[int, bool]:
    frame, doubtful = item
    return int(frame), bool(doubtful)


def _saved_revisits(project: Project) -> dict[int, bool]:
    """The frames a stopped run left waiting for their revisit (``[frame, doubtful]``
    pairs); a malformed entry keeps its first labeling."""
    return dict(_saved_entries(project, "revisit", _revisit_entry, "first labeling"))


def _saved_final_pass(project: Project) -> list[int]:
    """The revisited frames a stopped run left waiting for their final pass; a malformed
    entry keeps its revisited labels."""
    return _saved_entries(project, "final_pass", int, "revisited labels")


def _seeds(project: Project) -> list[int]:
    from napari_behaviorvlm.core.labeling import seed_frames

    return seed_frames(project)


def labeling_order(n_frames: int, seeds: Sequence[int], frames: Sequence[int] | None = None
                   ) -> list[tuple[int, list[int]]]:
    """Runs of frames to label, each ``(direction, frames in processing order)``.

    ``direction`` is +1 (forward from an earlier seed) or -1 (backward from a later one). The
    gap between two seeds is split at its midpoint. Only ``frames`` (all when None) minus the
    seeds are listed.
    """
    seeds = sorted(set(int(s) for s in seeds))
    if not seeds:
        raise ValueError("no seed frames: label at least one frame by hand (3 spread over the "
                         "session are recommended) and mark it as a seed")
    wanted = set(range(n_frames)) if frames is None else {int(f) for f in frames}
    wanted -= set(seeds)
    runs: list[tuple[int, list[int]]] = []

    def add(direction: int, seq: range) -> None:
        sel = [f for f in seq if f in wanted]
        if sel:
            runs.append((direction, sel))

    add(-1, range(seeds[0] - 1, -1, -1))
    for a, b in zip(seeds[:-1], seeds[1:]):
        mid = (a + b) // 2
        add(+1, range(a + 1, mid + 1))
        add(-1, range(b - 1, mid, -1))
    add(+1, range(seeds[-1] + 1, n_frames))
    return runs


def make_reasoner(config: LabelingConfig) -> Reasoner:
    """The reasoner of ``config.backend``."""
    if config.backend == "local":
        return LocalReasoner(use_regions=config.use_regions)
    from napari_behaviorvlm.pose.vlm_reasoner import HybridReasoner, VLMReasoner

    if config.vlm is None:
        raise ValueError(f"backend {config.backend!r} needs a model endpoint: pass --base-url "
                         "and --model (LabelingConfig.vlm)")
    vlm = VLMReasoner.from_config(config.vlm, use_regions=config.use_regions,
                                  cache_dir=config.cache_dir)
    if config.backend == "vlm":
        return vlm
    return HybridReasoner(local=LocalReasoner(use_regions=config.use_regions), vlm=vlm)


# --------------------------------------------------------------------------- frames
def _video_source(videos: Sequence[Any]) -> FrameSource:
    """A frame source reading one indexable video per camera."""
    def read(camera: int, frame: int) -> np.ndarray:
        return detection_image(videos[camera][frame])

    return read


def _default_frame_source(project: Project) -> FrameSource:
    from napari_behaviorvlm.video.session_io import open_session_videos

    return _video_source(open_session_videos(project.session))


def _as_frame_source(frame_source: Any, project: Project) -> FrameSource:
    if frame_source is None:
        return _default_frame_source(project)
    if callable(frame_source):
        return frame_source
    return _video_source(list(frame_source))


# --------------------------------------------------------------------------- prediction
def _kabsch(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R and translation t with ``dst ~ src @ R.T + t`` (least squares)."""
    cs, cd = src.mean(axis=0), dst.mean(axis=0)
    u, _, vt = np.linalg.svd((src - cs).T @ (dst - cd))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return rot, cd - cs @ rot.T


def _window_frames(has_any: Callable[[int], bool], n_frames: int, frame: int, direction: int,
                   window: int) -> list[int]:
    """The ``window`` nearest frames on the window's side that hold any label, nearest first
    (the window reaches back to the seed when the frames in between are not labeled).
    ``has_any(i)`` tells whether frame ``i`` holds a label; only the frames walked are asked,
    so a long session costs no more per frame than a short one."""
    out: list[int] = []
    i = frame - direction
    while 0 <= i < n_frames and len(out) < window:
        if has_any(i):
            out.append(i)
        i -= direction
    return out


def _extrapolate(win: np.ndarray, idx: list[int], frame: int, damping: float, base: float,
                 per_speed: float, stale: float, stale_step: float) -> tuple[np.ndarray, np.ndarray]:
    """Constant-velocity extrapolation over the window's axis 0 (nearest first).

    Returns the prediction ``win.shape[1:]`` and its uncertainty ``win.shape[1:-1]``."""
    ok = np.isfinite(win).all(axis=-1)
    gap0 = abs(frame - idx[0])
    x1 = win[0]
    if len(idx) > 1:
        step = abs(idx[0] - idx[1])
        vel = (win[0] - win[1]) / step
        have2 = ok[0] & ok[1] & (step <= 2)
    else:
        vel = np.zeros_like(x1)
        have2 = np.zeros_like(ok[0])
    speed = vector_length(np.nan_to_num(vel))
    pred = np.where(have2[..., None], x1 + damping * vel * gap0, np.where(ok[0][..., None], x1, np.nan))
    sigma = np.where(have2, base + per_speed * speed * gap0, stale) + stale_step * (gap0 - 1)
    sigma = np.where(ok[0], sigma, np.nan)
    for s in range(1, len(idx)):
        fill = ~np.isfinite(pred).all(axis=-1) & ok[s]
        pred[fill] = win[s][fill]
        sigma[fill] = stale + stale_step * (abs(frame - idx[s]) - 1)
    return pred, sigma


def predict_3d(points3d: np.ndarray, frame: int, direction: int, window: int,
               reference: list[np.ndarray], damping: float, doubt: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Temporal 3D prediction of every keypoint at ``frame``.

    Args:
        points3d: ``(F, M, K, 3)`` mm, the pose table's 3D points.
        frame, direction: The frame to predict and the side the window is on (+1: before).
        window: Window length in frames.
        reference: Full poses ``(M, K, 3)`` (seed frames) for the rigid fill.
        doubt: ``(M, K)`` bool, keypoints whose latest label was flagged: like a never-seen
            keypoint they are placed by the rigid fill (the seed pose that best fits the
            undoubted keypoints), so a track that followed a distractor is re-anchored.
        damping: Fraction of the velocity carried forward.

    Returns:
        ``(M, K, 3)`` mm prediction (NaN = none) and ``(M, K)`` mm uncertainty.
    """
    n_ind, n_kp = points3d.shape[1:3]
    idx = _window_frames(lambda i: bool(np.isfinite(points3d[i, ..., 0]).any()),
                         len(points3d), frame, direction, window)
    pred = np.full((n_ind, n_kp, 3), np.nan)
    sigma = np.full((n_ind, n_kp), np.nan)
    if idx:
        pred, sigma = _extrapolate(points3d[idx], idx, frame, damping, 1.5, 0.5, 4.0, 3.0)
        seen = np.isfinite(points3d[idx[0]]).all(axis=-1)
        if len(idx) > 1 and abs(idx[0] - idx[1]) <= 2:
            # a keypoint seen in the last frame but not the one before moves with its body:
            # it borrows the median velocity of the individual's keypoints that have one
            step = abs(idx[0] - idx[1])
            vel = (points3d[idx[0]] - points3d[idx[1]]) / step
            has_vel = np.isfinite(vel).all(axis=-1)
            gap = abs(frame - idx[0])
            for m in range(n_ind):
                borrow = seen[m] & ~has_vel[m]
                if borrow.any() and has_vel[m].sum() >= 3:
                    v = np.median(vel[m][has_vel[m]], axis=0)
                    pred[m][borrow] = points3d[idx[0], m][borrow] + damping * v * gap
                    sigma[m][borrow] = 4.0 + 0.5 * float(np.linalg.norm(v)) * gap
        elif len(idx) == 1:
            # right after a seed nothing has a velocity yet: a running mouse has moved
            sigma = np.where(seen, np.maximum(sigma, 8.0), sigma)
    # a keypoint missed in the nearest window frame is placed on the body too (its last
    # position, frames ago, is where the body was, not where it is)
    stale = ~np.isfinite(points3d[idx[0]]).all(axis=-1) if idx else np.ones((n_ind, n_kp), bool)
    if reference:
        _, seed_lo, seed_hi, _ = seed_pair_distances(reference)
    for m in range(n_ind):
        missing = ~np.isfinite(pred[m]).all(axis=-1) | stale[m]
        if doubt is not None:
            missing |= doubt[m]
        if not missing.any() or not reference:
            continue
        known = ~missing & np.isfinite(pred[m]).all(axis=-1)
        pair_spread = seed_hi[m] - seed_lo[m]  # (K, K)
        spread = nanmedian_last(np.where(known[None], pair_spread, np.nan))  # (K,)
        spread = np.where(np.isfinite(spread), spread, 12.0)
        # the fit rests on the body's near-rigid keypoints (back, ears, tail base: they kept
        # their distances over the seeds), not on paws, when 3 of them are known
        core = known & (spread < 6.0)
        source = core if core.sum() >= 3 else known
        fits = []
        for i, ref in enumerate(reference):
            fit = _robust_rigid_fit(ref[m], pred[m], source & np.isfinite(ref[m]).all(axis=-1))
            if fit is not None:
                fits.append((fit[0], i, fit[1], fit[2]))
        # each keypoint from the best-fitting seed pose that holds it (a paw the nearest seed
        # did not see is taken from another seed, not left without a prediction for good);
        # its uncertainty: the fit's residual plus how much the keypoint moved against the
        # fitted keypoints over the seeds (an ear is placed to a few mm, a paw is not)
        for resid, i, rot, t in sorted(fits, key=lambda x: (x[0], x[1])):
            ref = reference[i]
            fill = missing & np.isfinite(ref[m]).all(axis=-1)
            pred[m][fill] = ref[m][fill] @ rot.T + t
            sigma[m][fill] = np.clip(3.0 + resid + 0.5 * spread[fill], 4.0, 12.0)
            missing &= ~fill
    return pred, sigma


TWO_SIDED_BASE_MM = 1.0
TWO_SIDED_PER_MM = 0.2


def predict_two_sided(points3d: np.ndarray, trusted: np.ndarray, frame: int, reach: int
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Prediction of every keypoint at ``frame`` from its labels on both sides.

    For each keypoint the nearest frame before and the nearest after ``frame`` (at most
    ``reach`` frames away) where it is ``trusted`` are interpolated linearly. A wrong label
    seldom lasts long (most are single frames), so the frames around it, labeled from
    the same side and from the other, pin the keypoint down far better than an extrapolation
    from one side: a paw that changes direction is between its two neighbours, not where its
    last velocity would take it.

    Args:
        points3d: ``(F, M, K, 3)`` mm.
        trusted: ``(F, M, K)`` bool, labels to interpolate from (human, or unflagged model).
        frame: The frame to predict.
        reach: Frames to look on each side.

    Returns:
        ``(M, K, 3)`` mm prediction, NaN where a side has no trusted label, and ``(M, K)`` mm
        uncertainty: ``TWO_SIDED_BASE_MM`` plus ``TWO_SIDED_PER_MM`` times the distance
        between the two labels (a fast paw is less certain between them).
    """
    n_frames, n_ind, n_kp = points3d.shape[:3]
    pred = np.full((n_ind, n_kp, 3), np.nan)
    sigma = np.full((n_ind, n_kp), np.nan)
    before = np.full((n_ind, n_kp), -1)
    after = np.full((n_ind, n_kp), -1)
    for h in range(reach, 0, -1):  # nearest last, so it wins
        if frame - h >= 0:
            before = np.where(trusted[frame - h], frame - h, before)
        if frame + h < n_frames:
            after = np.where(trusted[frame + h], frame + h, after)
    ok = (before >= 0) & (after >= 0)
    if not ok.any():
        return pred, sigma
    m_idx, k_idx = np.nonzero(ok)
    a, b = before[ok], after[ok]
    xa, xb = points3d[a, m_idx, k_idx], points3d[b, m_idx, k_idx]
    w = ((frame - a) / (b - a))[:, None]
    pred[ok] = (1.0 - w) * xa + w * xb
    sigma[ok] = TWO_SIDED_BASE_MM + TWO_SIDED_PER_MM * vector_length(xb - xa)
    return pred, sigma


def _robust_rigid_fit(src_all: np.ndarray, dst_all: np.ndarray, ok: np.ndarray,
                      outlier_mm: float = 6.0) -> tuple[float, np.ndarray, np.ndarray] | None:
    """Rigid fit (Kabsch) of ``src_all`` ``(K, 3)`` onto ``dst_all`` over the keypoints ``ok``,
    dropping the worst keypoint while one misfits by more than ``outlier_mm`` (a track on a
    wrong dot must not tilt the body) and more than 3 remain.

    Returns ``(mean residual mm, rotation, translation)``, or None with fewer than 3
    keypoints or (nearly) collinear ones (the rotation about that line is undetermined)."""
    ok = ok.copy()
    while ok.sum() >= 3:
        src, dst = src_all[ok], dst_all[ok]
        if np.linalg.svd(src - src.mean(axis=0), compute_uv=False)[1] < 5.0:
            return None
        rot, t = _kabsch(src, dst)
        res = vector_length(src @ rot.T + t - dst)
        if res.max() <= outlier_mm or ok.sum() == 3:
            return float(res.mean()), rot, t
        ok[np.flatnonzero(ok)[int(res.argmax())]] = False
    return None


def predict_2d(points2d: np.ndarray, frame: int, direction: int, window: int, damping: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per-view 2D prediction from the window's 2D labels (no cross-view information).

    Args:
        points2d: ``(C, F, M, K, 2)`` px.

    Returns:
        ``(C, M, K, 2)`` px prediction (NaN = none) and ``(C, M, K)`` px uncertainty.
    """
    shape = points2d.shape[:1] + points2d.shape[2:4]
    idx = _window_frames(lambda i: bool(np.isfinite(points2d[:, i, ..., 0]).any()),
                         points2d.shape[1], frame, direction, window)
    if not idx:
        return np.full(shape + (2,), np.nan), np.full(shape, np.nan)
    win = np.moveaxis(points2d[:, idx], 1, 0)  # (W, C, M, K, 2)
    return _extrapolate(win, idx, frame, damping, 2.0, 0.5, 5.0, 4.0)


# --------------------------------------------------------------------------- per frame
@attrs.define(eq=False)
class _Runner:
    project: Project
    config: LabelingConfig
    reasoner: Reasoner
    read: FrameSource
    ref_peak: np.ndarray | None = None
    reference: list[np.ndarray] = attrs.field(factory=list)
    body: BodyModel | None = None
    occluders: BodyOccluders | None = None
    decoys: Decoys = attrs.field(factory=Decoys)
    cand_cache: dict[tuple[int, int], Candidates] = attrs.field(factory=dict)
    parallel_views: bool = False
    unshown_cache: dict[int, np.ndarray] = attrs.field(factory=dict)

    @property
    def group(self):
        return self.project.session.calibration

    def candidates(self, camera: int, frame: int) -> Candidates:
        key = (camera, frame)
        if key not in self.cand_cache:
            self.cand_cache[key] = detect_candidates(self.read(camera, frame), self.config.candidates)
        return self.cand_cache[key]

    def detect_elsewhere(self, worker: DetectionWorker, frames: Sequence[int]) -> bool:
        """Fill the candidates of ``frames`` from a helper process; False when it failed."""
        found = worker.detect(frames)
        if found is None:
            return False
        for key, cand in found.items():
            self.cand_cache.setdefault(key, cand)
        return True

    def prefetch(self, frames: Sequence[int]) -> None:
        """Detect candidates of ``frames`` in every view, reading each video in frame order
        (the views in parallel threads when each has its own reader: decoding and OpenCV
        release the GIL)."""
        def one_view(c: int) -> None:
            for f in sorted(frames):
                self.candidates(c, f)

        n_cam = self.project.poses.n_cameras
        workers = min(n_cam, os.cpu_count() or 1) if self.parallel_views else 1
        if workers < 2:
            for c in range(n_cam):
                one_view(c)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(one_view, range(n_cam)))

    def doubted(self, frame: int) -> np.ndarray:
        """``(M, K)`` bool: the model keypoints of a labeled frame the tracker doubts: a steering
        flag in some view (``STEERING_FLAGS``), or a doubt without a flag
        (:meth:`unshown_doubt`)."""
        poses = self.project.poses
        model = poses.source[:, frame] == int(Source.MODEL)
        steering = (poses.flags[:, frame] & STEERING_FLAGS) > 0
        return (steering & model).any(axis=0) | (self.unshown_doubt(frame) > 0)

    def unshown_doubt(self, frame: int) -> np.ndarray:
        """``(M, K)`` uint16: the flag bits the tracker holds on the model keypoints of a
        labeled frame without showing them (:func:`~.refine.unshown_doubts`), recomputed from
        the table, so a resumed run doubts exactly what an uninterrupted one did."""
        if frame not in self.unshown_cache:
            poses = self.project.poses
            unshown = np.zeros((poses.n_individuals, poses.n_keypoints), np.uint16)
            if self.body is not None and self.config.use_refinement:
                model = (poses.source[:, frame] == int(Source.MODEL)).any(axis=0)
                unshown = np.where(model, unshown_doubts(
                    self.project.skeleton, self.body, poses.points3d[frame],
                    poses.n_views[frame], self.config.refine), 0).astype(np.uint16)
            self.unshown_cache[frame] = unshown
        return self.unshown_cache[frame]

    def write(self, frame: int, res: FrameResult) -> None:
        _write_frame(self.project, frame, res)
        self.unshown_cache.pop(frame, None)

    def forget(self, frames: Sequence[int]) -> None:
        for c in range(self.project.poses.n_cameras):
            for f in frames:
                self.cand_cache.pop((c, f), None)

    def predict_two_sided(self, frame: int, reach: int) -> tuple[np.ndarray, np.ndarray]:
        """:func:`predict_two_sided` from the labels within ``reach`` frames that are trusted
        (human, or model and not doubted)."""
        poses = self.project.poses
        lo = max(0, frame - reach)
        near = slice(lo, min(frame + reach + 1, poses.n_frames))
        doubted = np.stack([self.doubted(f) for f in range(near.start, near.stop)])
        trusted = np.isfinite(poses.points3d[near]).all(axis=-1)
        trusted &= ~doubted | np.isin(poses.source[:, near], HUMAN_SOURCES).any(axis=0)
        return predict_two_sided(poses.points3d[near], trusted, frame - lo, reach)

    def label_frame(self, frame: int, direction: int, two_sided: int = 0,
                    write: bool = True) -> tuple[Any, int]:
        """Stages 1-4 for one frame, written to the pose table when ``write``. ``two_sided``:
        predict the keypoints that have trusted labels on both sides, at most this many frames
        away, from those (the revisit and the final pass; 0: from one side)."""
        poses = self.project.poses
        group = self.group
        cfg = self.config
        n_cam, n_ind, n_kp = poses.n_cameras, poses.n_individuals, poses.n_keypoints
        human = poses.human_mask(frame)
        human_xy = np.where(human[..., None], poses.points2d[:, frame], np.nan)
        if cfg.use_refinement:
            prev = frame - direction
            doubt = self.doubted(prev) if 0 <= prev < poses.n_frames else None
            pred3, sig3 = predict_3d(poses.points3d, frame, direction, cfg.window, self.reference,
                                     cfg.velocity_damping, doubt)
            if two_sided:
                both3, both_sig = self.predict_two_sided(frame, two_sided)
                both = np.isfinite(both3).all(axis=-1)
                pred3 = np.where(both[..., None], both3, pred3)
                sig3 = np.where(both, both_sig, sig3)
            pred2 = group.project(pred3)  # (C, M, K, 2)
            depth = np.stack([cam.world_to_camera(pred3)[..., 2] for cam in group])
            focal = np.array([cam.matrix[0, 0] for cam in group])[:, None, None]
            with np.errstate(invalid="ignore", divide="ignore"):
                sig2 = 1.0 + sig3[None] * focal / depth
            dec3, dsig3 = self.decoys.predict(pred3, sig3)
            dec2 = group.project(dec3)  # (C, D, 2)
            with np.errstate(invalid="ignore", divide="ignore"):
                dsig2 = 1.0 + dsig3[None] * focal[:, :, 0] / np.stack(
                    [cam.world_to_camera(dec3)[..., 2] for cam in group])
        else:
            dec2 = dsig2 = None
            pred3, sig3 = None, None
            pred2, sig2 = predict_2d(poses.points2d, frame, direction, cfg.window, cfg.velocity_damping)
        examples = self._examples(frame, direction) if getattr(self.reasoner, "needs_examples", False) else []
        index = np.full((n_cam, n_ind, n_kp), -1)
        obs = human_xy.copy()
        conf = np.full((n_cam, n_ind, n_kp), np.nan)
        margin = np.full((n_cam, n_ind, n_kp), np.nan)
        rflags = np.zeros((n_cam, n_ind, n_kp), np.uint16)
        cands, views = [], []
        calls = 0
        # a keypoint a body hides in a view takes no label there (a dot at its prediction is
        # something else's)
        hidden = np.zeros((n_cam, n_ind, n_kp), bool)
        if self.occluders is not None and pred3 is not None:
            hidden = self.occluders.hidden(group, pred3, sig3) & ~human

        # per view, the candidates stage 3 gave to a decoy (stage 4 leaves them alone)
        decoy_dots: list[np.ndarray] = [np.zeros(0, bool)] * n_cam

        def store(c: int, out) -> None:
            decoy_dots[c] = out.decoy_dots
            free = ~human[c] & ~hidden[c]
            index[c][free] = out.index[free]
            obs[c][free] = out.xy[free]
            conf[c][free] = out.confidence[free]
            margin[c][free] = out.margin[free]
            rflags[c][free] = out.flags[free]

        for c, cam in enumerate(group):
            cand = self.candidates(c, frame)
            if human[c].any():
                # the dots a human already named are not offered again
                d = vector_length(cand.xy[:, None] - human_xy[c][human[c]][None])
                cand = cand.subset(~(d < 1.5).any(axis=1)) if len(cand) else cand
            cands.append(cand)
            w, h = cam.size
            p = pred2[c]
            inside = np.isfinite(p).all(-1) & (p[..., 0] > -5) & (p[..., 1] > -5) \
                & (p[..., 0] < w + 5) & (p[..., 1] < h + 5)
            ctx = ViewContext(
                camera=c, camera_name=cam.name, frame=frame, candidates=cand,
                predicted=np.where(inside[..., None], p, np.nan),
                sigma=np.nan_to_num(sig2[c], nan=20.0), expected_visible=inside,
                locked=human[c], skeleton=self.project.skeleton,
                individual_names=list(poses.individual_names),
                examples=[ViewExample(f, poses.points2d[c, f]) for f in examples],
                ref_peak=self.ref_peak,
                image=(lambda c=c: self.read(c, frame)),
                example_image=(lambda f, c=c: self.read(c, f)),
                decoys=None if dec2 is None else dec2[c],
                decoy_sigma=None if dsig2 is None else dsig2[c],
            )
            regions = self.reasoner.locate_regions(ctx)
            answers = self.reasoner.assign_regions(ctx, regions)
            out = harmonize(ctx, answers)
            calls += int(getattr(self.reasoner, "last_calls", 0))
            views.append((ctx, regions, answers))
            store(c, out)

        def stage4():
            return refine_frame(group, self.project.skeleton, obs, human, cands, index, conf, margin,
                                rflags, pred3, sig3, cfg.refine, use_refinement=cfg.use_refinement,
                                body=self.body, decoys=self.decoys, hidden=hidden,
                                decoy_dots=decoy_dots)

        res = stage4()
        second = getattr(self.reasoner, "second_opinion", None)
        if second is not None:
            # hybrid: the model is asked only about the labels stage 4 flagged
            # (a doubt without a flag counts in the views that hold a label, as a flag would)
            labeled = np.isfinite(res.points2d[..., 0])
            doubtful = ~human & (((res.flags & STEERING_FLAGS) > 0) | (_unshown(res)[None] & labeled))
            asked = False
            for c, (ctx, regions, answers) in enumerate(views):
                new = second(ctx, regions, answers, doubtful[c])
                calls += int(self.reasoner.last_calls)
                if new is not None:
                    store(c, harmonize(ctx, new))
                    asked = True
            if asked:
                res = stage4()
        if write:
            self.write(frame, res)
        return res, calls

    def _examples(self, frame: int, direction: int) -> list[int]:
        poses = self.project.poses
        idx = [frame - direction * i for i in range(1, self.config.window + 1)]
        idx = [i for i in idx if 0 <= i < poses.n_frames and np.isfinite(poses.points3d[i]).any()]
        seeds = [s for s in _seeds(self.project) if s not in idx]
        seeds.sort(key=lambda s: abs(s - frame))
        return idx[:2] + seeds[:1]


def _write_frame(project: Project, frame: int, res) -> None:
    """Merge one frame's result into the pose table, keeping human labels' positions."""
    poses = project.poses
    human = poses.human_mask(frame)
    model = ~human
    labeled = np.isfinite(res.points2d[..., 0])
    p2 = poses.points2d[:, frame]
    p2[model] = res.points2d[model]
    poses.confidence[:, frame][model] = res.confidence[model]
    poses.source[:, frame][model] = np.where(labeled[model], int(Source.MODEL), int(Source.NONE))
    poses.flags[:, frame][model] = res.flags[model]
    poses.flags[:, frame][human] = 0
    poses.reproj_error[:, frame] = res.reproj_error
    poses.points3d[frame] = res.points3d
    poses.n_views[frame] = np.clip(res.n_views, 0, 127)


def _unshown_bits(res: FrameResult) -> np.ndarray:
    """``(M, K)`` uint16: the flag bits the tracker holds on a result's keypoints unshown."""
    if res.unshown_doubt is None:
        return np.zeros(res.points3d.shape[:2], np.uint16)
    return res.unshown_doubt


def _unshown(res: FrameResult) -> np.ndarray:
    """``(M, K)`` bool: the keypoints of a result the tracker doubts without a flag."""
    return _unshown_bits(res) > 0


def _table_result(poses: PoseTable, frame: int, unshown: np.ndarray | None = None
                  ) -> FrameResult:
    """One frame of a pose table as a stage-4 result."""
    return FrameResult(poses.points2d[:, frame].copy(), poses.confidence[:, frame].copy(),
                       poses.reproj_error[:, frame].copy(), poses.flags[:, frame].copy(),
                       poses.points3d[frame].copy(), poses.n_views[frame].copy(),
                       unshown_doubt=unshown)


def _stored_result(runner: _Runner, frame: int) -> FrameResult:
    """One frame of the pose table as a stage-4 result, with the tracker's unshown doubts."""
    return _table_result(runner.project.poses, frame, runner.unshown_doubt(frame))


def _pick(first: FrameResult, second: FrameResult, take: np.ndarray) -> FrameResult:
    """``first`` with the keypoints ``take`` ``(M, K)`` bool from ``second`` (every view)."""
    return FrameResult(
        np.where(take[None, ..., None], second.points2d, first.points2d),
        np.where(take[None], second.confidence, first.confidence),
        np.where(take[None], second.reproj_error, first.reproj_error),
        np.where(take[None], second.flags, first.flags),
        np.where(take[..., None], second.points3d, first.points3d),
        np.where(take, second.n_views, first.n_views),
        second.n_changed, second.n_dropped,
        np.where(take, _unshown_bits(second), _unshown_bits(first)))


def _keep_revisit(first: FrameResult, second: FrameResult, body: BodyModel | None,
                  final_pass: bool = False) -> FrameResult | None:
    """What a frame keeps of its two-sided revisit (None: its first labeling), keypoint by
    keypoint.

    Each keypoint takes the revisit's labels (every view) unless they cost more than its
    first labels (:func:`_revisit_costs`: a doubt, a point on a dot the other labeling gives
    another keypoint, a point that misfits its place on the body, no point at all); a tie goes
    to the revisit. A keypoint whose taken labels would name a dot that another keypoint
    names in some view goes back to its first labels (:func:`_pick_without_new_sharers`).

    ``final_pass``: the labels in the table were revisited already, so the new ones must do
    strictly better: a tie keeps the table's labels.
    """
    with np.errstate(invalid="ignore"):
        agree = vector_length(first.points3d - second.points3d) <= DISAGREE_MM
    cost_first = _revisit_costs(first, second, agree, body)
    cost_second = _revisit_costs(second, first, agree, body)
    take = cost_second < cost_first if final_pass else cost_second <= cost_first
    same = (np.isclose(first.points2d, second.points2d, rtol=0.0, atol=1e-9, equal_nan=True)
            .all(axis=(0, 3)) & (first.flags == second.flags).all(axis=0)
            & (_unshown_bits(first) == _unshown_bits(second)))
    take &= ~same  # (the same labels and doubts: nothing to take)
    if not take.any():
        return None
    merged, take = _pick_without_new_sharers(first, second, take)
    return merged if take.any() else None


def _revisit_costs(res: FrameResult, other: FrameResult, agree: np.ndarray,
                   body: BodyModel | None) -> np.ndarray:
    """``(M, K)``: what each keypoint's labels in ``res`` cost against those in ``other`` (the
    other labeling of the same frame; ``agree`` ``(M, K)``: the two points lie within
    ``DISAGREE_MM``).

    A located keypoint costs 1 for a doubt (a steering flag in some view or a doubt without a
    flag), ``REVISIT_CLAIMED_COST`` when its point lies within ``DISAGREE_MM`` of *another*
    keypoint's point in ``other`` (a track on a dot the other labeling gives someone else),
    and, where the two disagree, ``REVISIT_PLACE_WEIGHT`` times how badly it sits at its own
    place on the body among the keypoints both agree on (:func:`own_place_residual`,
    ``MISSING_PLACE`` without enough partners). A keypoint without a 3D point costs
    ``REVISIT_MISSING_COST``: less than a doubted point, more than a trusted one.
    """
    located = np.isfinite(res.points3d).all(axis=-1)
    doubt = ((np.bitwise_or.reduce(res.flags, axis=0) & STEERING_FLAGS) > 0) | _unshown(res)
    cost = doubt + REVISIT_CLAIMED_COST * _on_another_keypoint(res.points3d, other.points3d)
    if body is not None:
        for m, k in zip(*np.nonzero(located & ~agree)):
            place = own_place_residual(body, res.points3d[m, k], res.points3d, agree, m, k)
            cost[m, k] += REVISIT_PLACE_WEIGHT * (place if np.isfinite(place) else MISSING_PLACE)
    return np.where(located, cost, REVISIT_MISSING_COST)


def _on_another_keypoint(points3d: np.ndarray, other3d: np.ndarray) -> np.ndarray:
    """``(M, K)`` bool: the keypoint's point in ``points3d`` ``(M, K, 3)`` lies within
    ``DISAGREE_MM`` of a different keypoint's point in ``other3d``."""
    n = points3d.shape[0] * points3d.shape[1]
    d = vector_length(points3d.reshape(n, 1, 3) - other3d.reshape(1, n, 3))
    d[np.arange(n), np.arange(n)] = np.inf
    with np.errstate(invalid="ignore"):
        return (np.nan_to_num(d, nan=np.inf) <= DISAGREE_MM).any(axis=1).reshape(points3d.shape[:2])


def _dot_sharers(points2d: np.ndarray) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The pairs of keypoints ``((m, k), (m, k))`` whose labels name the same position in some
    view of ``points2d`` ``(C, M, K, 2)``."""
    n_kp = points2d.shape[2]
    xy = points2d.reshape(points2d.shape[0], -1, 2)
    d = vector_length(xy[:, :, None] - xy[:, None])
    n = xy.shape[1]
    d[:, np.arange(n), np.arange(n)] = np.inf
    _, a, b = np.nonzero(np.triu(d < 0.01, 1))
    return sorted({(divmod(int(i), n_kp), divmod(int(j), n_kp)) for i, j in zip(a, b)})


def _pick_without_new_sharers(default: FrameResult, other: FrameResult, take: np.ndarray
                              ) -> tuple[FrameResult, np.ndarray]:
    """``default`` with the keypoints ``take`` ``(M, K)`` from ``other`` (:func:`_pick`), less
    those that would name a dot another keypoint names in some view: of each such pair, the
    first keypoint taken goes back to its default labels, until no taken keypoint shares a
    dot. Two default labels on one position (two human labels placed together) are left as
    they are. Returns the merged result and the keypoints taken."""
    take = take.copy()
    merged = _pick(default, other, take)
    while True:
        new = [pair for pair in _dot_sharers(merged.points2d) if take[pair[0]] or take[pair[1]]]
        if not new:
            return merged, take
        first, second = new[0]
        take[first if take[first] else second] = False
        merged = _pick(default, other, take)


def _revisits(config: LabelingConfig, reasoner: Reasoner) -> bool:
    """The two-sided revisit runs for the local reasoner's full pipeline only (a model is
    not asked twice about a frame)."""
    return (config.two_sided_reach > 0 and config.use_refinement
            and isinstance(reasoner, LocalReasoner))


def _seed_peaks(runner: _Runner, seeds: Sequence[int]) -> np.ndarray | None:
    """Typical candidate brightness per keypoint from the seed labels."""
    poses = runner.project.poses
    peaks: list[list[float]] = [[] for _ in range(poses.n_keypoints)]
    for f in seeds:
        for c in range(poses.n_cameras):
            cand = runner.candidates(c, f)
            if not len(cand):
                continue
            for m in range(poses.n_individuals):
                for k in range(poses.n_keypoints):
                    xy = poses.points2d[c, f, m, k]
                    if not np.isfinite(xy).all():
                        continue
                    d = vector_length(cand.xy - xy)
                    j = int(d.argmin())
                    if d[j] < 2.0:
                        peaks[k].append(float(cand.peak[j]))
    if not any(peaks):
        return None
    return np.array([np.median(p) if p else np.nan for p in peaks])


def _seed_decoys(runner: _Runner, seeds: Sequence[int]) -> Decoys:
    """Body-attached distractors: the seeds' unlabeled dots that agree in 3D (see
    :mod:`.decoys`)."""
    poses = runner.project.poses
    if not runner.config.use_refinement or len(seeds) < 2:
        return Decoys()
    points = [find_unlabeled_points(runner.group, poses.points2d[:, s],
                                    [runner.candidates(c, s) for c in range(poses.n_cameras)])
              for s in seeds]
    return Decoys.from_seeds([poses.points3d[s] for s in seeds], points,
                             runner.project.skeleton.mirror_index())


# --------------------------------------------------------------------------- public API
def run_labeling(
    project: Project,
    frames: Sequence[int] | None = None,
    config: LabelingConfig | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_frame_done: Callable[[int], None] | None = None,
    frame_source: FrameSource | Sequence[Any] | None = None,
    reasoner: Reasoner | None = None,
    relabel: bool = False,
) -> LabelingReport:
    """Label every frame of ``frames`` (all when None) that is not done yet, in place.

    Args:
        project: The project; its session needs a calibration and its pose table seed frames.
        frames: Session frames to label (seed frames and frames already done are skipped).
        config: How to label (defaults: local reasoner, full pipeline).
        on_progress: Called as ``on_progress(done, total)`` after every frame.
        should_stop: Polled before every frame; True ends the call (finished frames are kept
            and recorded, so a later call resumes).
        on_frame_done: Called with each finished frame (e.g. to refresh a viewer or autosave).
        frame_source: ``(camera_index, frame) -> (H, W) uint8`` (called from one thread),
            or one indexable video per camera (``video[frame]``; the cameras are read in
            parallel threads); None opens the session's videos.
        reasoner: Use this reasoner instead of the one ``config.backend`` names.
        relabel: Label ``frames`` again even where a run already finished them (after human
            corrections, so the corrected labels steer the frames around them). Seed and human
            labels are kept; a cancelled relabel resumes with the frames it had not reached.

    Returns:
        A :class:`LabelingReport`.

    Raises:
        ValueError: no calibration, or no seed frame.
    """
    config = config or LabelingConfig()
    start = time.perf_counter()
    if project.session.calibration is None:
        raise ValueError("labeling needs a calibrated session (calibration.toml): the 3D "
                         "stage and the temporal prediction work in world coordinates")
    if project.session.calibration.names != list(project.poses.camera_names):
        raise ValueError("the calibration's cameras "
                         f"{project.session.calibration.names} do not match the pose table's "
                         f"{project.poses.camera_names}")
    seeds = _seeds(project)
    poses = project.poses
    runs = labeling_order(poses.n_frames, seeds, frames)
    done = done_frames(project)
    if relabel:
        done -= {f for _, seq in runs for f in seq}
    todo_total = sum(1 for _, seq in runs for f in seq if f not in done)
    report = LabelingReport(n_todo=todo_total)
    report.frames_skipped = sum(len(seq) for _, seq in runs) - todo_total
    reasoner = reasoner or make_reasoner(config)
    gaps = []
    if config.both_directions and not relabel and _revisits(config, reasoner):
        gaps = _gaps_to_merge(project, seeds, frames)
    progress = _Progress(on_progress, todo_total + sum(b - a - 1 for a, b, _ in gaps))
    try:
        runner = _label_runs(project, runs, done, config, reasoner, report, frame_source,
                             progress, should_stop, on_frame_done)
        if gaps and not report.cancelled:
            _label_both_directions(project, gaps, runner, report, frame_source, progress,
                                   should_stop, on_frame_done)
    finally:
        report.seconds = time.perf_counter() - start
        if report.frames_done:
            frames_done = np.asarray(report.frames_done)
            model = ~np.isin(poses.source[:, frames_done], HUMAN_SOURCES)
            labeled = np.isfinite(poses.points2d[:, frames_done][..., 0])
            report.n_flagged = int(((poses.flags[:, frames_done] > 0) & model & labeled).sum())
        usage = getattr(reasoner, "usage", None)
        if usage is not None:
            report.vlm_usage = usage() if callable(usage) else dict(usage)
    return report


#: What a runner learns from the seed frames (shared by the runs of one call).
_LEARNED_FROM_SEEDS = ("reference", "body", "ref_peak", "decoys", "occluders")


def _label_runs(project: Project, runs: Sequence[tuple[int, list[int]]], done: set[int],
                config: LabelingConfig, reasoner: Reasoner, report: LabelingReport,
                frame_source: Any, progress: _Progress,
                should_stop: Callable[[], bool] | None,
                on_frame_done: Callable[[int], None] | None,
                learned_from: _Runner | None = None) -> _Runner:
    """Label the frames of ``runs`` (``labeling_order``) not in ``done``, in place; the work
    of :func:`run_labeling`. A stop sets ``report.cancelled`` and returns. What the seeds
    teach (body model, peaks, decoys, body volume) is learned here, or taken from
    ``learned_from``, a runner on a copy of the same project. Returns the runner."""
    poses = project.poses
    seeds = _seeds(project)
    runner = _Runner(project, config, reasoner, _as_frame_source(frame_source, project),
                     parallel_views=not callable(frame_source))
    if learned_from is not None:
        for name in _LEARNED_FROM_SEEDS:
            setattr(runner, name, getattr(learned_from, name))
    else:
        for s in seeds:
            if not np.isfinite(poses.points3d[s]).any():
                retriangulate_frame(project, s)
        runner.reference = [poses.points3d[s] for s in seeds]
        runner.body = BodyModel.from_seeds(project.skeleton, runner.reference)
        runner.ref_peak = _seed_peaks(runner, seeds)
        runner.decoys = _seed_decoys(runner, seeds)
        if config.use_refinement and config.use_occlusion:
            runner.occluders = fit_body_occluders(
                project.skeleton, runner.body.midline, runner.group, runner.reference,
                [np.isfinite(poses.points2d[:, s, ..., 0]) for s in seeds])
        # what was learned (None: not used), for the user to read in the project's settings
        volume = None if runner.occluders is None else attrs.asdict(runner.occluders)
        project.settings.setdefault(SETTINGS_KEY, {})["body_volume"] = volume
        if volume is not None:
            log.info("body volume from the seeds: back spheres %.1f mm, head sphere %.1f mm, "
                     "up %s", volume["depth_mm"], volume["head_mm"], volume["up"])
    runner.forget(seeds)
    block = 64
    reach = config.two_sided_reach if _revisits(config, reasoner) else 0
    final_reach = config.final_pass_reach if _revisits(config, reasoner) else 0
    pending: deque[tuple[int, bool]] = deque()  # labeled once, (frame, to be revisited)
    final: deque[int] = deque()  # revisited, waiting for the final pass
    saved = {f: d for f, d in _saved_revisits(project).items() if f in done} if reach else {}
    saved_final = {f for f in _saved_final_pass(project) if f in done} if final_reach else set()
    done_ranges = _ranges(done)

    def relabel_two_sided(frame: int, direction: int, within: int, final_pass: bool) -> bool:
        """Label ``frame`` again from both sides; True when the table took the new labels."""
        second, _ = runner.label_frame(frame, direction, two_sided=within, write=False)
        res = _keep_revisit(_stored_result(runner, frame), second, runner.body, final_pass)
        if res is None:
            return False
        runner.write(frame, res)
        report.n_changed += res.n_changed
        report.n_dropped += res.n_dropped
        return True

    def settle(frame: int, kept: bool) -> None:
        _mark_done(project, done_ranges, config, pending, final)
        if kept and on_frame_done is not None:
            on_frame_done(frame)

    def revisit(direction: int) -> None:
        frame, doubtful = pending.popleft()
        kept = False
        if doubtful:
            kept = relabel_two_sided(frame, direction, reach, final_pass=False)
            report.n_revisited += 1
            report.n_revisit_kept += kept
        if final_reach:
            final.append(frame)
        else:
            runner.forget([frame])
        settle(frame, kept)

    def final_pass(direction: int) -> None:
        # only a doubted keypoint with trusted labels on both sides gets a new prediction
        frame = final.popleft()
        kept = False
        both = np.isfinite(runner.predict_two_sided(frame, final_reach)[0]).all(axis=-1)
        if (runner.doubted(frame) & both).any():
            kept = relabel_two_sided(frame, direction, final_reach, final_pass=True)
            report.n_final_pass += 1
            report.n_final_kept += kept
        runner.forget([frame])
        settle(frame, kept)

    # the blocks of frames in labeling order (a run with nothing left still gets one, empty,
    # for the revisits it saved); while one block is labeled, a helper process detects the
    # candidates of the next one on a second core
    blocks: list[tuple[int, list[int], list[int], bool, bool]] = []
    for direction, run in runs:
        seq = [f for f in run if f not in done]
        chunks = [seq[b0:b0 + block] for b0 in range(0, len(seq), block)] or [[]]
        blocks += [(direction, run, chunk, j == 0, j == len(chunks) - 1)
                   for j, chunk in enumerate(chunks)]
    worker = _start_detection_worker(project, config, frame_source, blocks)
    ahead = ThreadPoolExecutor(max_workers=1) if worker is not None else None
    fetched: Future | None = None
    try:
        for i, (direction, run, chunk, first, last) in enumerate(blocks):
            if first:
                # a run stopped earlier resumes with the frames that waited for their final
                # pass or their revisit
                final.extend(f for f in run if f in saved_final)
                pending.extend((f, saved[f]) for f in run if f in saved)
                if pending or final:
                    runner.prefetch([f for f, _ in pending] + list(final))
            if fetched is None or not fetched.result():
                runner.prefetch(chunk)
            fetched = None
            following = blocks[i + 1][2] if i + 1 < len(blocks) else []
            if ahead is not None and worker.alive and following:
                fetched = ahead.submit(runner.detect_elsewhere, worker, following)
            for f in chunk:
                if should_stop is not None and should_stop():
                    report.cancelled = True
                    return runner
                res, calls = runner.label_frame(f, direction)
                done.add(f)
                _add_to_ranges(done_ranges, f)
                report.frames_done.append(f)
                report.view_frames += poses.n_cameras
                report.vlm_calls += calls
                report.n_changed += res.n_changed
                report.n_dropped += res.n_dropped
                if reach:
                    model = ~poses.human_mask(f)
                    steering = (res.flags & STEERING_FLAGS) > 0
                    doubtful = (steering & model).any() or _unshown(res).any()
                    pending.append((f, bool(doubtful)))
                elif final_reach:
                    final.append(f)
                _mark_done(project, done_ranges, config, pending, final)
                if on_frame_done is not None:
                    on_frame_done(f)
                if len(pending) > reach:
                    revisit(direction)
                if len(final) > final_reach:
                    final_pass(direction)
                progress.step()
            waiting = {p for p, _ in pending} | set(final)
            runner.forget([f for f in chunk if f not in waiting])
            if last:
                # the run's last frames: the other side is the next run or a seed
                while pending:
                    revisit(direction)
                while final:
                    final_pass(direction)
    finally:
        if ahead is not None:
            ahead.shutdown(wait=True, cancel_futures=True)
        if worker is not None:
            worker.close()
    return runner


@attrs.define
class _Progress:
    """``on_progress(done, total)`` over all the frames a call labels, the second direction's
    included."""

    callback: Callable[[int, int], None] | None
    total: int
    done: int = 0

    def step(self) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(self.done, self.total)


def _gaps_to_merge(project: Project, seeds: Sequence[int], frames: Sequence[int] | None
                   ) -> list[tuple[int, int, int]]:
    """The stretches ``(first, last, midpoint)`` a ``both_directions`` run labels in its
    second direction, those not merged yet whose frames are all in ``frames`` (None: all).

    - Each gap between two seeds (the seeds are its ends): the default run labeled it
      forward up to the midpoint and backward after it.
    - The frames before the first seed, with frame 0 as the end the second direction starts
      from (its labels stay; midpoint 0: the default run labeled them all backward), and
      those after the last seed, with the last frame as that end (midpoint: the frame before
      it; the default run labeled them all forward).
    """
    wanted = None if frames is None else {int(f) for f in frames}
    merged = _merged_gaps(project)
    seeds = sorted(seeds)
    last = project.poses.n_frames - 1
    spans = [(a, b, (a + b) // 2, range(a + 1, b)) for a, b in zip(seeds[:-1], seeds[1:])]
    spans.append((0, seeds[0], 0, range(0, seeds[0])))
    spans.append((seeds[-1], last, last - 1, range(seeds[-1] + 1, last + 1)))
    return [(a, b, mid) for a, b, mid, inside in spans
            if b - a > 1 and (a, b) not in merged
            and (wanted is None or wanted.issuperset(inside))]


def _gap_entry(item: Any) -> tuple[int, int]:
    a, b = item
    return int(a), int(b)


def _merged_gaps(project: Project) -> set[tuple[int, int]]:
    """The gaps a ``both_directions`` run has merged; a malformed entry is labeled again."""
    return set(_saved_entries(project, "both_directions", _gap_entry,
                              "labels of one direction until a rerun merges it"))


def _label_both_directions(project: Project, gaps: Sequence[tuple[int, int, int]],
                           runner: _Runner,
                           report: LabelingReport, frame_source: Any, progress: _Progress,
                           should_stop: Callable[[], bool] | None,
                           on_frame_done: Callable[[int], None] | None) -> None:
    """Label the stretches ``gaps`` (:func:`_gaps_to_merge`) in their second direction too and
    keep, per keypoint, the track :func:`~napari_behaviorvlm.pose.directions.choose_backward`
    picks.

    The table holds the default labels (forward up to each stretch's midpoint, backward
    after it). The halves after the midpoints are labeled forward again in one scratch copy
    of the project, the halves before them backward in another; then the two labelings of
    each stretch are compared. A keypoint the pick would put on a dot the table gives
    another keypoint in a view keeps its default labels. The merged stretches are recorded in
    the project's settings, so a rerun does not label them again; a stop discards the scratch
    work (the table keeps its default labels, and a rerun labels the second direction)."""
    forward = _label_scratch(project, [(+1, list(range(mid + 1, b))) for a, b, mid in gaps],
                             runner, report, frame_source, progress, should_stop)
    backward = _label_scratch(project, [(-1, list(range(mid, a, -1))) for a, b, mid in gaps],
                              runner, report, frame_source, progress, should_stop)
    if report.cancelled:
        return
    poses = project.poses
    body = runner.body
    for a, b, mid in gaps:
        span = np.arange(a, b + 1)  # the ends (seeds, or the session's first or last frame)
        nearer_backward = span > mid
        forward3d, forward_doubt = _gap_track(poses, forward, span, nearer_backward)
        backward3d, backward_doubt = _gap_track(poses, backward, span, ~nearer_backward)
        take_backward = choose_backward(forward3d, backward3d, forward_doubt, backward_doubt,
                                        body, nearer_backward)
        for i, f in enumerate(span[1:-1].tolist(), start=1):
            switch = (take_backward[i] != nearer_backward[i]) & ~poses.human_mask(f).any(axis=0)
            if not switch.any():
                continue
            other = _table_result(backward if f <= mid else forward, f)
            merged, switch = _pick_without_new_sharers(_table_result(poses, f), other, switch)
            if not switch.any():
                continue
            _write_frame(project, f, merged)
            report.n_other_direction += int(switch.sum())
            if on_frame_done is not None:
                on_frame_done(f)
    merged_gaps = sorted(_merged_gaps(project) | {(a, b) for a, b, _ in gaps})
    project.settings.setdefault(SETTINGS_KEY, {})["both_directions"] = [list(g) for g in merged_gaps]


def _label_scratch(project: Project, runs: list[tuple[int, list[int]]], runner: _Runner,
                   report: LabelingReport, frame_source: Any, progress: _Progress,
                   should_stop: Callable[[], bool] | None) -> PoseTable:
    """Label ``runs`` (``(direction, frames in processing order)``) like ``runner`` did, in a
    copy of the project whose model labels on those frames are cleared; returns the copy's
    pose table."""
    frames = [f for _, seq in runs for f in seq]
    poses = project.poses.copy()
    human = poses.human_mask()
    for f in frames:
        model = ~human[:, f]
        poses.points2d[:, f][model] = np.nan
        poses.confidence[:, f][model] = np.nan
        poses.source[:, f][model] = int(Source.NONE)
        poses.flags[:, f][model] = 0
        poses.reproj_error[:, f] = np.nan
        poses.points3d[f] = np.nan
        poses.n_views[f] = 0
    settings = copy.deepcopy(project.settings)
    settings[SETTINGS_KEY] = {"done": _ranges(done_frames(project) - set(frames))}
    scratch = Project(session=project.session, skeleton=project.skeleton, poses=poses,
                      settings=settings)
    sub = LabelingReport()
    if frames:
        _label_runs(scratch, runs, done_frames(scratch), runner.config, runner.reasoner, sub,
                    frame_source, progress, should_stop, None, learned_from=runner)
    report.cancelled |= sub.cancelled
    report.view_frames += sub.view_frames
    report.n_changed += sub.n_changed
    report.n_dropped += sub.n_dropped
    report.n_revisited += sub.n_revisited
    report.n_revisit_kept += sub.n_revisit_kept
    report.n_final_pass += sub.n_final_pass
    report.n_final_kept += sub.n_final_kept
    return poses


def _gap_track(table: PoseTable, other: PoseTable, span: np.ndarray, from_other: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """One direction's labeling of the frames ``span``: from ``other`` (a scratch labeling in
    the other direction) where ``from_other``, else from ``table``. Returns the 3D points
    ``(F, M, K, 3)`` and :func:`_doubted_in_table` ``(F, M, K)``."""
    tables = [other if use else table for use in from_other]
    points = np.stack([t.points3d[f] for t, f in zip(tables, span.tolist())])
    doubt = np.stack([_doubted_in_table(t, f) for t, f in zip(tables, span.tolist())])
    return points, doubt


def _doubted_in_table(poses: PoseTable, frame: int) -> np.ndarray:
    """``(M, K)`` bool: a steering flag in some view of a model keypoint, or no 3D point."""
    flagged = (np.bitwise_or.reduce(poses.flags[:, frame], axis=0) & STEERING_FLAGS) > 0
    return flagged | ~np.isfinite(poses.points3d[frame]).all(axis=-1)


def _start_detection_worker(project: Project, config: LabelingConfig, frame_source: Any,
                            blocks: Sequence[tuple[int, list[int], list[int], bool, bool]]
                            ) -> DetectionWorker | None:
    """A helper process detecting candidates ahead of the labeling
    (:mod:`~napari_behaviorvlm.pose.detect_worker`), when the frames come from the session's
    videos, a second core is there, the process is not a bundled app (whose executable is not
    Python) and at least two blocks need candidates; else None."""
    if frame_source is not None or (os.cpu_count() or 1) < 2:
        return None
    if getattr(sys, "frozen", False):  # a bundled app: sys.executable is the app, not Python
        return None
    if sum(1 for b in blocks if b[2]) < 2:
        return None
    try:
        return DetectionWorker(project.session, config.candidates)
    except (OSError, ValueError, pickle.PicklingError) as exc:
        log.info("no helper process for candidate detection (%r); detecting in this one", exc)
        return None


def retriangulate_frame(project: Project, frame: int, params: RefineParams | None = None) -> None:
    """Recompute ``frame``'s 3D points, reprojection errors, confidences and flags from its
    current 2D labels (e.g. after a human edit), keeping every label where it is.

    Human labels weigh 10x a model label in the triangulation and are never flagged; model
    labels are scored with the rules of :mod:`.refine` (no label is moved or dropped here), the
    previous frame's 3D pose standing in for the temporal prediction.
    """
    from napari_behaviorvlm.geometry.triangulation import triangulate_ransac

    params = params or _stored_refine_params(project)
    poses = project.poses
    group = project.session.calibration
    if group is None:
        return
    frame = int(frame)
    if not 0 <= frame < poses.n_frames:
        raise ValueError(f"frame {frame} is outside the session (0..{poses.n_frames - 1})")
    obs = poses.points2d[:, frame].copy()
    human = poses.human_mask(frame)
    conf = np.where(human, 1.0, poses.confidence[:, frame].astype(np.float64))
    res = triangulate_ransac(obs, group, params.threshold_px,
                             weights=np.where(human, 10.0, np.clip(np.nan_to_num(conf, nan=0.5), 0.1, 1)))
    x3 = np.where((res.n_views >= 2)[..., None], res.points3d, np.nan)
    pred = np.full_like(x3, np.nan)
    for nb in (frame - 1, frame + 1):
        if 0 <= nb < poses.n_frames:
            fill = ~np.isfinite(pred).all(-1) & np.isfinite(poses.points3d[nb]).all(-1)
            pred[fill] = poses.points3d[nb][fill]
    n_ind, n_kp = x3.shape[:2]
    # the model's own stage-3 confidence is not stored; a model label counts as plain (0.5)
    kept = poses.flags[:, frame] & np.uint16(int(Flag.LOW_MODEL_CONFIDENCE | Flag.AMBIGUOUS))
    res2 = score_frame(group, project.skeleton, obs, human, x3, res.n_views,
                       np.where(human, 1.0, 0.5), np.full(human.shape, np.nan),
                       np.where(human, 0, kept).astype(np.uint16), pred,
                       np.full((n_ind, n_kp), 4.0), params)
    _write_frame(project, frame, res2)


def _stored_refine_params(project: Project) -> RefineParams:
    """The refine parameters of the project's last run; settings this version no longer has
    (a project saved by an older version) are ignored, the others kept."""
    stored = project.settings.get(SETTINGS_KEY, {}).get("config", {}).get("refine")
    if isinstance(stored, dict):
        known = {field.name for field in attrs.fields(RefineParams)}
        try:
            return RefineParams(**{k: v for k, v in stored.items() if k in known})
        except (TypeError, ValueError):
            pass
    return RefineParams()
