"""Which dots a camera cannot see because a body stands in the way, learned from the seeds.

A QD dot behind the animal's own body (a paw under the belly seen from above, a far-side paw
seen from the side) or behind the other animal is not in the image. Its keypoint still has a
prediction there, and the dot nearest that prediction belongs to something else: another
keypoint, a reflection, the other mouse. A label taken there is wrong by construction, and
when two or three views agree on such dots, every geometric test passes.

:class:`BodyOccluders` is a coarse volume for each animal, built from its keypoints:

- the **trunk**: spheres along the back line (the first three midline keypoints of the
  skeleton, e.g. ``back_front``, ``back_mid``, ``back_rear``), each centred ``depth_mm`` below
  the line and of radius ``depth_mm``, so the spheres touch the back's dots from below;
- the **head**: one sphere of radius ``head_mm`` centred ``head_mm`` below the midpoint of a
  left/right pair that is a body region of its own (the default skeleton's ``ears``).

"Below" is the world direction ``up`` reversed, made perpendicular to the back line (a rearing
animal's belly faces forward). A keypoint is **hidden** in a camera when the ray from the
camera centre to it passes at least ``edge_mm`` deep inside a sphere (plus ``uncertainty_share``
of the position's uncertainty, when the position is a prediction) and enters it at least
``margin_mm`` before the keypoint. A keypoint inside a sphere is not judged by it: a dot lies
on the body's surface, so there the sphere is too big. The keypoints that build a sphere are
not tested against their own animal's spheres of that kind (the model is too coarse to judge
the dots it is made of).

Nothing is assumed about the animal's size or the world's orientation:
:func:`fit_body_occluders` picks ``up`` among the six world axes and the two sizes on a grid (fractions of the seeds' back
length) by how well they explain which keypoints the seed frames left unlabeled although they
project into the image. A wrongly hidden keypoint loses a right label, so a false "hidden"
counts ``false_weight`` times a true one; when nothing explains the seeds, there is no model.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np

from napari_behaviorvlm.core.skeleton import Skeleton
from napari_behaviorvlm.geometry.camera import CameraGroup

__all__ = ["BodyOccluders", "fit_body_occluders"]

_AXES = np.vstack([np.eye(3), -np.eye(3)])  # candidate "up" directions: +x +y +z -x -y -z
_DEPTH_FRACTIONS = np.round(np.arange(0.15, 0.601, 0.025), 3)  # trunk depth / back length
_HEAD_FRACTIONS = np.round(np.concatenate([[0.0], np.arange(0.10, 0.451, 0.025)]), 3)


@attrs.frozen
class BodyOccluders:
    """Per-animal sphere volumes that hide dots (see the module docstring).

    Attributes:
        trunk: Keypoint indices of the back line, front to rear (3 from the fit).
        up: ``(3,)`` unit world direction of the animals' backs.
        depth_mm: Trunk spheres: radius and depth below the back line, mm.
        head: The left/right pair whose midpoint tops the head sphere, or None.
        head_mm: Head sphere: radius and depth below that midpoint, mm (0 = no head sphere).
        edge_mm: How deep inside a sphere a ray must pass to count, mm.
        margin_mm: How far before the keypoint the ray must enter the sphere, mm.
        uncertainty_share: Share of a predicted position's uncertainty (1 standard deviation,
            mm) the ray must pass deeper still. At 0, a prediction that lagged a rearing paw
            hid it from the views that saw it, and the swapped pair stayed swapped for 60
            frames (1 mouse, seed 4: swap 0.26 -> 1.37 %); at 1 most of the gain was lost; 0.5
            was chosen on the tuning sessions (docs/pose-pipeline.md, *Occlusion*).
    """

    trunk: tuple[int, ...]
    up: tuple[float, float, float]
    depth_mm: float
    head: tuple[int, int] | None = None
    head_mm: float = 0.0
    edge_mm: float = 1.0
    margin_mm: float = 2.0
    uncertainty_share: float = 0.5

    def hidden(self, group: CameraGroup, points3d: np.ndarray,
               sigma: np.ndarray | None = None) -> np.ndarray:
        """``(C, M, K)`` bool: keypoint ``(m, k)`` at ``points3d`` ``(M, K, 3)`` mm is hidden
        from camera ``c`` by a body. With ``sigma`` ``(M, K)`` mm (the position's
        uncertainty; NaN = unknown, never hidden), the ray must pass ``uncertainty_share *
        sigma`` deeper.
        Keypoints without a position are never hidden; an animal whose back line is
        incomplete hides nothing."""
        n_ind, n_kp = points3d.shape[:2]
        centers = np.stack([cam.center for cam in group])
        pen = _penetration(centers, points3d, self, self.depth_mm, self.head_mm)
        need = self.edge_mm
        if sigma is not None:
            need = need + self.uncertainty_share * np.nan_to_num(sigma, nan=np.inf).reshape(-1)
        return (pen > need).reshape(len(group), n_ind, n_kp)


def _spheres(points3d: np.ndarray, trunk: Sequence[int], head: tuple[int, int] | None,
             up: np.ndarray, depth: np.ndarray, head_depth: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Sphere centres for every size at once.

    Returns ``trunk_centres (D, M, S, 3)``, ``head_centres (H, M, 3)`` (NaN where the animal's
    anchors are missing), ``on_trunk`` and ``on_head`` ``(K,)`` bool (the anchor keypoints).
    """
    n_kp = points3d.shape[1]
    line = points3d[:, list(trunk)]  # (M, T, 3)
    axis = line[:, 0] - line[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
        below = -(up - (axis @ up)[:, None] * axis)
        below = below / np.linalg.norm(below, axis=-1, keepdims=True)  # (M, 3)
    # the back line sampled every third of a segment
    steps = np.arange(3) / 3.0
    samples = [line[:, i, None] * (1 - steps[:, None]) + line[:, i + 1, None] * steps[:, None]
               for i in range(len(trunk) - 1)]
    samples = np.concatenate(samples + [line[:, -1:]], axis=1)  # (M, S, 3)
    trunk_c = samples[None] + depth[:, None, None, None] * below[None, :, None]
    if head is None:
        head_c = np.full((len(head_depth), points3d.shape[0], 3), np.nan)
    else:
        top = points3d[:, list(head)].mean(axis=1)  # (M, 3)
        whole_back = np.isfinite(line).all(axis=(1, 2))
        top = np.where(whole_back[:, None], top, np.nan)  # an incomplete back hides nothing
        head_c = top[None] + head_depth[:, None, None] * below[None]
    on_trunk = np.isin(np.arange(n_kp), trunk)
    on_head = np.isin(np.arange(n_kp), [] if head is None else list(head))
    return trunk_c, head_c, on_trunk, on_head


def _ray_depth(centers: np.ndarray, targets: np.ndarray, spheres: np.ndarray,
               radius: np.ndarray, margin: float, inside_hides: bool) -> np.ndarray:
    """How deep (mm) each camera's ray to each target passes inside each sphere, counting only
    spheres entered at least ``margin`` before the target (else -inf). A target inside a
    sphere: +inf when ``inside_hides``, else -inf (a dot lies on the body's surface, so the
    sphere is too big there to judge it).

    ``centers (C, 3)``, ``targets (N, 3)``, ``spheres (G, S, 3)``, ``radius (G,)`` ->
    ``(G, C, N, S)``.
    """
    ray = targets[None] - centers[:, None]  # (C, N, 3)
    length = np.linalg.norm(ray, axis=-1)
    unit = ray / length[..., None]
    to_c = spheres[:, None, None] - centers[None, :, None, None]  # (G, C, 1, S, 3)
    along = np.einsum("gcxsi,cni->gcns", to_c, unit)
    off2 = np.einsum("gcxsi,gcxsi->gcxs", to_c, to_c) - along ** 2
    r = radius[:, None, None, None]
    inside = r * r - off2
    enter = along - np.sqrt(np.clip(inside, 0.0, None))
    within = np.linalg.norm(targets[None, None, :, None] - spheres[:, None, None], axis=-1) <= r
    hit = (inside > 0) & (enter > 0) & (enter < length[None, ..., None] - margin) & ~within
    depth = np.where(hit, r - np.sqrt(np.clip(off2, 0.0, None)), -np.inf)
    return np.where(within, np.inf if inside_hides else -np.inf, depth)


def _penetration(centers: np.ndarray, points3d: np.ndarray, model: BodyOccluders,
                 depth: float | np.ndarray, head_depth: float | np.ndarray,
                 inside_hides: bool = False) -> np.ndarray:
    """``(D, H, C, M*K)`` (or ``(C, M*K)`` for scalar sizes) deepest pass of each camera's ray
    to each keypoint inside another body part's sphere, mm (-inf: none; a keypoint inside a
    sphere: see :func:`_ray_depth`)."""
    scalar = np.ndim(depth) == 0 and np.ndim(head_depth) == 0
    depth, head_depth = np.atleast_1d(depth).astype(float), np.atleast_1d(head_depth).astype(float)
    n_ind, n_kp = points3d.shape[:2]
    up = np.asarray(model.up, float)
    trunk_c, head_c, on_trunk, on_head = _spheres(points3d, model.trunk, model.head, up, depth,
                                                  head_depth)
    targets = points3d.reshape(-1, 3)
    owner = np.repeat(np.arange(n_ind), n_kp)
    kp_trunk, kp_head = np.tile(on_trunk, n_ind), np.tile(on_head, n_ind)
    out_t = np.full((len(depth), len(centers), len(targets)), -np.inf)
    out_h = np.full((len(head_depth), len(centers), len(targets)), -np.inf)
    ok = np.isfinite(targets).all(axis=-1)
    with np.errstate(invalid="ignore"):
        for m in range(n_ind):
            test = ok & ~((owner == m) & kp_trunk)
            if np.isfinite(trunk_c[:, m]).all() and test.any():
                pen = _ray_depth(centers, targets[test], trunk_c[:, m], depth, model.margin_mm,
                                 inside_hides)
                out_t[..., test] = np.maximum(out_t[..., test], pen.max(axis=-1))
            test = ok & ~((owner == m) & kp_head)
            if np.isfinite(head_c[:, m]).all() and test.any():
                pen = _ray_depth(centers, targets[test], head_c[:, m, None], head_depth,
                                 model.margin_mm, inside_hides)[..., 0]
                out_h[..., test] = np.maximum(out_h[..., test], pen)
    out_h[head_depth <= 0] = -np.inf
    pen = np.maximum(out_t[:, None], out_h[None])
    return pen[0, 0] if scalar else pen


def _in_image(group: CameraGroup, points3d: np.ndarray) -> np.ndarray:
    """``(C, M, K)`` bool: the point projects inside camera ``c``'s image."""
    xy = group.project(points3d)
    size = np.array([cam.size for cam in group], float)[:, None, None]
    with np.errstate(invalid="ignore"):
        return np.isfinite(xy).all(axis=-1) & (xy >= 0).all(axis=-1) & (xy < size).all(axis=-1)


def fit_body_occluders(skeleton: Skeleton, midline: Sequence[int], group: CameraGroup,
                       seed_points3d: Sequence[np.ndarray], seed_labeled: Sequence[np.ndarray],
                       false_weight: float = 4.0, min_explained: int = 3
                       ) -> BodyOccluders | None:
    """Learn the body volumes from the seed frames.

    Args:
        skeleton: For the head pair (a left/right pair that is a region of its own).
        midline: Keypoints without a left/right partner, in skeleton order; the first three
            are the back line (as :class:`~napari_behaviorvlm.pose.refine.BodyModel` uses them).
        group: The cameras.
        seed_points3d: Per seed frame, ``(M, K, 3)`` mm.
        seed_labeled: Per seed frame, ``(C, M, K)`` bool: the keypoint is labeled in that view.
        false_weight: A keypoint called hidden but labeled costs this many hidden ones explained.
        min_explained: Fewest unlabeled keypoints the best model must explain (else None).

    Returns:
        The best :class:`BodyOccluders` on the grid, or None (no back line of 3 keypoints, no
        seed, or nothing explained).
    """
    trunk = tuple(int(k) for k in midline[:3])
    if len(trunk) < 3 or not seed_points3d:
        return None
    regions = [sorted(idx) for idx in skeleton.region_indices().values() if len(idx) == 2]
    heads = [tuple(sorted(p)) for p in skeleton.symmetry_indices() if sorted(p) in regions]
    stack = np.stack(seed_points3d)
    lengths = np.linalg.norm(stack[:, :, trunk[0]] - stack[:, :, trunk[-1]], axis=-1)
    lengths = lengths[np.isfinite(lengths) & (lengths > 0)]
    if not len(lengths):
        return None
    length = float(np.median(lengths))
    depths, head_sizes = _DEPTH_FRACTIONS * length, _HEAD_FRACTIONS * length
    centers = np.stack([cam.center for cam in group])
    best: tuple[float, BodyOccluders] | None = None
    for up in _AXES:
        for head in heads or [None]:
            model = BodyOccluders(trunk, (float(up[0]), float(up[1]), float(up[2])), 0.0, head, 0.0)
            score = np.zeros((len(depths), len(head_sizes)))
            explained = np.zeros_like(score)
            for x3, labeled in zip(seed_points3d, seed_labeled):
                unlabeled = (_in_image(group, x3) & ~labeled).reshape(len(group), -1)
                shown = labeled.reshape(len(group), -1)
                # a labeled dot inside the volume counts against it as a hidden one would
                hid = _penetration(centers, x3, model, depths, head_sizes, True) > model.edge_mm
                right = (hid & unlabeled).sum(axis=(2, 3))
                explained += right
                score += right - false_weight * (hid & shown).sum(axis=(2, 3))
            # the best score; among equals the smallest volume
            i, j = np.unravel_index(int(np.argmax(score)), score.shape)
            if explained[i, j] < min_explained:
                continue
            if best is None or score[i, j] > best[0]:
                best = (float(score[i, j]), attrs.evolve(model, depth_mm=float(depths[i]),
                                                         head_mm=float(head_sizes[j])))
    return None if best is None else best[1]
