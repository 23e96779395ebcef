"""Labeling operations behind the napari widgets, callable from a script (no Qt, no napari).

- :func:`points_layer_data`: one camera's labels as napari Points ``data`` (``[frame, y, x]``)
  and a features table (keypoint, individual, confidence, source, reprojection_error, flagged,
  reasons).
- :func:`apply_human_label`: a click or a drag in the viewer: the label becomes human (confidence
  1, source HUMAN, or SEED in a seed frame), and the frame's 3D points, reprojection errors and
  flags are recomputed.
- :func:`reprojection_hints`: where a keypoint seen in >= 2 cameras should appear in the others.
- :func:`next_keypoint_to_label`: DeepLabCut-style "one keypoint after another" cursor.
- :func:`mark_seed_frame` / :func:`unmark_seed_frame`, :func:`skeleton_vectors`,
  :func:`remap_skeleton`, and the persisted viewer settings (:class:`ViewerSettings`).

Files and the pose table use ``x, y``; napari uses ``[frame, y, x]``: conversions happen here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
import pandas as pd

from napari_behaviorvlm.core.pose import PoseTable, Source, flag_reasons
from napari_behaviorvlm.core.project import Project
from napari_behaviorvlm.core.skeleton import Skeleton

__all__ = [
    "PointsLayerData",
    "SOURCE_NAMES",
    "ViewerSettings",
    "apply_human_label",
    "clear_label",
    "confidence_colors",
    "keypoint_colors",
    "hints_layer_data",
    "mark_seed_frame",
    "next_keypoint_to_label",
    "points_layer_data",
    "remap_skeleton",
    "reprojection_hints",
    "seed_frames",
    "skeleton_from_text",
    "skeleton_text",
    "skeleton_vectors",
    "update_frame_geometry",
]

SOURCE_NAMES: dict[int, str] = {int(s): s.name.lower() for s in Source}
SETTINGS_KEY = "napari"


@attrs.define(eq=False)
class PointsLayerData:
    """One camera's labels in napari form.

    Attributes:
        data: float ``(N, 3)``: ``[frame, y, x]`` (px).
        features: ``N`` rows: keypoint (categorical, skeleton order), individual (categorical),
            confidence (0..1), source (none/seed/human/model), reprojection_error (px, NaN if
            none), flagged (bool), reasons (``"; "``-joined flag reasons, ``""`` if none).
        index: int ``(N, 3)``: ``(frame, individual, keypoint)`` indices into the pose table.
    """

    data: np.ndarray
    features: pd.DataFrame
    index: np.ndarray


def points_layer_data(poses: PoseTable, camera: str | int) -> PointsLayerData:
    """Every labeled point of ``camera`` (all frames, individuals, keypoints), in napari form."""
    c = poses.camera_index(camera)
    labeled = poses.labeled_mask()[c]  # (F, M, K)
    f, m, k = np.nonzero(labeled)
    xy = poses.points2d[c, f, m, k]
    data = np.column_stack([f.astype(np.float64), xy[:, 1], xy[:, 0]]) if len(f) else np.zeros((0, 3))
    flags = poses.flags[c, f, m, k]
    features = pd.DataFrame({
        "keypoint": pd.Categorical.from_codes(k, categories=poses.keypoint_names),
        "individual": pd.Categorical.from_codes(m, categories=poses.individual_names),
        "confidence": poses.confidence[c, f, m, k].astype(np.float64),
        "source": pd.Categorical([SOURCE_NAMES[int(s)] for s in poses.source[c, f, m, k]],
                                 categories=list(SOURCE_NAMES.values())),
        "reprojection_error": poses.reproj_error[c, f, m, k].astype(np.float64),
        "flagged": flags != 0,
        "reasons": pd.Series(["; ".join(flag_reasons(int(b))) for b in flags], dtype=object),
    })
    return PointsLayerData(data=data, features=features, index=np.column_stack([f, m, k]))


def seed_frames(project: Project) -> list[int]:
    """Seed frames: those marked by the user (persisted in settings) plus any holding a seed label."""
    marked = project.settings.get(SETTINGS_KEY, {}).get("seed_frames", [])
    return sorted({int(x) for x in marked} | set(project.poses.seed_frames()))


def mark_seed_frame(project: Project, frame: int) -> int:
    """Make ``frame`` a seed frame: its human labels become SEED labels (and so do later clicks).

    Returns:
        The number of labels converted to SEED.
    """
    _check_frame(project, frame)
    poses = project.poses
    human = poses.source[:, frame] == int(Source.HUMAN)
    poses.source[:, frame][human] = int(Source.SEED)
    settings = project.settings.setdefault(SETTINGS_KEY, {})
    settings["seed_frames"] = sorted({int(x) for x in settings.get("seed_frames", [])} | {frame})
    return int(human.sum())


def unmark_seed_frame(project: Project, frame: int) -> int:
    """Undo :func:`mark_seed_frame`: the frame's SEED labels become HUMAN labels (kept)."""
    _check_frame(project, frame)
    poses = project.poses
    seed = poses.source[:, frame] == int(Source.SEED)
    poses.source[:, frame][seed] = int(Source.HUMAN)
    settings = project.settings.setdefault(SETTINGS_KEY, {})
    settings["seed_frames"] = [x for x in settings.get("seed_frames", []) if int(x) != frame]
    return int(seed.sum())


def _check_frame(project: Project, frame: int) -> None:
    if not 0 <= int(frame) < project.poses.n_frames:
        raise ValueError(f"frame {frame} is outside the session (0..{project.poses.n_frames - 1})")


def update_frame_geometry(project: Project, frame: int) -> None:
    """Recompute 3D points, reprojection errors and flags of ``frame`` after an edit.

    Uses the pose pipeline's ``retriangulate_frame`` (the same rules as a run). Without a
    calibration there is no 3D: nothing to do.
    """
    if project.session.calibration is None:
        return
    from napari_behaviorvlm.pose.pipeline import retriangulate_frame

    retriangulate_frame(project, int(frame))


def apply_human_label(
    project: Project,
    camera: str | int,
    frame: int,
    individual: str | int,
    keypoint: str | int,
    xy: Sequence[float],
) -> None:
    """Store a label the user clicked or dragged: full confidence, source HUMAN (SEED in a seed
    frame), never overwritten by a model run; then update the frame's 3D and reprojections.

    Args:
        xy: ``(x, y)`` in px of that camera's image.
    """
    _check_frame(project, frame)
    source = Source.SEED if int(frame) in seed_frames(project) else Source.HUMAN
    project.poses.set_label(camera, int(frame), individual, keypoint, xy, source=source)
    update_frame_geometry(project, frame)


def clear_label(project: Project, camera: str | int, frame: int, individual: str | int,
                keypoint: str | int) -> None:
    """Delete one label (the user removed the point) and update the frame's geometry."""
    _check_frame(project, frame)
    project.poses.set_label(camera, int(frame), individual, keypoint, None)
    update_frame_geometry(project, frame)


def reprojection_hints(project: Project, frames: Sequence[int] | None = None,
                       min_views: int = 2) -> np.ndarray:
    """Where each keypoint should appear in the cameras that lack it, from the others' labels.

    A keypoint labeled in at least ``min_views`` cameras of a frame is triangulated from those
    labels (all frames at once) and projected into every camera where it is not labeled.

    Args:
        frames: Session frames (all when None).

    Returns:
        float ``(C, len(frames), M, K, 2)`` ``x, y`` px; NaN where there is no hint (label
        present, too few views, no calibration, or behind the camera).
    """
    from napari_behaviorvlm.geometry.triangulation import triangulate

    poses = project.poses
    sel = np.arange(poses.n_frames) if frames is None else np.asarray(list(frames), dtype=int)
    for f in sel[(sel < 0) | (sel >= poses.n_frames)][:1]:
        _check_frame(project, int(f))
    pts = poses.points2d[:, sel]  # (C, F', M, K, 2)
    out = np.full(pts.shape, np.nan)
    group = project.session.calibration
    if group is None:
        return out
    group = group.subset(poses.camera_names)
    labeled = np.isfinite(pts[..., 0])
    enough = labeled.sum(axis=0) >= min_views  # (F', M, K)
    if not enough.any():
        return out
    xyz = triangulate(pts[:, enough][:, :, None, :], group)[:, 0]  # (N, 3)
    projected = group.project(xyz)  # (C, N, 2)
    hint = np.full(pts.shape, np.nan)
    hint[:, enough] = projected
    show = enough[None] & ~labeled
    out[show] = hint[show]
    return out


def hints_layer_data(poses: PoseTable, hints: np.ndarray, camera: str | int,
                     frames: Sequence[int] | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """One camera's hints (from :func:`reprojection_hints` over ``frames``, all when None) as
    ``[frame, y, x]`` data and features (keypoint, individual)."""
    c = poses.camera_index(camera)
    sel = np.arange(poses.n_frames) if frames is None else np.asarray(list(frames), dtype=int)
    f, m, k = np.nonzero(np.isfinite(hints[c, ..., 0]))
    xy = hints[c, f, m, k]
    data = (np.column_stack([sel[f].astype(np.float64), xy[:, 1], xy[:, 0]]) if len(f)
            else np.zeros((0, 3)))
    features = pd.DataFrame({
        "keypoint": pd.Categorical.from_codes(k, categories=poses.keypoint_names),
        "individual": pd.Categorical.from_codes(m, categories=poses.individual_names),
    })
    return data, features


def next_keypoint_to_label(poses: PoseTable, camera: str | int, frame: int,
                           individual: str | int, current: str | int | None = None) -> int | None:
    """The next keypoint (after ``current``, wrapping) not yet labeled in this camera and frame,
    as DeepLabCut's labeling GUI moves on after each click; None when all are labeled."""
    c = poses.camera_index(camera)
    m = poses.individual_index(individual)
    start = -1 if current is None else poses.keypoint_index(current)
    missing = np.isnan(poses.points2d[c, frame, m, :, 0])
    for step in range(1, poses.n_keypoints + 1):
        k = (start + step) % poses.n_keypoints
        if missing[k]:
            return k
    return None


def skeleton_vectors(poses: PoseTable, skeleton: Skeleton, camera: str | int) -> np.ndarray:
    """Skeleton edges of every frame and individual as napari Vectors data.

    Returns:
        float ``(N, 2, 3)``: per edge the start ``[frame, y, x]`` and the displacement
        ``[0, dy, dx]`` (px); only edges whose two ends are labeled.
    """
    c = poses.camera_index(camera)
    edges = np.asarray(skeleton.edge_indices(), dtype=int).reshape(-1, 2)
    if not len(edges):
        return np.zeros((0, 2, 3))
    a = poses.points2d[c][:, :, edges[:, 0]]  # (F, M, E, 2)
    b = poses.points2d[c][:, :, edges[:, 1]]
    ok = np.isfinite(a[..., 0]) & np.isfinite(b[..., 0])
    f, _, _ = np.nonzero(ok)
    a, b = a[ok], b[ok]
    start = np.column_stack([f.astype(float), a[:, 1], a[:, 0]])
    delta = np.column_stack([np.zeros(len(f)), b[:, 1] - a[:, 1], b[:, 0] - a[:, 0]])
    return np.stack([start, delta], axis=1) if len(f) else np.zeros((0, 2, 3))


def skeleton_text(skeleton: Skeleton) -> dict[str, str]:
    """Editable text of a skeleton: ``keypoints`` (one per line), ``regions``
    (``region: kp1, kp2`` lines), ``edges`` and ``symmetry`` (``kp1 - kp2`` lines)."""
    return {
        "keypoints": "\n".join(skeleton.keypoints),
        "regions": "\n".join(f"{r}: {', '.join(ks)}" for r, ks in skeleton.regions.items()),
        "edges": "\n".join(f"{a} - {b}" for a, b in skeleton.edges),
        "symmetry": "\n".join(f"{a} - {b}" for a, b in skeleton.symmetry),
    }


def _lines(text: str) -> list[tuple[int, str]]:
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def _pairs(text: str, what: str) -> list[tuple[str, str]]:
    pairs = []
    for i, line in _lines(text):
        parts = [p.strip() for p in line.split(" - ")] if " - " in line else line.split()
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"{what} line {i} ({line!r}): write two keypoint names as 'a - b'")
        pairs.append((parts[0], parts[1]))
    return pairs


def skeleton_from_text(keypoints: str, regions: str = "", edges: str = "", symmetry: str = "",
                       name: str = "custom") -> Skeleton:
    """Parse the text of :func:`skeleton_text` back into a validated :class:`Skeleton`.

    Raises:
        ValueError: naming the section and line that is wrong.
    """
    kps = [line for _, line in _lines(keypoints)]
    if not kps:
        raise ValueError("the skeleton needs at least one keypoint (one name per line)")
    region_map: dict[str, list[str]] = {}
    for i, line in _lines(regions):
        if ":" not in line:
            raise ValueError(f"regions line {i} ({line!r}): write 'region: keypoint, keypoint'")
        region, members = line.split(":", 1)
        region_map[region.strip()] = [m.strip() for m in members.split(",") if m.strip()]
    return Skeleton(kps, region_map, _pairs(edges, "edges"), _pairs(symmetry, "symmetric pairs"),
                    name=name)


def remap_skeleton(project: Project, skeleton: Skeleton) -> Project:
    """The project with a new skeleton; labels of keypoints kept by name, others dropped.

    Returns:
        A new :class:`Project` (same session, segments and settings).
    """
    old = project.poses
    new = PoseTable.empty(old.camera_names, old.n_frames, old.individual_names, skeleton.keypoints)
    for k_new, name in enumerate(skeleton.keypoints):
        if name in old.keypoint_names:
            k_old = old.keypoint_index(name)
            for field in ("points2d", "confidence", "source", "reproj_error", "flags"):
                getattr(new, field)[:, :, :, k_new] = getattr(old, field)[:, :, :, k_old]
            new.points3d[:, :, k_new] = old.points3d[:, :, k_old]
            new.n_views[:, :, k_new] = old.n_views[:, :, k_old]
    return Project(session=project.session, skeleton=skeleton, poses=new,
                   segments=project.segments, settings=dict(project.settings))


# low confidence red -> yellow -> green at full confidence (colour-blind safer than a hue wheel:
# it also rises in lightness); NaN confidence is drawn grey
CONFIDENCE_STOPS = np.array([[0.84, 0.15, 0.16], [0.99, 0.80, 0.18], [0.17, 0.75, 0.33]])
MISSING_COLOR = np.array([0.6, 0.6, 0.6, 1.0])
# 12 well separated colours (Tableau-like); repeated when a skeleton has more keypoints
KEYPOINT_PALETTE = np.array([
    [0.12, 0.47, 0.71], [1.00, 0.50, 0.05], [0.17, 0.63, 0.17], [0.84, 0.15, 0.16],
    [0.58, 0.40, 0.74], [0.55, 0.34, 0.29], [0.89, 0.47, 0.76], [0.50, 0.50, 0.50],
    [0.74, 0.74, 0.13], [0.09, 0.75, 0.81], [0.68, 0.78, 0.91], [1.00, 0.73, 0.47],
])


def confidence_colors(confidence: np.ndarray) -> np.ndarray:
    """RGBA ``(N, 4)`` for confidences ``(N,)`` in 0..1 (clipped): red, yellow at 0.5, green at 1;
    grey where NaN."""
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    t = np.clip(np.nan_to_num(conf, nan=0.0), 0.0, 1.0) * (len(CONFIDENCE_STOPS) - 1)
    lo = np.minimum(t.astype(int), len(CONFIDENCE_STOPS) - 2)
    frac = (t - lo)[:, None]
    rgb = CONFIDENCE_STOPS[lo] * (1 - frac) + CONFIDENCE_STOPS[lo + 1] * frac
    out = np.column_stack([rgb, np.ones(len(conf))])
    out[np.isnan(conf)] = MISSING_COLOR
    return out


def keypoint_colors(keypoint_index: np.ndarray) -> np.ndarray:
    """RGBA ``(N, 4)``: a fixed colour per keypoint index (same in every camera and session)."""
    idx = np.asarray(keypoint_index, dtype=int).reshape(-1) % len(KEYPOINT_PALETTE)
    return np.column_stack([KEYPOINT_PALETTE[idx], np.ones(len(idx))])


@attrs.define
class ViewerSettings:
    """What the viewer shows, saved in ``project.settings["napari"]`` so a reopened project looks
    the same. Holds no secret (the VLM key is read from the environment named ``api_key_env``).

    Attributes:
        color_mode: ``"confidence"`` (colormap on 0..1) or ``"keypoint"`` (one color each).
        show_names: Keypoint names drawn as text.
        show_skeleton: Skeleton edges drawn.
        show_hints: Reprojection hints drawn.
        current_keypoint: The keypoint the next click labels.
        individual: The individual being labeled.
        frame: The frame shown when the project was saved.
        run: Run-widget settings (backend, base_url, model, api_key_env, start, stop).
    """

    color_mode: str = attrs.field(default="confidence",
                                  validator=attrs.validators.in_(["confidence", "keypoint"]))
    show_names: bool = False
    show_skeleton: bool = False
    show_hints: bool = True
    current_keypoint: str | None = None
    individual: str | None = None
    frame: int = 0
    run: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_project(cls, project: Project) -> ViewerSettings:
        data = dict(project.settings.get(SETTINGS_KEY, {}))
        data.pop("seed_frames", None)
        known = {a.name for a in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def store(self, project: Project) -> None:
        """Write into ``project.settings["napari"]`` (keeps the seed-frame list)."""
        target = project.settings.setdefault(SETTINGS_KEY, {})
        target.update(attrs.asdict(self))
