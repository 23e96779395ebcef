"""Body-attached distractors ("decoys") learned from the seed frames.

Some bright spots that look exactly like a QD dot move with the body: the eyes' infrared shine
sits ~10 mm in front of the ears and triangulates consistently across views, so no cross-view
check can reject it, and a paw or an ear whose prediction comes near it takes it. The seed
frames show such spots: candidates that no seed label names but that agree in 3D over at least
``min_views`` views. A spot found at the same place relative to its nearest keypoints in at
least two seeds (or, the head nodding against the neck, at the same distances to the ears:
:meth:`Decoys.from_seeds`) is a *decoy*; for every later frame its 3D position is predicted
from those keypoints' predicted positions, and stage 3
(:func:`~napari_behaviorvlm.pose.reasoner.harmonize`) lets it compete for the candidates like a
keypoint whose answer is discarded: a dot is taken by a keypoint only when that keypoint explains
it better than the decoy does.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from napari_behaviorvlm.geometry.camera import CameraGroup
from napari_behaviorvlm.geometry.vectors import vector_length
from napari_behaviorvlm.pose.candidates import Candidates
from napari_behaviorvlm.pose.reacquire import agreeing_points, free_dots
from napari_behaviorvlm.pose.refine import seed_pair_distances

__all__ = ["Decoys", "find_unlabeled_points"]


def _frame(p: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Origin and rotation ``(3, 3)`` (rows = axes) of the local frame of 3 points ``(3, 3)``."""
    o = p.mean(axis=0)
    x = p[0] - p[1]
    nx = np.linalg.norm(x)
    if not np.isfinite(nx) or nx < 1e-6:
        return None
    x = x / nx
    v = p[2] - o
    y = v - (v @ x) * x
    ny = np.linalg.norm(y)
    if ny < 1.0:  # (nearly) collinear anchors: the frame is undetermined
        return None
    y = y / ny
    return o, np.stack([x, y, np.cross(x, y)])


def find_unlabeled_points(group: CameraGroup, labels: np.ndarray, candidates: Sequence[Candidates],
                          label_px: float = 2.0, agree_px: float = 1.5, min_views: int = 2
                          ) -> np.ndarray:
    """3D points of one frame's candidates that no label names but that agree across views.

    Args:
        group: The calibrated cameras (axis ``C``).
        labels: ``(C, M, K, 2)`` px, the frame's labels (NaN = none).
        candidates: Per view, the frame's candidates.
        label_px: A candidate within this distance of a label is that label's dot.
        agree_px: A view supports a 3D point when one of its free candidates lies this close to
            the point's reprojection.
        min_views: Views that must support a point.

    Returns:
        ``(P, 3)`` mm, one row per distinct point (supports counted, duplicates merged).
    """
    free = free_dots(candidates, labels, label_px)
    xy = [candidates[c].xy[free[c]] if len(candidates[c]) else np.zeros((0, 2))
          for c in range(len(group))]
    found, _ = agreeing_points(group, xy, agree_px, min_views)
    out: list[np.ndarray] = []
    for p in found:
        if all(np.linalg.norm(p - q) > 2.0 for q in out):
            out.append(p)
    return np.array(out).reshape(-1, 3)


@attrs.define(eq=False)
class Decoys:
    """Distractors that move with an individual's body, learned from the seed frames.

    Attributes:
        individual: ``(D,)`` individual index of each decoy.
        anchors: ``(D, 3)`` keypoint indices whose local frame carries the decoy.
        local: ``(D, 3)`` mm, the decoy in that frame (mean over the seeds that showed it).
    """

    individual: np.ndarray = attrs.field(factory=lambda: np.zeros(0, int))
    anchors: np.ndarray = attrs.field(factory=lambda: np.zeros((0, 3), int))
    local: np.ndarray = attrs.field(factory=lambda: np.zeros((0, 3)))

    def __len__(self) -> int:
        return int(len(self.individual))

    @classmethod
    def from_seeds(cls, poses3d: Sequence[np.ndarray], points: Sequence[np.ndarray],
                   mirror: Sequence[int] | None = None, near_mm: float = 25.0,
                   agree_mm: float = 3.0, loose_mm: float = 8.0, rigid_mm: float = 1.0,
                   mirror_rigid_mm: float = 1.5) -> Decoys:
        """Decoys from the seeds' 3D poses and their unlabeled 3D points.

        A point is a decoy when another seed shows a point at the same place relative to its
        3 anchors (the nearest keypoint, the one that keeps the steadiest distance to it over
        the seeds, and the steadiest keypoint of the body's midline, ``mirror``, if it has
        one), or at the mirror image (relative to the left/right partners of those anchors):
        one eye's shine confirms the other's. The same place: within ``agree_mm`` in the
        anchors' frame; or, for a spot no decoy covers yet, at the same distances to the first
        two anchors (the ears, to which an eye is rigid) within ``rigid_mm``
        (``mirror_rigid_mm`` for the mirror image, the other ear's distance for one ear's: no
        head is symmetric, and the simulator's eyes differ from their mirror images by up to
        2 mm) and within ``loose_mm`` in the frame. The third anchor, the neck, turns as the
        head nods: the simulator's true eyes lie up to 3.6 mm from their mean place in that
        frame over one session's seeds while their distances to the ears vary by 1.1 mm at
        most. It is taken from the midline because three seeds can show a front paw at one
        distance from an ear by chance (1.0 mm apart on a benchmark session), and a frame
        spanned by a paw follows nothing. Both the decoy and its mirror image are kept.

        Args:
            poses3d: Per seed, ``(M, K, 3)`` mm.
            points: Per seed, ``(P, 3)`` mm from :func:`find_unlabeled_points`.
            mirror: ``(K,)`` left/right partner of every keypoint (itself on the midline);
                None: no mirror images, and any keypoint may be the third anchor.
            near_mm: A point farther than this from every keypoint of an individual is not
                attached to it (floor reflections, lamp spots).
            agree_mm: The same decoy in two seeds lies this close in its anchors' frame ...
            loose_mm, rigid_mm: ... or this close, at distances to its first two anchors this
                close (a spot within ``loose_mm`` of a decoy already learned is that decoy).
            mirror_rigid_mm: ``rigid_mm`` for a mirror image.
        """
        ind: list[int] = []
        anc: list[np.ndarray] = []
        loc: list[np.ndarray] = []
        n_seeds = len(poses3d)
        flip = np.array([1.0, 1.0, -1.0])
        _, lo, hi, n_seen = seed_pair_distances(poses3d)
        # (M, K, K) mm; a pair some seed did not show has no known spread (a paw that two
        # seeds happened to show at the same distance from an ear is no anchor)
        spread = np.where(n_seen == n_seeds, hi - lo, np.nan)
        partner = None if mirror is None else np.asarray(mirror)
        midline = None if partner is None else partner == np.arange(len(partner))

        def known(m: int, order: np.ndarray, here: np.ndarray, within_mm: float) -> bool:
            return any(i == m and (a == order).all() and np.linalg.norm(q - here) < within_mm
                       for i, a, q in zip(ind, anc, loc))

        def found_in(s2: int, m: int, order: np.ndarray, here: np.ndarray, strict: bool,
                     to_anchors: np.ndarray, rigid: float) -> np.ndarray | None:
            """The point of seed ``s2`` at ``here`` in the frame of ``order``, in that frame
            (None: none): the nearest within ``agree_mm`` (``strict``), or the nearest within
            ``loose_mm`` whose distances to the first two anchors differ from ``to_anchors``
            ``(2,)`` mm by less than ``rigid``."""
            fr2 = _frame(poses3d[s2][m, order])
            if fr2 is None or not len(points[s2]):
                return None
            local2 = (points[s2] - fr2[0]) @ fr2[1].T
            dd = np.linalg.norm(local2 - here, axis=1)
            if strict:
                ok = dd < agree_mm
            else:
                dist = vector_length(points[s2][:, None] - poses3d[s2][m, order[:2]][None])
                ok = (np.abs(dist - to_anchors).max(axis=1) < rigid) & (dd < loose_mm)
            return local2[np.flatnonzero(ok)[int(np.argmin(dd[ok]))]] if ok.any() else None

        # the decoys a close match confirms first, then those only a loose one does
        for strict in (True, False):
            for s in range(n_seeds):
                pose = poses3d[s]
                for p in points[s]:
                    d = np.linalg.norm(pose - p, axis=-1)  # (M, K)
                    if not np.isfinite(d).any() or np.nanmin(d) > near_mm:
                        continue
                    m = int(np.nanargmin(np.nanmin(d, axis=1)))
                    # anchors: the nearest keypoint, the one that keeps the steadiest distance
                    # to it over the seeds (the other ear, not a paw that came near the face),
                    # and the steadiest of the body's midline (three seeds can show a paw at
                    # one distance from an ear by chance: 1.0 mm apart)
                    k0 = int(np.nanargmin(d[m]))
                    score = spread[m, k0] + 0.1 * d[m]
                    score[k0] = -np.inf
                    order = np.argsort(np.nan_to_num(score, nan=np.inf))[:2]
                    third = score.copy()
                    third[order] = np.nan
                    if midline is not None and np.isfinite(third[midline]).any():
                        third[~midline] = np.nan
                    order = np.append(order, np.argmin(np.nan_to_num(third, nan=np.inf)))
                    if not (np.isfinite(d[m, order]).all()
                            and np.isfinite(score[order[1]]) and np.isfinite(third[order[2]])):
                        continue
                    fr = _frame(pose[m, order])
                    if fr is None:
                        continue
                    here = (p - fr[0]) @ fr[1].T
                    to_anchors = vector_length(p - pose[m, order[:2]])  # (2,) mm
                    within = agree_mm if strict else loose_mm
                    if known(m, order, here, within):
                        continue  # already learned
                    mirrored = None if partner is None else partner[order]
                    # confirmed by another seed: the same place (or its mirror image) holds one
                    # of its points
                    seen = [here]
                    for s2 in range(n_seeds):
                        if s2 == s:
                            continue
                        q = found_in(s2, m, order, here, strict, to_anchors, rigid_mm)
                        if q is not None:
                            seen.append(q)
                        elif mirrored is not None:
                            q = found_in(s2, m, mirrored, here * flip, strict, to_anchors,
                                         mirror_rigid_mm)
                            if q is not None:
                                seen.append(q * flip)
                    if len(seen) < 2:
                        continue
                    mean = np.mean(seen, axis=0)
                    ind.append(m)
                    anc.append(order)
                    loc.append(mean)
                    if mirrored is not None and not known(m, mirrored, mean * flip, within):
                        ind.append(m)
                        anc.append(mirrored)
                        loc.append(mean * flip)
        if not ind:
            return cls()
        return cls(np.array(ind, int), np.array(anc, int), np.array(loc, float))

    def predict(self, x3: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decoy positions ``(D, 3)`` mm from keypoint positions ``x3`` ``(M, K, 3)`` and their
        uncertainty ``(D,)`` mm (the largest of the anchors' ``sigma`` ``(M, K)``); NaN where an
        anchor is unknown."""
        out = np.full((len(self), 3), np.nan)
        sig = np.full(len(self), np.nan)
        for i in range(len(self)):
            m, a = self.individual[i], self.anchors[i]
            fr = _frame(x3[m, a])
            if fr is None or not np.isfinite(fr[0]).all():
                continue
            out[i] = fr[0] + self.local[i] @ fr[1]
            sig[i] = float(np.nanmax(sigma[m, a]))
        return out, sig
