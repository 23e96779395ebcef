"""The articulated synthetic mouse: a chain of 3 ellipsoids (rear body, front body, head), a tail
curve, and the 12 quantum-dot (QD) keypoints of :func:`default_qd_mouse_skeleton` on them.

World frame (mm): the arena floor is ``z = 0``, ``z`` points up. A mouse's *posture* is a set of
per-frame parameters (arrays of shape ``(F,)``); :func:`mouse_geometry` turns them into
ellipsoids ``(F, 3, ...)``, keypoints ``(F, 12, 3)`` and eye positions ``(F, 2, 3)``.

An ellipsoid is ``(center (3,), rotation (3, 3), axes (3,))``: the columns of ``rotation`` are
its local axes in world coordinates and ``axes`` its semi-axes in mm; a point ``p`` is inside
when ``|R^T (p - center) / axes| < 1``.

Every QD dot sits ``DOT_OFFSET`` mm outside the body surface, so a dot is never inside its own
body and occlusion by the body is a clean ray test (:func:`segment_hits_ellipsoids`).
"""

from __future__ import annotations

import attrs
import numpy as np

__all__ = [
    "BODY_PARTS", "DOT_OFFSET", "PART_AXES", "Posture", "body_ellipsoids", "inside_ellipsoids",
    "mouse_geometry", "push_out", "segment_hits_ellipsoids", "sphere_cover", "tail_curve",
]

BODY_PARTS = ("rear", "front", "head")
DOT_OFFSET = 1.0  # mm between a dot and the body surface under it

# Semi-axes (along spine, lateral, dorso-ventral) in mm for a mouse of scale 1.
PART_AXES = {"rear": (24.0, 16.0, 13.5), "front": (19.0, 13.0, 12.0), "head": (15.0, 9.5, 9.0)}
_FRONT_ALONG = 26.0  # front-body centre along the spine from the rear-body centre, mm
_NECK_ALONG = 40.0  # neck pivot along the spine, mm
_HEAD_FROM_NECK = 12.0  # head centre from the neck pivot, mm
_HIP_HEIGHT = 15.0  # rear-body centre height when standing, mm
_TAIL_SEGMENT = 38.0  # tail_base->tail_mid and tail_mid->tail_tip, mm
_PAW_HEIGHT = 2.0  # QD on the back of a paw on the floor, mm
_CLEARANCE = 1.0  # lowest body point above the floor, mm


@attrs.define
class Posture:
    """Per-frame posture parameters of one mouse; every array has shape ``(F,)``.

    Attributes:
        x, y: Position of the rear-body centre over the floor, mm.
        heading: Body direction in the floor plane, radians (0 = +x, counter-clockwise).
        pitch: Spine elevation, radians (0 horizontal; ~1 when rearing).
        head_yaw, head_pitch: Head turn relative to the spine, radians.
        crouch: 0 standing .. 1 resting flat.
        groom: 0 .. 1 blend of the front paws towards the face.
        gait_phase: Stepping phase, radians; ``stride`` the step amplitude, mm.
        groom_phase: Phase of the paw strokes while grooming, radians.
        tail_phase: Phase of the tail sway, radians; ``tail_sway`` its amplitude, radians.
    """

    x: np.ndarray
    y: np.ndarray
    heading: np.ndarray
    pitch: np.ndarray
    head_yaw: np.ndarray
    head_pitch: np.ndarray
    crouch: np.ndarray
    groom: np.ndarray
    gait_phase: np.ndarray
    stride: np.ndarray
    groom_phase: np.ndarray
    tail_phase: np.ndarray
    tail_sway: np.ndarray

    @classmethod
    def stack(cls, frames: list[dict[str, float]]) -> Posture:
        """Build from one dict of scalar parameters per frame."""
        names = [f.name for f in attrs.fields(cls)]
        return cls(**{n: np.array([fr[n] for fr in frames], dtype=np.float64) for n in names})


def _rot_z(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros(np.shape(angle) + (3, 3))
    out[..., 0, 0], out[..., 0, 1] = c, -s
    out[..., 1, 0], out[..., 1, 1] = s, c
    out[..., 2, 2] = 1.0
    return out


def _frame_from_dir(direction: np.ndarray, lateral_hint: np.ndarray) -> np.ndarray:
    """Rotation ``(..., 3, 3)`` whose columns are ``direction``, a lateral axis, and their cross."""
    d = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
    lat = lateral_hint - (lateral_hint * d).sum(-1, keepdims=True) * d
    lat /= np.linalg.norm(lat, axis=-1, keepdims=True)
    up = np.cross(d, lat)
    return np.stack([d, lat, up], axis=-1)


def _surface_dot(center, rot, axes, local_dir, offset=DOT_OFFSET):
    """Point ``offset`` mm outside the ellipsoid surface in local direction ``local_dir`` (3,).

    ``center`` (F, 3), ``rot`` (F, 3, 3), ``axes`` (F, 3) -> (F, 3).
    """
    d = np.asarray(local_dir, dtype=np.float64)
    d = d / np.linalg.norm(d)
    local = d / np.linalg.norm(d / axes, axis=-1, keepdims=True)
    normal_local = local / axes**2
    normal_local /= np.linalg.norm(normal_local, axis=-1, keepdims=True)
    surface = center + np.einsum("fij,fj->fi", rot, local)
    normal = np.einsum("fij,fj->fi", rot, normal_local)
    return surface + offset * normal


def _body_frame(p: Posture, s: float) -> dict[str, np.ndarray]:
    """Ellipsoids in the body frame (x forward, y left, z up; origin on the floor under the
    rear-body centre), lifted so the lowest point clears the floor, plus the axes used to
    place dots. Arrays have a leading frame axis ``F``."""
    n = p.x.shape[0]
    crouch = np.clip(p.crouch, 0.0, 1.0)
    vert = 1.0 - 0.15 * crouch  # resting mice flatten
    axes = {
        part: np.stack([np.full(n, a * s), np.full(n, b * s), c * s * vert], axis=-1)
        for part, (a, b, c) in PART_AXES.items()
    }
    cp, sp = np.cos(p.pitch), np.sin(p.pitch)
    spine = np.stack([cp, np.zeros(n), sp], axis=-1)
    lateral = np.tile([0.0, 1.0, 0.0], (n, 1))
    body_rot = _frame_from_dir(spine, lateral)
    hip = np.stack([np.zeros(n), np.zeros(n), (_HIP_HEIGHT - 2.5 * crouch) * s], axis=-1)
    front_c = hip + spine * _FRONT_ALONG * s
    neck = hip + spine * _NECK_ALONG * s
    hp = p.pitch + p.head_pitch
    head_dir = np.stack(
        [np.cos(hp) * np.cos(p.head_yaw), np.cos(hp) * np.sin(p.head_yaw), np.sin(hp)], axis=-1
    )
    head_lat = np.stack([-np.sin(p.head_yaw), np.cos(p.head_yaw), np.zeros(n)], axis=-1)
    head_rot = _frame_from_dir(head_dir, head_lat)
    head_c = neck + head_dir * _HEAD_FROM_NECK * s

    centers_b = np.stack([hip, front_c, head_c], axis=1)  # (F, 3, 3)
    rots_b = np.stack([body_rot, body_rot, head_rot], axis=1)  # (F, 3, 3, 3)
    axes_all = np.stack([axes["rear"], axes["front"], axes["head"]], axis=1)  # (F, 3, 3)

    # Lift the whole body so its lowest point clears the floor (a pitched-up body sits on its rear).
    extent_z = np.sqrt(((rots_b[..., 2, :] * axes_all) ** 2).sum(-1))  # (F, 3)
    lowest = (centers_b[..., 2] - extent_z).min(axis=1)
    lift = np.maximum(0.0, _CLEARANCE - lowest)
    centers_b = centers_b.copy()
    centers_b[..., 2] += lift[:, None]

    return {
        "centers": centers_b, "rotations": rots_b, "axes": axes_all, "spine": spine,
        "lateral": lateral, "body_rot": body_rot, "head_dir": head_dir, "head_rot": head_rot,
    }


def _to_world(points: np.ndarray, p: Posture) -> np.ndarray:
    """Body-frame points ``(F, ..., 3)`` -> world, by the heading and floor position."""
    n = p.x.shape[0]
    rz = _rot_z(p.heading)
    shift = np.stack([p.x, p.y, np.zeros(n)], axis=-1)
    shift = shift.reshape((n,) + (1,) * (points.ndim - 2) + (3,))
    return np.einsum("fij,f...j->f...i", rz, points) + shift


def body_ellipsoids(posture: Posture, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World ellipsoids of one mouse: ``centers (F, 3, 3)``, ``rotations (F, 3, 3, 3)``,
    ``axes (F, 3, 3)`` for the parts :data:`BODY_PARTS` (mm)."""
    b = _body_frame(posture, float(scale))
    rotations = np.einsum("fij,fejk->feik", _rot_z(posture.heading), b["rotations"])
    return _to_world(b["centers"], posture), rotations, b["axes"]


def mouse_geometry(posture: Posture, scale: float = 1.0,
                   dot_jitter: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Ellipsoids, QD keypoints and eyes of one mouse for every frame.

    Args:
        posture: Per-frame parameters ``(F,)``.
        scale: Body size factor (1 = a ~90 mm adult mouse without tail).
        dot_jitter: ``(12, 3)`` small per-animal offsets of the dot directions (injection sites
            are never perfectly symmetric); zeros when None.

    Returns:
        ``centers`` (F, 3, 3), ``rotations`` (F, 3, 3, 3), ``axes`` (F, 3, 3) for the parts
        :data:`BODY_PARTS`; ``keypoints`` (F, 12, 3) in skeleton order; ``eyes`` (F, 2, 3)
        (left, right); ``tail_curve`` (F, 9, 3) points along the tail from its base to its tip.
        All in mm, world frame.
    """
    p = posture
    n = p.x.shape[0]
    jitter = np.zeros((12, 3)) if dot_jitter is None else np.asarray(dot_jitter)
    s = float(scale)
    b = _body_frame(p, s)
    centers_b, rots_b, axes_all = b["centers"], b["rotations"], b["axes"]
    front_c, head_c = centers_b[:, 1], centers_b[:, 2]
    spine, lateral, body_rot = b["spine"], b["lateral"], b["body_rot"]
    head_dir, head_rot = b["head_dir"], b["head_rot"]
    crouch = np.clip(p.crouch, 0.0, 1.0)

    def dot(part: int, direction, k: int | None, offset=DOT_OFFSET):
        shift = 0.0 if k is None else jitter[k]
        return _surface_dot(centers_b[:, part], rots_b[:, part], axes_all[:, part],
                            np.asarray(direction) + shift, offset)
    kp = np.zeros((n, 12, 3))
    kp[:, 0] = dot(2, (-0.25, 0.75, 0.62), 0)  # ear_left
    kp[:, 1] = dot(2, (-0.25, -0.75, 0.62), 1)  # ear_right
    kp[:, 2] = dot(1, (0.1, 0.0, 1.0), 2)  # back_front
    kp[:, 3] = dot(0, (0.45, 0.0, 1.0), 3)  # back_mid
    kp[:, 4] = dot(0, (-0.5, 0.0, 1.0), 4)  # back_rear
    kp[:, 9] = dot(0, (-1.0, 0.0, 0.08), 9)  # tail_base
    eyes = np.stack([dot(2, (0.6, 0.55, 0.3), None, 0.3), dot(2, (0.6, -0.55, 0.3), None, 0.3)],
                    axis=1)

    # Paws (body frame). Trot: diagonal pairs step together.
    stride = p.stride[:, None]
    offsets = np.array([0.0, np.pi, np.pi, 0.0])  # FL, FR, HL, HR
    phase = p.gait_phase[:, None] + offsets
    lat_scale = 1.0 - 0.25 * crouch[:, None]
    base_x = np.array([30.0, 30.0, -6.0, -6.0]) * s
    base_y = np.array([13.0, -13.0, 17.0, -17.0]) * s
    paw_x = base_x - 4.0 * s * crouch[:, None] * np.sign(base_x) + stride * np.sin(phase)
    paw_y = base_y * lat_scale
    swing = np.maximum(0.0, np.cos(phase)) * np.minimum(1.0, stride / 6.0) * 5.0 * s
    paw_z = _PAW_HEIGHT + swing
    floor_paws = np.stack([paw_x, paw_y, paw_z], axis=-1)  # (F, 4, 3)
    # Rearing: hind paws step forward under the hips; front paws are held before the chest.
    lift_f = np.clip(p.pitch / 0.6, 0.0, 1.0)[:, None, None]
    floor_paws[:, 2:, 0] += 14.0 * s * lift_f[:, :, 0]
    ventral = -body_rot[..., 2]  # (F, 3)
    sides = np.array([1.0, -1.0])
    chest = (front_c[:, None, :] + spine[:, None, :] * 6.0 * s + ventral[:, None, :] * 12.0 * s
             + lateral[:, None, :] * (sides[None, :, None] * 6.0 * s))
    front = (1.0 - lift_f) * floor_paws[:, :2] + lift_f * chest
    # Grooming: front paws at the face, stroking in small circles.
    g = np.clip(p.groom, 0.0, 1.0)[:, None, None]
    head_lat_vec, head_up = head_rot[..., 1], head_rot[..., 2]
    stroke = (np.cos(p.groom_phase)[:, None] * head_dir + np.sin(p.groom_phase)[:, None] * head_up)
    face = (head_c[:, None, :] + head_dir[:, None, :] * 9.0 * s - head_up[:, None, :] * 7.0 * s
            + head_lat_vec[:, None, :] * (sides[None, :, None] * 5.5 * s)
            + stroke[:, None, :] * 3.0 * s)
    front = (1.0 - g) * front + g * face
    kp[:, 5:7] = front
    kp[:, 7:9] = floor_paws[:, 2:]

    # Tail: lies on the floor behind the body, swaying.
    base = kp[:, 9]
    a1 = np.pi + p.tail_sway * np.sin(p.tail_phase)
    a2 = a1 + 1.3 * p.tail_sway * np.sin(p.tail_phase - 1.2)
    seg = _TAIL_SEGMENT * s
    mid = np.stack([base[:, 0] + seg * np.cos(a1), base[:, 1] + seg * np.sin(a1),
                    np.maximum(2.0, 0.3 * base[:, 2])], axis=-1)
    tip = np.stack([mid[:, 0] + seg * np.cos(a2), mid[:, 1] + seg * np.sin(a2),
                    np.full(n, 1.5)], axis=-1)
    kp[:, 10], kp[:, 11] = mid, tip

    # Body frame -> world.
    centers = _to_world(centers_b, p)
    rotations = np.einsum("fij,fejk->feik", _rot_z(p.heading), rots_b)
    keypoints = _to_world(kp, p)
    eyes = _to_world(eyes, p)
    # Paws and tail were placed freely: push any that ended inside the body back out.
    keypoints = push_out(keypoints, centers, rotations, axes_all, margin=DOT_OFFSET)
    return {
        "centers": centers, "rotations": rotations, "axes": axes_all,
        "keypoints": keypoints, "eyes": eyes, "tail_curve": tail_curve(keypoints),
    }


def tail_curve(keypoints: np.ndarray) -> np.ndarray:
    """Points ``(F, 9, 3)`` along the tail (tail_base -> tail_mid -> tail_tip, straight
    pieces) from keypoints ``(F, 12, 3)`` in skeleton order."""
    t = np.linspace(0.0, 1.0, 5)[:, None]
    return np.concatenate([
        keypoints[:, None, 9] * (1 - t) + keypoints[:, None, 10] * t,
        keypoints[:, None, 10] * (1 - t[1:]) + keypoints[:, None, 11] * t[1:],
    ], axis=1)


def _to_unit(points: np.ndarray, centers: np.ndarray, rotations: np.ndarray,
             axes: np.ndarray) -> np.ndarray:
    """Points (F, N, 3) in the unit-sphere frames of ellipsoids (F, E, ...) -> (F, N, E, 3)."""
    rel = points[:, :, None, :] - centers[:, None, :, :]
    return np.einsum("fnej,feji->fnei", rel, rotations) / axes[:, None, :, :]


def inside_ellipsoids(points: np.ndarray, centers: np.ndarray, rotations: np.ndarray,
                      axes: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Bool ``(F, N)``: point ``(F, N, 3)`` lies inside (or within ``margin`` mm of) any
    ellipsoid ``centers (F, E, 3)``, ``rotations (F, E, 3, 3)``, ``axes (F, E, 3)``."""
    unit = _to_unit(points, centers, rotations, axes + margin)
    return ((unit**2).sum(-1) < 1.0).any(axis=-1)


def push_out(points: np.ndarray, centers: np.ndarray, rotations: np.ndarray, axes: np.ndarray,
             margin: float, passes: int = 3) -> np.ndarray:
    """Move points ``(F, N, 3)`` that are inside an ellipsoid grown by ``margin`` mm radially out
    to its surface (in the ellipsoid's unit-sphere frame). Points outside are unchanged."""
    out = points.copy()
    grown = axes + margin
    for _ in range(passes):
        moved = False
        for e in range(centers.shape[1]):
            c, r, a = centers[:, e], rotations[:, e], grown[:, e]
            local = np.einsum("fnj,fji->fni", out - c[:, None], r) / a[:, None]
            radius = np.linalg.norm(local, axis=-1)
            bad = radius < 1.0
            if not bad.any():
                continue
            moved = True
            safe = np.where(radius > 1e-9, radius, 1.0)
            fixed = local / safe[..., None] * 1.0001
            fixed[radius <= 1e-9] = (0.0, 0.0, 1.0001)
            world = np.einsum("fij,fnj->fni", r, fixed * a[:, None]) + c[:, None]
            out = np.where(bad[..., None], world, out)
        if not moved:
            break
    return out


def segment_hits_ellipsoids(origin: np.ndarray, targets: np.ndarray, centers: np.ndarray,
                            rotations: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Bool ``(F, N)``: the segment from ``origin`` (3,) (a camera centre) to each target
    ``(F, N, 3)`` passes through any ellipsoid ``(F, E, ...)`` before reaching the target.

    Solves ``|o' + t d'|^2 = 1`` in each ellipsoid's unit-sphere frame; the target is hidden
    when an intersection interval overlaps ``0 < t < 1``.
    """
    o = _to_unit(np.broadcast_to(origin, targets.shape[:1] + (1, 3)), centers, rotations, axes)
    d = _to_unit(targets, centers, rotations, axes) - o  # (F, N, E, 3)
    a = (d**2).sum(-1)
    b = (o * d).sum(-1)
    c = (o**2).sum(-1) - 1.0
    disc = b**2 - a * c
    root = np.sqrt(np.maximum(disc, 0.0))
    t1 = (-b - root) / a
    t2 = (-b + root) / a
    hit = (disc > 0) & (t2 > 0.0) & (t1 < 1.0 - 1e-9)
    return hit.any(axis=-1)


def sphere_cover(axes: np.ndarray, n_spheres: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Spheres along the long axis that together contain an ellipsoid with semi-axes (3,).

    Centres are spread between the two tips' centres of curvature; each sphere's radius reaches
    the farthest surface point of its share of the long axis. The union overshoots the
    ellipsoid by < 0.2 mm at the sides and 3-4 mm at the tips (mouse-sized ellipsoids).

    Returns ``(offsets (n,), radii (n,))``: sphere centres at ``offsets`` mm along the local x
    axis. Used to keep two mice from interpenetrating cheaply.
    """
    a, b, c = (float(v) for v in axes)
    width = max(b, c)
    tip = min(a, width**2 / a)
    offsets = np.linspace(-a + tip, a - tip, n_spheres)
    x = np.linspace(-a, a, 2001)
    extent = width * np.sqrt(np.clip(1.0 - (x / a) ** 2, 0.0, None))
    owner = np.argmin(np.abs(x[:, None] - offsets[None, :]), axis=1)
    radii = np.array([
        np.sqrt((x[owner == i] - offsets[i]) ** 2 + extent[owner == i] ** 2).max()
        for i in range(n_spheres)
    ])
    return offsets, radii
