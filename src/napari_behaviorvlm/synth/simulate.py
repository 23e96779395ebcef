"""Synthetic multi-camera QD mouse sessions with exact ground truth, in memory.

:func:`simulate` builds a :class:`SyntheticSession` from a :class:`SynthConfig`; its
``render(camera, frame)`` draws any camera image on demand and
:func:`~napari_behaviorvlm.synth.writer.write_synthetic_session` writes videos and truth files.

Axes: ``C`` cameras, ``F`` frames, ``M`` mice, ``K`` = 12 keypoints (skeleton order).
"""

from __future__ import annotations

import attrs
import numpy as np

from napari_behaviorvlm.core.pose import PoseTable
from napari_behaviorvlm.core.segments import Segment, SegmentTable
from napari_behaviorvlm.core.skeleton import Skeleton, default_qd_mouse_skeleton
from napari_behaviorvlm.geometry.camera import CameraGroup
from napari_behaviorvlm.synth.body import (
    DOT_OFFSET, mouse_geometry, push_out, segment_hits_ellipsoids, tail_curve,
)
from napari_behaviorvlm.synth.config import SynthConfig
from napari_behaviorvlm.synth.motion import simulate_motion
from napari_behaviorvlm.synth.rig import make_rig

__all__ = ["SyntheticSession", "bouts_from_labels", "occluded_mask", "simulate", "truth_pose_table"]

# Body part each surface dot sits on (its outward normal sets how bright it looks); paws and the
# tail beyond its base face up.
_DOT_PART = {"ear_left": 2, "ear_right": 2, "back_front": 1, "back_mid": 0, "back_rear": 0,
             "tail_base": 0}


class TruthViews:
    """The truth seen as the package's tables, shared by :class:`SyntheticSession` and
    :class:`~napari_behaviorvlm.synth.writer.SyntheticTruth` (which provide the arrays)."""

    def bouts(self) -> SegmentTable:
        """True behavior bouts (runs of equal label and target; inclusive spans, source
        ``human``), as a segment table."""
        return bouts_from_labels(self.behavior, self.target, self.individual_names)

    def pose_table(self, visible_only: bool = True) -> PoseTable:
        """The truth as a :class:`PoseTable` (see :func:`truth_pose_table`; 2D only where
        visible when ``visible_only``)."""
        return truth_pose_table(self.camera_names, self.individual_names, self.keypoint_names,
                                self.points2d, self.visible, self.points3d, visible_only)


@attrs.define(eq=False)
class SyntheticSession(TruthViews):
    """A simulated session: rig, ground truth and an on-demand renderer.

    Attributes:
        config: The settings it was made from.
        skeleton: :func:`default_qd_mouse_skeleton` (keypoint order of every ``K`` axis).
        calibration: Cameras ``cam0``..``cam{C-1}`` (anipose conventions, mm).
        individual_names: ``["mouse0", ...]``.
        points3d: float64 ``(F, M, K, 3)``, true dot positions, mm, world frame (floor z = 0).
        points2d: float64 ``(C, F, M, K, 2)``, exact distorted projections ``x, y`` px (NaN
            behind a camera); given for every dot, visible or not.
        visible: bool ``(C, F, M, K)``: ``in_image & ~occluded & ~missed`` (``occluded`` is
            ignored when ``config.occlusion`` is False).
        in_image: bool ``(C, F, M, K)``: projection inside ``[0, W-1] x [0, H-1]``.
        occluded: bool ``(C, F, M, K)``: a body ellipsoid (of any mouse) lies between the dot
            and the camera centre.
        missed: bool ``(C, F, M, K)``: the dot does not glow in that view (blinking/too dim).
        brightness: float32 ``(C, F, M, K)``: peak grey level of the dot's glow in that view.
        behavior: object ``(F, M)``: label per frame and mouse (walk, run, rear, groom, rest,
            chase, sniff).
        target: int ``(F, M)``: index of the other mouse during chase/sniff, else -1.
        ellipsoid_centers / ellipsoid_rotations / ellipsoid_axes: ``(F, M, 3, 3)``,
            ``(F, M, 3, 3, 3)``, ``(F, M, 3, 3)``: body parts (rear, front, head), mm.
        eyes3d: ``(F, M, 2, 3)`` eye positions (left, right), mm; ``eyes_visible`` ``(C, F, M, 2)``.
        tail3d: ``(F, M, 9, 3)`` points along each tail, mm.
    """

    config: SynthConfig
    skeleton: Skeleton
    calibration: CameraGroup
    individual_names: list[str]
    points3d: np.ndarray
    points2d: np.ndarray
    visible: np.ndarray
    in_image: np.ndarray
    occluded: np.ndarray
    missed: np.ndarray
    brightness: np.ndarray
    behavior: np.ndarray
    target: np.ndarray
    ellipsoid_centers: np.ndarray
    ellipsoid_rotations: np.ndarray
    ellipsoid_axes: np.ndarray
    eyes3d: np.ndarray
    eyes_visible: np.ndarray
    tail3d: np.ndarray
    _renderer: object = attrs.field(default=None, init=False, repr=False)

    @property
    def camera_names(self) -> list[str]:
        return self.calibration.names

    @property
    def keypoint_names(self) -> list[str]:
        return list(self.skeleton.keypoints)

    @property
    def n_frames(self) -> int:
        return self.config.n_frames

    def render(self, camera: int, frame: int, *, noise: bool = True, dots: bool = True,
               distractors: bool = True) -> np.ndarray:
        """Grayscale NIR-like image ``uint8 (H, W)`` of camera index ``camera`` at ``frame``.

        Deterministic for a given config. ``noise=False``, ``dots=False`` or
        ``distractors=False`` (eye shine, reflections, hot pixels) leave those out.
        """
        return self.renderer().render(int(camera), int(frame), noise=noise, dots=dots,
                                      distractors=distractors)

    def renderer(self):
        """The session's :class:`~napari_behaviorvlm.synth.render.Renderer` (created once; call
        this before rendering from several threads)."""
        if self._renderer is None:
            from napari_behaviorvlm.synth.render import Renderer

            self._renderer = Renderer(self)
        return self._renderer



def truth_pose_table(camera_names, individual_names, keypoint_names, points2d: np.ndarray,
                     visible: np.ndarray, points3d: np.ndarray, visible_only: bool = True) -> PoseTable:
    """A :class:`PoseTable` holding the ground truth: 2D labels (only where ``visible`` when
    ``visible_only``) with source NONE and NaN confidence, and every 3D point with ``n_views``
    = number of cameras that see it."""
    table = PoseTable.empty(camera_names, points2d.shape[1], individual_names, keypoint_names)
    pts = points2d.copy()
    if visible_only:
        pts[~visible] = np.nan
    table.points2d[...] = pts
    table.points3d[...] = points3d
    table.n_views[...] = np.minimum(visible.sum(axis=0), 127)
    return table


def bouts_from_labels(behavior: np.ndarray, target: np.ndarray,
                      individual_names: list[str]) -> SegmentTable:
    """Segments (inclusive frame spans, source ``human`` = ground truth) from per-frame labels
    ``behavior (F, M)`` and targets ``target (F, M)`` (-1 = none)."""
    segments = []
    n_f = behavior.shape[0]
    for m, subject in enumerate(individual_names):
        start = 0
        for f in range(1, n_f + 1):
            if f == n_f or behavior[f, m] != behavior[start, m] or target[f, m] != target[start, m]:
                tgt = int(target[start, m])
                label = str(behavior[start, m])
                other = individual_names[tgt] if tgt >= 0 else ""
                caption = f"{subject} {label}" + (f" {other}" if other else "")
                segments.append(Segment(start=start, end=f - 1, label=label, subject=subject,
                                        target=other, caption=caption, source="human"))
                start = f
    return SegmentTable(segments)


def simulate(config: SynthConfig | None = None) -> SyntheticSession:
    """Simulate a session (no files written): rig, motion, visibility, brightness.

    Cost is small (well under a second for 6 cameras x 500 frames); images are rendered on
    demand by :meth:`SyntheticSession.render`.
    """
    config = SynthConfig() if config is None else config
    seeds = np.random.SeedSequence(config.seed).spawn(4)
    rig_rng, motion_rng, dot_rng, miss_rng = (np.random.default_rng(s) for s in seeds)
    skeleton = default_qd_mouse_skeleton()
    calibration = make_rig(config.n_cameras, config.width, config.height, config.arena_size, rig_rng)
    motion = simulate_motion(config, motion_rng)

    geoms = []
    for posture, scale in zip(motion["postures"], motion["scales"]):
        jitter = dot_rng.normal(0.0, 0.06, (skeleton.n_keypoints, 3))
        geoms.append(mouse_geometry(posture, scale, jitter))

    def stack(key: str) -> np.ndarray:
        return np.stack([g[key] for g in geoms], axis=1)

    points3d = stack("keypoints")  # (F, M, K, 3)
    centers, rotations, axes = stack("centers"), stack("rotations"), stack("axes")
    eyes3d, tail3d = stack("eyes"), stack("tail_curve")
    n_f, n_m, n_k = points3d.shape[:3]
    for m in range(n_m):  # a tail or paw under the other mouse is pushed out of its body
        others = [o for o in range(n_m) if o != m]
        if others:
            points3d[:, m] = push_out(points3d[:, m], centers[:, others].reshape(n_f, -1, 3),
                                      rotations[:, others].reshape(n_f, -1, 3, 3),
                                      axes[:, others].reshape(n_f, -1, 3), margin=DOT_OFFSET)
            tail3d[:, m] = tail_curve(points3d[:, m])
    n_c = len(calibration)

    points2d = calibration.project(points3d)  # (C, F, M, K, 2)
    w, h = config.width, config.height

    def inside(xy: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return ((xy[..., 0] >= 0) & (xy[..., 0] <= w - 1)
                    & (xy[..., 1] >= 0) & (xy[..., 1] <= h - 1))

    in_image = inside(points2d)
    occluded = occluded_mask(calibration, points3d, centers, rotations, axes)
    eyes_hidden = occluded_mask(calibration, eyes3d, centers, rotations, axes)
    eyes_visible = inside(calibration.project(eyes3d)) & ~eyes_hidden

    missed = _dropouts(miss_rng, (n_c, n_f, n_m, n_k), config.dropout_rate, config.dropout_run)
    visible = in_image & ~missed
    if config.occlusion:
        visible &= ~occluded
    brightness = _brightness(config, dot_rng, calibration, skeleton, points3d, centers,
                             rotations, axes)
    return SyntheticSession(
        config=config, skeleton=skeleton, calibration=calibration,
        individual_names=[f"mouse{i}" for i in range(n_m)],
        points3d=points3d, points2d=points2d, visible=visible, in_image=in_image,
        occluded=occluded, missed=missed, brightness=brightness,
        behavior=motion["behavior"], target=motion["target"],
        ellipsoid_centers=centers, ellipsoid_rotations=rotations, ellipsoid_axes=axes,
        eyes3d=eyes3d, eyes_visible=eyes_visible, tail3d=tail3d,
    )


def occluded_mask(calibration: CameraGroup, points: np.ndarray, centers: np.ndarray,
                  rotations: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Bool ``(C, F, M, N)``: point ``points[f, m, n]`` (mm) is hidden from camera ``c`` by a
    body ellipsoid of any mouse (``centers (F, M, P, 3)``, ``rotations (F, M, P, 3, 3)``,
    ``axes (F, M, P, 3)``) lying on the segment between the camera centre and the point."""
    n_f, n_m, n_p = centers.shape[:3]
    flat = points.reshape(n_f, -1, 3)
    args = (centers.reshape(n_f, n_m * n_p, 3), rotations.reshape(n_f, n_m * n_p, 3, 3),
            axes.reshape(n_f, n_m * n_p, 3))
    hidden = np.stack([segment_hits_ellipsoids(cam.center, flat, *args) for cam in calibration])
    return hidden.reshape((len(calibration),) + points.shape[:-1])


def _dropouts(rng: np.random.Generator, shape: tuple[int, ...], rate: float,
              mean_run: float) -> np.ndarray:
    """Bool ``shape`` (C, F, M, K): a two-state Markov chain along frames with stationary miss
    probability ``rate`` and mean miss-run length ``mean_run`` frames."""
    out = np.zeros(shape, dtype=bool)
    if rate <= 0:
        return out
    stay = 1.0 - 1.0 / max(mean_run, 1.0)
    enter = min(1.0, rate * (1.0 - stay) / (1.0 - rate))
    u = rng.random(shape)
    state = u[:, 0] < rate
    out[:, 0] = state
    for f in range(1, shape[1]):
        state = np.where(state, u[:, f] < stay, u[:, f] < enter)
        out[:, f] = state
    return out


def _brightness(config: SynthConfig, rng: np.random.Generator, calibration: CameraGroup,
                skeleton: Skeleton, points3d: np.ndarray, centers: np.ndarray,
                rotations: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """Peak grey level ``(C, F, M, K)`` of each dot's glow: a per-dot base brightness, a slow
    flicker, and a view factor (a dot seen edge-on is dimmer)."""
    n_f, n_m, n_k, _ = points3d.shape
    lo, hi = config.brightness_range
    base = rng.uniform(lo, hi, (n_m, n_k))
    t = np.arange(n_f)[:, None, None] / config.fps
    freq = rng.uniform(0.2, 1.0, (n_m, n_k))
    phase = rng.uniform(0, 2 * np.pi, (n_m, n_k))
    flicker = 1.0 + 0.12 * np.sin(2 * np.pi * freq * t + phase)  # (F, M, K)
    normals = np.zeros_like(points3d)
    normals[..., 2] = 1.0
    for name, part in _DOT_PART.items():
        k = skeleton.index(name)
        rel = points3d[:, :, k] - centers[:, :, part]
        local = np.einsum("fmj,fmji->fmi", rel, rotations[:, :, part]) / axes[:, :, part] ** 2
        n = np.einsum("fmij,fmj->fmi", rotations[:, :, part], local)
        normals[:, :, k] = n / np.linalg.norm(n, axis=-1, keepdims=True)
    out = np.empty((len(calibration), n_f, n_m, n_k), dtype=np.float32)
    for c, cam in enumerate(calibration):
        view = cam.center - points3d
        view /= np.linalg.norm(view, axis=-1, keepdims=True)
        facing = np.clip((normals * view).sum(-1), 0.0, 1.0)
        out[c] = config.dot_peak * base * flicker * (0.5 + 0.5 * facing)
    return out
