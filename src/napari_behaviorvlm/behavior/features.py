"""Per-frame, per-animal behavior features from poses (3D or 2D) or from video alone.

Every feature array has shape ``(F, M, D)`` (frames, individuals, features), float64, NaN where
the feature cannot be computed (missing keypoints, no 3D, a single animal for social features).
Distances and speeds are expressed in **body lengths** (BL) so that thresholds do not depend on
the unit (mm for 3D poses, px for 2D poses): one BL is the animal's median head-to-tail-base
distance over the session. Speeds are BL/s, angles radians, turn rate rad/s.

Pose features (:func:`pose_features`), by name:

- ``speed``: body-centre speed (BL/s).
- ``head_speed``: head speed relative to the body centre (BL/s); high while grooming/sniffing.
- ``body_length_ratio``: head-to-tail-base length / its median (1 = stretched as usual; < 1 when
  the body is foreshortened, e.g. rearing seen from above, or hunched).
- ``turn_rate``: absolute change of heading per second (rad/s).
- ``elevation``: height of the head above the lowest paw (the floor), in BL; 3D only, NaN for
  2D poses (about 0.3-0.5 BL on all fours, above 0.8 BL when reared).
- ``paw_head``: smallest front-paw-to-head distance (BL); NaN without paw keypoints.
- ``wall``: signed distance of the head to the arena border (BL), positive inside; with an
  overhead camera a head raised against the wall projects *beyond* the floor border (negative).
- ``other_dist``: distance to the nearest other animal's body centre (BL).
- ``head_other``: distance from this animal's head to the closest keypoint of any other
  animal (BL); small while sniffing it.
- ``other_facing``: cosine of the angle between this animal's heading and the direction to the
  nearest other animal (1 = facing it).
- ``approach``: rate of decrease of ``other_dist`` (BL/s; positive while closing in).
- ``other_speed``: the nearest other animal's speed (BL/s).
- ``toward_other``: this animal's body velocity along the direction to the nearest other
  (BL/s; positive while moving toward it: approaching or following it).
- ``other_away``: the nearest other's body velocity along the same direction (BL/s; positive
  while it moves away from this animal: being followed, or leaving).
- ``relative_heading``: cosine between the two body axes (1 = parallel, -1 = opposite).
- ``head_other_head``, ``head_other_rear``: this animal's head to the nearest other's head and
  to its tail base (BL): a nose-to-nose or nose-to-rear contact.
- ``back_height_ratio``: 3D only: height of the back above the lowest paw / its median (< 1:
  crouched, e.g. resting; NaN for 2D poses).

Video features (:func:`video_features`): ``motion`` (mean absolute frame difference, 0..1 scale
of intensity) and ``app0..`` (principal components of a downsampled grey image), computed per
camera and concatenated; they describe the whole image (``M`` = 1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import attrs
import numpy as np
from scipy.ndimage import uniform_filter1d

__all__ = [
    "POSE_FEATURES",
    "FeatureSet",
    "KeypointRoles",
    "arena_from_points",
    "pose_features",
    "video_features",
    "windowed",
]

POSE_FEATURES = [
    "speed", "head_speed", "body_length_ratio", "turn_rate", "elevation", "paw_head", "wall",
    "other_dist", "head_other", "other_facing", "approach", "other_speed",
    "toward_other", "other_away", "relative_heading", "head_other_head", "head_other_rear",
    "back_height_ratio",
]


@attrs.define(eq=False)
class FeatureSet:
    """Per-frame features ``values`` ``(F, M, D)`` with names ``(D,)``.

    Attributes:
        values: float64 ``(F, M, D)``; NaN where undefined.
        names: feature names (axis ``D``).
        individuals: animal names (axis ``M``).
        fps: frames per second.
        body_length: ``(M,)`` median body length of each animal in pose units (mm or px); NaN
            for video features.
        nearest: int ``(F, M)`` index of the nearest other animal (-1: none), or None.
    """

    values: np.ndarray
    names: list[str]
    individuals: list[str]
    fps: float
    body_length: np.ndarray = attrs.field(factory=lambda: np.array([]))
    nearest: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.values.shape[0])

    def get(self, name: str) -> np.ndarray:
        """``(F, M)`` values of one feature."""
        return self.values[:, :, self.names.index(name)]

    def has(self, name: str) -> bool:
        """True when the feature exists and is finite somewhere."""
        return name in self.names and bool(np.isfinite(self.get(name)).any())


@attrs.define
class KeypointRoles:
    """Keypoint indices playing each anatomical role (any list may be empty); ``rear`` (back_rear,
    hips) stands in for the tail base on frames where that is missing."""

    head: list[int]
    body: list[int]
    tail_base: list[int]
    front_paws: list[int]
    paws: list[int]
    back: list[int]
    rear: list[int] = attrs.field(factory=list)

    @classmethod
    def from_names(cls, names: Sequence[str]) -> KeypointRoles:
        """Guess roles from keypoint names (QD mouse, DeepLabCut and SLEAP conventions).

        Raises:
            ValueError: no head-like or no tail-base-like keypoint, so no body axis exists.
        """
        low = [n.lower() for n in names]
        tokens = [re.split(r"[_\-\s.]+", n) for n in low]

        def hit(i: int, word: str) -> bool:
            # a word matches the start of a name token ("ear" matches "earl", not "back_rear");
            # multi-token words ("tail_base") match the whole name
            return word in low[i] if "_" in word or " " in word else any(
                t.startswith(word) for t in tokens[i])

        def pick(*words: str, exclude: tuple[str, ...] = ()) -> list[int]:
            return [i for i in range(len(low))
                    if any(hit(i, w) for w in words) and not any(hit(i, x) for x in exclude)]

        head = pick("nose", "ear", "head", "snout")
        tail_base = pick("tail_base", "tailbase", "tail base") or pick("back_rear", "hip", "rump")
        body = pick("back", "body", "spine", "centre", "center", "neck", "bc",
                    exclude=("tail",)) or head + tail_base
        paws = pick("paw", "hand", "foot")
        front_paws = [i for i in paws if "front" in low[i] or "fore" in low[i]] or paws
        back = pick("back", "spine", "body", exclude=("tail",))
        if not head or not tail_base:
            raise ValueError(
                f"cannot find head and tail-base keypoints among {list(names)}: behavior "
                "features need a keypoint whose name contains nose/ear/head and one containing "
                "tail_base/tailbase/back_rear/hip"
            )
        rear = [i for i in pick("back_rear", "hip", "rump") if i not in tail_base]
        return cls(head, body, tail_base, front_paws, paws, back, rear)


def _nanmean_points(points: np.ndarray, idx: list[int]) -> np.ndarray:
    """Mean over keypoints ``idx`` of ``(F, M, K, D)`` ignoring NaN -> ``(F, M, D)``."""
    if not idx:
        return np.full(points.shape[:2] + points.shape[3:], np.nan)
    sub = points[:, :, idx]
    count = np.isfinite(sub).sum(axis=2)
    total = np.nansum(sub, axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def interpolate_gaps(x: np.ndarray, max_gap: int) -> np.ndarray:
    """Linearly fill NaN runs of at most ``max_gap`` frames along axis 0 (any trailing shape)."""
    x = np.array(x, dtype=float)
    flat = x.reshape(x.shape[0], -1)
    frames = np.arange(x.shape[0])
    for j in range(flat.shape[1]):
        col = flat[:, j]
        bad = ~np.isfinite(col)
        if not bad.any() or bad.all():
            continue
        filled = np.interp(frames, frames[~bad], col[~bad])
        # only fill runs no longer than max_gap that are bounded on both sides
        run_start = None
        for f in range(len(col) + 1):
            if f < len(col) and bad[f]:
                run_start = f if run_start is None else run_start
            elif run_start is not None:
                if f - run_start <= max_gap and run_start > 0 and f < len(col):
                    col[run_start:f] = filled[run_start:f]
                run_start = None
    return flat.reshape(x.shape)


def _smooth(x: np.ndarray, size: int) -> np.ndarray:
    """NaN-aware moving average along axis 0 with a centred window of ``size`` frames."""
    if size <= 1:
        return x
    finite = np.isfinite(x)
    num = uniform_filter1d(np.where(finite, x, 0.0), size, axis=0, mode="nearest")
    den = uniform_filter1d(finite.astype(float), size, axis=0, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-9, num / den, np.nan)


def _rate(x: np.ndarray, fps: float) -> np.ndarray:
    """Central-difference derivative along axis 0, per second (NaN propagates)."""
    out = np.full_like(x, np.nan, dtype=float)
    if len(x) >= 3:
        out[1:-1] = (x[2:] - x[:-2]) * fps / 2.0
    if len(x) >= 2:
        out[0] = (x[1] - x[0]) * fps
        out[-1] = (x[-1] - x[-2]) * fps
    return out


def arena_from_points(points: np.ndarray, quantile: float = 0.005) -> np.ndarray:
    """Axis-aligned arena border ``(4, 2)`` (x, y corners in order) estimated from where the
    animals went: the ``quantile`` / ``1 - quantile`` extent of every finite x, y position.

    An open-field animal visits the walls, so the extent of its positions is the floor border.
    ``points`` is ``(F, M, K, >=2)``; only x and y are used.
    """
    xy = points[..., :2].reshape(-1, 2)
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) == 0:
        raise ValueError("no finite keypoint position: cannot estimate the arena border")
    lo = np.quantile(xy, quantile, axis=0)
    hi = np.quantile(xy, 1.0 - quantile, axis=0)
    return np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])


def _signed_polygon_distance(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Signed distance of ``pts`` ``(N, 2)`` to a simple polygon ``(P, 2)``; positive inside."""
    d = np.full(len(pts), np.inf)
    inside = np.zeros(len(pts), dtype=bool)
    x, y = pts[:, 0], pts[:, 1]
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        ab = b - a
        t = np.clip(((pts - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
        proj = a + t[:, None] * ab
        d = np.minimum(d, np.linalg.norm(pts - proj, axis=1))
        # even-odd ray casting
        with np.errstate(invalid="ignore", divide="ignore"):
            cross = ((a[1] > y) != (b[1] > y)) & (
                x < (b[0] - a[0]) * (y - a[1]) / (b[1] - a[1] + 1e-300) + a[0])
        inside ^= cross
    out = np.where(inside, d, -d)
    out[~np.isfinite(pts).all(axis=1)] = np.nan
    return out


def pose_features(
    points: np.ndarray,
    keypoint_names: Sequence[str],
    fps: float,
    individuals: Sequence[str] | None = None,
    arena: np.ndarray | None = None,
    smooth_s: float = 0.12,
    max_gap_s: float = 0.5,
) -> FeatureSet:
    """Kinematic features from poses.

    Args:
        points: ``(F, M, K, 2)`` positions in px (2D, x right, y down) or ``(F, M, K, 3)`` in mm
            (3D, z up). NaN where a keypoint is missing.
        keypoint_names: ``(K,)`` names; roles are guessed by :class:`KeypointRoles`.
        fps: frames per second.
        individuals: ``(M,)`` names (default ``mouse0..``).
        arena: ``(P, 2)`` polygon of the arena floor border in the same x, y units; estimated
            from the positions (:func:`arena_from_points`) when None.
        smooth_s: positions are smoothed over this many seconds before differentiation.
        max_gap_s: missing keypoint runs up to this long are linearly interpolated.

    Returns:
        A :class:`FeatureSet` with :data:`POSE_FEATURES`.
    """
    points = np.asarray(points, dtype=float)
    if points.ndim != 4 or points.shape[-1] not in (2, 3):
        raise ValueError(f"poses must be (frames, animals, keypoints, 2 or 3), got {points.shape}")
    n_f, n_m, n_k, dim = points.shape
    if len(keypoint_names) != n_k:
        raise ValueError(f"{len(keypoint_names)} keypoint names for {n_k} keypoints")
    individuals = list(individuals) if individuals is not None else [f"mouse{i}" for i in range(n_m)]
    roles = KeypointRoles.from_names(keypoint_names)
    pts = interpolate_gaps(points, max(1, int(round(max_gap_s * fps))))
    pts = _smooth(pts, max(1, int(round(smooth_s * fps))))

    head = _nanmean_points(pts, roles.head)
    tail = _nanmean_points(pts, roles.tail_base)
    if roles.rear:  # frames without a tail base use the rear of the back / hips instead
        tail = np.where(np.isfinite(tail), tail, _nanmean_points(pts, roles.rear))
    body = _nanmean_points(pts, roles.body)
    body = np.where(np.isfinite(body), body, (head + tail) / 2)
    axis = head[..., :2] - tail[..., :2]
    length = np.linalg.norm(head - tail, axis=-1)  # (F, M), 3D length when 3D
    bl = np.nanmedian(np.where(length > 0, length, np.nan), axis=0)  # (M,)
    if not np.isfinite(bl).all():
        bad = [individuals[i] for i in np.flatnonzero(~np.isfinite(bl))]
        raise ValueError(f"no frame has both head and tail-base keypoints for {bad}")

    feats: dict[str, np.ndarray] = {}
    vel = _rate(body[..., :2], fps)
    feats["speed"] = np.linalg.norm(vel, axis=-1) / bl
    head_vel = _rate(head[..., :2] - body[..., :2], fps)
    feats["head_speed"] = np.linalg.norm(head_vel, axis=-1) / bl
    feats["body_length_ratio"] = length / bl
    heading = np.unwrap(np.nan_to_num(np.arctan2(axis[..., 1], axis[..., 0])), axis=0)
    heading[~np.isfinite(axis).all(-1)] = np.nan
    feats["turn_rate"] = np.abs(_rate(heading, fps))
    if dim == 3:
        floor = (np.nanmin(pts[:, :, roles.paws, 2], axis=2) if roles.paws
                 else np.nanmin(pts[..., 2], axis=2))
        feats["elevation"] = (head[..., 2] - floor) / bl
    else:
        feats["elevation"] = np.full((n_f, n_m), np.nan)
    if roles.front_paws:
        d = np.linalg.norm(pts[:, :, roles.front_paws] - head[:, :, None], axis=-1)
        with np.errstate(all="ignore"):
            feats["paw_head"] = np.nanmin(np.where(np.isfinite(d), d, np.inf), axis=2) / bl
        feats["paw_head"][~np.isfinite(feats["paw_head"])] = np.nan
    else:
        feats["paw_head"] = np.full((n_f, n_m), np.nan)
    poly = arena_from_points(points) if arena is None else np.asarray(arena, dtype=float)[:, :2]
    wall = _signed_polygon_distance(head[..., :2].reshape(-1, 2), poly).reshape(n_f, n_m)
    feats["wall"] = wall / bl

    other_dist = np.full((n_f, n_m), np.nan)
    other_facing = np.full((n_f, n_m), np.nan)
    other_speed = np.full((n_f, n_m), np.nan)
    nearest = np.full((n_f, n_m), -1, dtype=int)
    head_other = np.full((n_f, n_m), np.nan)
    speed_units = feats["speed"] * bl
    for i in range(n_m):
        best = np.full(n_f, np.inf)
        for j in range(n_m):
            if j == i:
                continue
            to_other = body[:, j, :2] - body[:, i, :2]
            dist = np.linalg.norm(to_other, axis=-1)
            closer = np.isfinite(dist) & (dist < best)
            best = np.where(closer, dist, best)
            unit_axis = axis[:, i] / np.maximum(np.linalg.norm(axis[:, i], axis=-1), 1e-9)[:, None]
            unit_to = to_other / np.maximum(dist, 1e-9)[:, None]
            other_dist[closer, i] = dist[closer] / bl[i]
            other_facing[closer, i] = np.sum(unit_axis * unit_to, axis=-1)[closer]
            other_speed[closer, i] = speed_units[closer, j] / bl[i]
            nearest[closer, i] = j
            to_parts = np.linalg.norm(pts[:, j, :, :2] - head[:, i, None, :2], axis=-1)
            with np.errstate(all="ignore"):
                closest = np.nanmin(np.where(np.isfinite(to_parts), to_parts, np.inf), axis=1) / bl[i]
            closest[~np.isfinite(closest)] = np.nan
            head_other[:, i] = np.fmin(head_other[:, i], closest)
    feats["other_dist"] = other_dist
    feats["head_other"] = head_other
    feats["other_facing"] = other_facing
    feats["approach"] = -_rate(other_dist, fps)
    feats["other_speed"] = other_speed
    feats.update(_pair_features(head, body, tail, axis, vel, nearest, bl))
    if dim == 3 and roles.back:
        back_z = _nanmean_points(pts, roles.back)[..., 2]
        floor_z = (np.nanmin(pts[:, :, roles.paws, 2], axis=2) if roles.paws
                   else np.nanmin(pts[..., 2], axis=2))
        height = back_z - floor_z
        med = np.nanmedian(np.where(height > 0, height, np.nan), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            feats["back_height_ratio"] = np.where(med > 0, height / med, np.nan)
    else:
        feats["back_height_ratio"] = np.full((n_f, n_m), np.nan)
    values = np.stack([feats[n] for n in POSE_FEATURES], axis=-1)
    return FeatureSet(values, list(POSE_FEATURES), individuals, float(fps), bl, nearest)


def _pair_features(head: np.ndarray, body: np.ndarray, tail: np.ndarray, axis: np.ndarray,
                   vel: np.ndarray, nearest: np.ndarray, bl: np.ndarray) -> dict[str, np.ndarray]:
    """Features of each animal relative to its nearest other (see the module docstring).

    ``head``, ``body``, ``tail`` ``(F, M, 2|3)`` positions, ``axis`` ``(F, M, 2)`` tail-to-head
    vectors, ``vel`` ``(F, M, 2)`` body velocities (units/s), ``nearest`` ``(F, M)`` index of the
    nearest other (-1: none), ``bl`` ``(M,)`` body lengths. Returns ``(F, M)`` arrays, NaN where
    there is no other animal.
    """
    n_f, n_m = nearest.shape
    frames = np.arange(n_f)
    names = ("toward_other", "other_away", "relative_heading", "head_other_head", "head_other_rear")
    out = {name: np.full((n_f, n_m), np.nan) for name in names}
    unit_axis = axis / np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-9)
    for i in range(n_m):
        j = np.maximum(nearest[:, i], 0)
        ok = nearest[:, i] >= 0
        to_other = body[frames, j, :2] - body[:, i, :2]
        unit_to = to_other / np.maximum(np.linalg.norm(to_other, axis=-1, keepdims=True), 1e-9)
        values = {
            "toward_other": np.sum(vel[:, i] * unit_to, axis=-1) / bl[i],
            "other_away": np.sum(vel[frames, j] * unit_to, axis=-1) / bl[i],
            "relative_heading": np.sum(unit_axis[:, i] * unit_axis[frames, j], axis=-1),
            "head_other_head": np.linalg.norm(head[:, i, :2] - head[frames, j, :2], axis=-1),
            "head_other_rear": np.linalg.norm(head[:, i, :2] - tail[frames, j, :2], axis=-1),
        }
        values["head_other_head"] /= bl[i]
        values["head_other_rear"] /= bl[i]
        for name, v in values.items():
            out[name][ok, i] = v[ok]
    return out


def video_features(
    frames: Iterable[np.ndarray] | np.ndarray,
    fps: float,
    grid: int = 8,
    n_components: int = 6,
    individual: str = "mouse0",
) -> FeatureSet:
    """Features from video alone: motion energy and downsampled appearance.

    Args:
        frames: iterable over frames (e.g. an ``(F, H, W[, 3])`` uint8 array); each item is one
            image ``(H, W)`` / ``(H, W, 3)`` or a list with one such image per camera.
        fps: frames per second.
        grid: the grey image is averaged down to ``grid x grid`` cells.
        n_components: principal components of the cell image kept as ``app0..``.
        individual: name given to the single row ``M`` (the whole image).

    Returns:
        A :class:`FeatureSet` with ``(F, 1, D)`` values: ``motion`` (per camera) and ``app*``.
    """
    small = []
    for item in frames:
        cams = []
        for img in (item if isinstance(item, (list, tuple)) else [item]):
            img = np.asarray(img, dtype=np.float32)
            if img.ndim == 3:
                img = img[..., :3].mean(axis=-1)
            if img.ndim != 2:
                raise ValueError(f"a video frame must be (H, W) or (H, W, 3), got {img.shape}")
            h, w = img.shape
            hh, ww = (h // grid) * grid, (w // grid) * grid
            if hh == 0 or ww == 0:
                raise ValueError(f"frames of {h}x{w} px are smaller than the {grid}x{grid} grid")
            cells = img[:hh, :ww].reshape(grid, hh // grid, grid, ww // grid).mean(axis=(1, 3))
            cams.append(cells / 255.0)
        small.append(np.stack(cams))
    if not small:
        raise ValueError("no video frames to compute features from")
    cube = np.stack(small)  # (F, C, grid, grid)
    n_f, n_c = cube.shape[:2]
    motion = np.zeros((n_f, n_c))
    motion[1:] = np.abs(np.diff(cube, axis=0)).mean(axis=(2, 3))
    motion[0] = motion[1] if n_f > 1 else 0.0
    flat = cube.reshape(n_f, -1)
    centred = flat - flat.mean(axis=0)
    k = min(n_components, n_f, centred.shape[1])
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    comps = centred @ vt[:k].T
    names = [f"motion{c}" if n_c > 1 else "motion" for c in range(n_c)] + [f"app{i}" for i in range(k)]
    values = np.concatenate([motion, comps], axis=1)[:, None, :]
    return FeatureSet(values, names, [individual], float(fps), np.array([np.nan]))


def windowed(features: FeatureSet, window_s: float = 0.5, names: Sequence[str] | None = None) -> np.ndarray:
    """Window statistics for clustering: per frame the centred moving mean and moving standard
    deviation of each (finite somewhere) feature over ``window_s`` seconds.

    Returns:
        float64 ``(F, M, 2 * D')`` where ``D'`` counts the features kept (those in ``names`` or,
        by default, every feature finite somewhere); NaN where no frame of the window has data.
    """
    keep = [n for n in (names or features.names) if features.has(n)]
    if not keep:
        raise ValueError("no usable feature: every feature is NaN (are the poses empty?)")
    x = np.stack([features.get(n) for n in keep], axis=-1)
    size = max(1, int(round(window_s * features.fps)))
    mean = _smooth(x, size)
    sq = _smooth(x * x, size)
    std = np.sqrt(np.maximum(sq - mean * mean, 0.0))
    return np.concatenate([mean, std], axis=-1)
