"""The behavior pipeline: features -> over-segmentation -> captions -> merge -> segment table.

``run_segmentation(project_or_inputs, config)`` runs it on a
:class:`~napari_behaviorvlm.core.project.Project` (poses when it has any, else video features;
results go into ``project.segments`` with ``replace_model_segments``, so human segments stay) or
on explicit :class:`SegmentationInputs`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import numpy as np

from napari_behaviorvlm.behavior.captions import (
    DEFAULT_LABELS,
    Caption,
    KinematicCaptioner,
    KinematicThresholds,
)
from napari_behaviorvlm.behavior.features import FeatureSet, pose_features, video_features, windowed
from napari_behaviorvlm.behavior.merge import LocalMerger
from napari_behaviorvlm.behavior.overseg import Clip, OversegConfig, oversegment
from napari_behaviorvlm.core.project import Project
from napari_behaviorvlm.core.segments import Segment, SegmentTable

__all__ = [
    "FrameSource",
    "apply_to_project",
    "SegmentationCancelled",
    "SegmentationConfig",
    "SegmentationInputs",
    "SegmentationResult",
    "inputs_from_project",
    "run_segmentation",
    "segment_inputs",
    "trim_around",
]

FrameSource = Callable[[int], Sequence[np.ndarray]]
"""``frame -> [image per camera]`` (uint8 ``(H, W[, 3])``), session frame indices; the sequence
may decode lazily when indexed."""

ProgressCallback = Callable[[float, str], None]
"""``on_progress(fraction 0..1, message)``."""


class SegmentationCancelled(RuntimeError):
    """``should_stop`` returned True; nothing was written."""


@attrs.define
class SegmentationConfig:
    """Every parameter of the behavior pipeline.

    Attributes:
        backend: ``"local"`` (kinematic captioner + deterministic merger, no network) or
            ``"vlm"`` (VLM captions from video frames + LLM merge; needs ``vlm``).
        window_s: window of the feature statistics used for clustering (s).
        overseg: over-segmentation parameters.
        thresholds: kinematic captioner thresholds.
        min_bout_s: the local merger absorbs bouts shorter than this (s).
        split_min_s: local backend: clips are also cut where the kinematic per-frame labels
            change for at least this long (s; 0 = off), so a boundary inside a clip survives.
        compatible: label groups the local merger joins when adjacent.
        labels: behavior vocabulary for the VLM prompts.
        vlm: a ``napari_behaviorvlm.vlm.VLMConfig`` (backend ``"vlm"`` only).
        sample_fps: frames per second sent to the VLM from each clip.
        cameras: camera indices whose frames the VLM sees (default: the first).
        max_frames_per_clip: cap on images per camera and clip sent to the VLM.
        image_width: frames are downscaled to this width (px) before sending.
        llm_merge: with backend ``"vlm"``, merge with the LLM (else the local merger).
        use_video_features: cluster on video features even when poses exist.
    """

    backend: str = attrs.field(default="local", validator=attrs.validators.in_(("local", "vlm")))
    window_s: float = 0.5
    overseg: OversegConfig = attrs.field(factory=OversegConfig)
    thresholds: KinematicThresholds = attrs.field(factory=KinematicThresholds)
    min_bout_s: float = 0.5
    split_min_s: float = 0.3
    compatible: list[tuple[str, ...]] = attrs.field(factory=list)
    labels: tuple[str, ...] = DEFAULT_LABELS
    vlm: Any = None
    sample_fps: float = 10.0
    cameras: tuple[int, ...] = (0,)
    max_frames_per_clip: int = 16
    image_width: int = 320
    llm_merge: bool = True
    use_video_features: bool = False

    def to_settings(self) -> dict[str, Any]:
        """JSON-serialisable record of the run's parameters (stored in the project)."""
        out = attrs.asdict(self, filter=lambda a, v: a.name != "vlm")
        out["vlm"] = None if self.vlm is None else self.vlm.to_settings()
        return out


@attrs.define(eq=False)
class SegmentationInputs:
    """What the pipeline needs when there is no project.

    Attributes:
        n_frames: session frames.
        fps: frames per second.
        individuals: animal names ``(M,)``.
        points: ``(F, M, K, 2)`` px or ``(F, M, K, 3)`` mm poses, or None (video only).
        keypoint_names: ``(K,)`` names (with ``points``).
        arena: ``(P, 2)`` floor border polygon in pose x, y units, or None (estimated).
        frames: :data:`FrameSource` for video features and the VLM, or None.
    """

    n_frames: int
    fps: float
    individuals: list[str] = attrs.field(factory=lambda: ["mouse0"])
    points: np.ndarray | None = None
    keypoint_names: list[str] = attrs.field(factory=list)
    arena: np.ndarray | None = None
    frames: FrameSource | None = None


@attrs.define(eq=False)
class SegmentationResult:
    """Intermediate results of one run (for benchmarks, the timeline and debugging).

    ``stats``: ``n_overseg_clips`` (clips from the over-segmentation), ``n_clips`` (the clips
    captioned: the local captioner may split an over-segmentation clip), ``n_segments``,
    ``features`` (names) and, on the VLM backend, its caption and merge counts and ``usage``."""

    features: FeatureSet
    clips: list[Clip]
    captions: list[Caption]
    segments: SegmentTable
    stats: dict[str, Any] = attrs.field(factory=dict)


def inputs_from_project(project: Project) -> SegmentationInputs:
    """Poses from a project: 3D when any 3D point exists, else the 2D labels of the camera with
    the most labels; video frames through ``napari_behaviorvlm.video`` when the session has
    videos (read lazily)."""
    poses = project.poses
    points = None
    if np.isfinite(poses.points3d).any():
        points = poses.points3d
    elif poses.n_cameras and np.isfinite(poses.points2d).any():
        counts = np.isfinite(poses.points2d[..., 0]).sum(axis=(1, 2, 3))
        points = poses.points2d[int(np.argmax(counts))]
    frames = _session_frame_source(project)
    return SegmentationInputs(
        n_frames=project.session.n_frames, fps=project.session.fps,
        individuals=list(poses.individual_names), points=points,
        keypoint_names=list(poses.keypoint_names), frames=frames,
    )


def _session_frame_source(project: Project) -> FrameSource | None:
    if not project.session.cameras:
        return None
    try:
        from napari_behaviorvlm.video.session_io import open_session_videos
    except ImportError:  # the video area is not installed in this build
        return None
    state: dict[str, Any] = {}

    class _Views:
        """The cameras' images at one frame, decoded only when indexed."""

        def __init__(self, frame: int) -> None:
            self.frame = frame

        def _videos(self) -> list:
            if "videos" not in state:
                state["videos"] = open_session_videos(project.session)
            return state["videos"]

        def __len__(self) -> int:
            return len(project.session.cameras)

        def __getitem__(self, camera: int) -> np.ndarray:
            return np.asarray(self._videos()[camera][self.frame])

    return _Views


def _progress(cb: ProgressCallback | None, fraction: float, message: str) -> None:
    if cb is not None:
        cb(float(min(max(fraction, 0.0), 1.0)), message)


def _stop(should_stop: Callable[[], bool] | None) -> None:
    if should_stop is not None and should_stop():
        raise SegmentationCancelled("segmentation cancelled; nothing was written")


def compute_features(inputs: SegmentationInputs, config: SegmentationConfig) -> FeatureSet:
    """Pose features when ``inputs.points`` holds any finite value (and video features are not
    forced), else video features from ``inputs.frames``.

    Raises:
        ValueError: neither poses nor video frames are available.
    """
    has_pose = inputs.points is not None and np.isfinite(inputs.points).any()
    if has_pose and not config.use_video_features:
        return pose_features(inputs.points, inputs.keypoint_names, inputs.fps,
                             inputs.individuals, arena=inputs.arena)
    if inputs.frames is None:
        raise ValueError("no poses and no video to segment: label or track keypoints first, "
                         "or give a session whose camera videos can be read")
    cams = config.cameras or (0,)

    def images(f: int) -> list[np.ndarray]:
        views = inputs.frames(f)
        return [views[c] for c in cams if c < len(views)]

    frames = (images(f) for f in range(inputs.n_frames))
    return video_features(frames, inputs.fps, individual=inputs.individuals[0])


def segment_inputs(
    inputs: SegmentationInputs,
    config: SegmentationConfig | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    client: Any = None,
) -> SegmentationResult:
    """Run the whole pipeline on ``inputs`` and return every intermediate result.

    Args:
        client: a ``napari_behaviorvlm.vlm.VLMClient`` for backend ``"vlm"`` (built from
            ``config.vlm`` when None).

    Raises:
        SegmentationCancelled: ``should_stop()`` returned True between steps.
    """
    config = config or SegmentationConfig()
    _progress(on_progress, 0.0, "features")
    features = compute_features(inputs, config)
    _stop(should_stop)
    _progress(on_progress, 0.15, "over-segmentation")
    clips = oversegment(windowed(features, config.window_s), features.fps, features.individuals,
                        config.overseg, should_stop)
    _stop(should_stop)
    stats: dict[str, Any] = {"n_overseg_clips": len(clips), "features": list(features.names)}
    if config.backend == "local":
        captioner = KinematicCaptioner(config.thresholds)
        if config.split_min_s > 0:
            clips = captioner.split_clips(clips, features, config.split_min_s)
        _progress(on_progress, 0.3, f"captioning {len(clips)} clips (kinematic)")
        captions = captioner.caption_clips(clips, features)
        _progress(on_progress, 0.8, "merging")
        segments = LocalMerger(config.min_bout_s, config.compatible).merge(clips, captions, features.fps)
    else:
        from napari_behaviorvlm.behavior.vlm_backend import run_vlm_backend

        captions, segments, vlm_stats = run_vlm_backend(
            inputs, features, clips, config, client,
            lambda frac, msg: _progress(on_progress, 0.3 + 0.65 * frac, msg), should_stop)
        stats.update(vlm_stats)
    _stop(should_stop)
    table = SegmentTable(segments)
    stats["n_clips"], stats["n_segments"] = len(clips), len(table)
    _progress(on_progress, 1.0, f"{len(clips)} clips -> {len(table)} segments")
    return SegmentationResult(features, clips, captions, table, stats)


def run_segmentation(
    project_or_inputs: Project | SegmentationInputs,
    config: SegmentationConfig | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    client: Any = None,
) -> SegmentTable:
    """Segment behavior and return the segment table.

    With a :class:`Project`, the model segments replace the project's previous model segments
    (human segments are kept; model segments are trimmed off their frames, :func:`trim_around`),
    the run's parameters are stored in ``project.settings["behavior"]``, and
    ``project.segments`` is returned. With :class:`SegmentationInputs`, a new table is returned.
    """
    config = config or SegmentationConfig()
    if isinstance(project_or_inputs, Project):
        project = project_or_inputs
        result = segment_inputs(inputs_from_project(project), config, on_progress, should_stop, client)
        return apply_to_project(project, result, config)
    return segment_inputs(project_or_inputs, config, on_progress, should_stop, client).segments


def apply_to_project(project: Project, result: SegmentationResult,
                     config: SegmentationConfig) -> SegmentTable:
    """Put a run's model segments into ``project.segments`` (previous model segments replaced,
    human segments kept and the new ones trimmed off their frames) and record the run's
    parameters and stats in ``project.settings["behavior"]``; returns ``project.segments``.

    (Separate from :func:`run_segmentation` so a GUI can compute in a worker thread and apply
    on its main thread.)
    """
    project.segments.replace_model_segments(trim_around(result.segments, project.segments.human()))
    project.settings["behavior"] = config.to_settings() | {"stats": result.stats}
    return project.segments


def trim_around(segments: Iterable[Segment], keep: Sequence[Segment]) -> list[Segment]:
    """Model ``segments`` cut so that they no longer overlap any segment of ``keep`` (human
    segments) of the same subject; the pieces left outside keep their label and score."""
    out: list[Segment] = []
    for seg in segments:
        pieces = [(seg.start, seg.end)]
        for h in keep:
            if h.subject != seg.subject:
                continue
            nxt = []
            for a, b in pieces:
                if h.end < a or h.start > b:
                    nxt.append((a, b))
                    continue
                if a < h.start:
                    nxt.append((a, h.start - 1))
                if b > h.end:
                    nxt.append((h.end + 1, b))
            pieces = nxt
        out.extend(attrs.evolve(seg, start=a, end=b) for a, b in pieces)
    return out


def segment_labels(table: SegmentTable, n_frames: int, subject: str | None = None,
                   labels: Sequence[str] | None = None) -> np.ndarray:
    """Per-frame labels ``(n_frames,)`` of one subject, background ``""``; labels outside
    ``labels`` (when given) become background."""
    out = table.frame_labels(n_frames, subject)
    if labels is not None:
        out[~np.isin(out.astype(str), list(labels))] = ""
    return out
