"""SLEAP: ``.slp`` labels and analysis HDF5, written and read through sleap-io.

What :func:`project_to_labels` puts in a ``sleap_io.Labels`` (see docs/formats/slp.md):

- one ``Video`` per camera (the session's video file; frame indices are *video* frames,
  ``session frame + frame_offset``), a ``RecordingSession`` holding the calibration as a
  ``CameraGroup`` with the same camera names, and one ``FrameGroup`` per labeled session frame
  whose ``InstanceGroup`` per individual links that individual's instances across views and
  carries its triangulated ``Instance3D`` (mm);
- a ``Skeleton`` with the project's keypoints, edges and left/right symmetries; one ``Track``
  per individual;
- per camera, frame and individual: a user ``Instance`` with the seed/human points, and a
  ``PredictedInstance`` with the model's points, per-point scores (``confidence``) and an
  instance score (mean point confidence). When both exist the user instance's
  ``from_predicted`` links the prediction it corrected;
- behavior segments as ``UserEvent`` / ``PredictedEvent`` on the first camera's video;
- ``SuggestionFrame``s: the seed frames, then the frames still flagged for review;
- ``provenance["napari_behaviorvlm"]``: which user instances are seeds, fps, frame offsets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import numpy as np
import sleap_io as sio

from napari_behaviorvlm.core.atomic import atomic_path, check_overwrite
from napari_behaviorvlm.core.pose import PoseTable, Source
from napari_behaviorvlm.core.project import Project
from napari_behaviorvlm.core.segments import SegmentTable
from napari_behaviorvlm.io._common import FormatError, check_all_writable, project_stem
from napari_behaviorvlm.io.segments_io import events_to_segments, segments_to_events

__all__ = [
    "export_sleap_analysis_h5", "export_slp", "import_slp", "import_slp_segments",
    "project_to_labels",
]

PROVENANCE_KEY = "napari_behaviorvlm"


def _skeleton(project: Project):
    sk = project.skeleton
    if list(sk.keypoints) != list(project.poses.keypoint_names):
        raise ValueError("the project's skeleton and pose table name different keypoints")
    return sio.Skeleton(nodes=list(sk.keypoints), edges=[tuple(e) for e in sk.edges],
                        symmetries=[tuple(s) for s in sk.symmetry], name=sk.name)


def _videos(project: Project) -> list:
    """One sleap-io Video per camera (opened when the file exists, so frames can be embedded)."""
    videos = []
    calib = project.session.calibration
    for cam, path in zip(project.session.cameras, project.session.video_paths()):
        if path.exists():
            try:
                videos.append(sio.Video.from_filename(str(path)))
                continue
            except Exception:  # unreadable by sleap-io's backends: keep a closed reference
                pass
        meta: dict[str, Any] = {"fps": float(project.session.fps)}
        if calib is not None and cam.name in calib.names:
            w, h = calib[cam.name].size
            if w and h:
                meta["shape"] = (project.session.n_frames + cam.frame_offset, int(h), int(w), 1)
        videos.append(sio.Video(filename=str(path), backend_metadata=meta, open_backend=False))
    return videos


def _instances_of(poses: PoseTable, c: int, f: int, m: int, skeleton, track):
    """(user instance or None, predicted instance or None, is_seed) for one camera/frame/animal."""
    pts = poses.points2d[c, f, m]
    src = poses.source[c, f, m]
    has = ~np.isnan(pts[:, 0])
    human = has & np.isin(src, (Source.SEED, Source.HUMAN))
    model = has & ~human
    pred = user = None
    if model.any():
        xy = np.where(model[:, None], pts, np.nan)
        scores = np.where(model, poses.confidence[c, f, m], np.nan).astype(np.float64)
        finite = scores[np.isfinite(scores)]
        pred = sio.PredictedInstance.from_numpy(
            xy, skeleton=skeleton, point_scores=scores,
            score=float(finite.mean()) if finite.size else 0.0, track=track)
    if human.any():
        xy = np.where(human[:, None], pts, np.nan)
        user = sio.Instance.from_numpy(xy, skeleton=skeleton, track=track, from_predicted=pred)
    is_seed = bool(np.any(src[human] == Source.SEED))
    return user, pred, is_seed


def project_to_labels(project: Project, include_3d: bool = True):
    """Build a ``sleap_io.Labels`` from ``project`` (see the module docstring for the mapping).

    Args:
        include_3d: Add a RecordingSession FrameGroup per labeled frame with InstanceGroups
            and ``Instance3D`` points (needs a calibration).
    """
    session, poses = project.session, project.poses
    if poses.camera_names != session.camera_names:
        raise ValueError("the pose table's cameras differ from the session's cameras")
    skeleton = _skeleton(project)
    videos = _videos(project)
    tracks = {name: sio.Track(name) for name in poses.individual_names}
    offsets = [c.frame_offset for c in session.cameras]

    sio_cams = None
    if session.calibration is not None:
        group = session.calibration.subset(session.camera_names).to_sleap_io()
        sio_cams = list(group.cameras)

    labeled_frames: list = []
    seeds: list[list] = []
    lf_by_cf: dict[tuple[int, int], Any] = {}
    inst_by_cfm: dict[tuple[int, int, int], Any] = {}
    has_label = poses.labeled_mask().any(axis=3)  # (C, F, M)
    for c, f in zip(*np.nonzero(has_label.any(axis=2))):
        instances = []
        for m in np.nonzero(has_label[c, f])[0]:
            user, pred, is_seed = _instances_of(poses, c, f, m, skeleton,
                                                tracks[poses.individual_names[m]])
            instances.extend(x for x in (pred, user) if x is not None)
            inst_by_cfm[(int(c), int(f), int(m))] = user if user is not None else pred
            if is_seed:
                seeds.append([int(c), int(f) + offsets[c], poses.individual_names[m]])
        lf = sio.LabeledFrame(video=videos[c], frame_idx=int(f) + offsets[c], instances=instances)
        labeled_frames.append(lf)
        lf_by_cf[(int(c), int(f))] = lf

    sessions = []
    if sio_cams is not None:
        group = sio.CameraGroup(cameras=sio_cams, metadata=dict(session.calibration.metadata))
        frame_groups = {}
        if include_3d:
            frame_groups = _frame_groups(project, skeleton, sio_cams, lf_by_cf, inst_by_cfm)
        sessions.append(sio.RecordingSession(
            camera_group=group,
            video_by_camera=dict(zip(sio_cams, videos)),
            camera_by_video=dict(zip(videos, sio_cams)),
            frame_group_by_frame_idx=frame_groups,
            metadata={"fps": float(session.fps)},
        ))

    event_types, events = segments_to_events(project.segments, videos[0], tracks,
                                             frame_offset=offsets[0])
    # SLEAP's suggestion list: the seed frames, then the frames still flagged for review
    flagged = [(int(c), int(f) + offsets[c]) for c, f in zip(*np.nonzero(
        (poses.flags != 0).any(axis=(2, 3))))]
    suggested = list(dict.fromkeys([*sorted({(c, f) for c, f, _ in seeds}), *flagged]))
    suggestions = [sio.SuggestionFrame(video=videos[c], frame_idx=f) for c, f in suggested]
    provenance = {PROVENANCE_KEY: {
        "format_version": 1,
        "seed_instances": seeds,
        "fps": float(session.fps),
        "camera_names": list(session.camera_names),
        "frame_offsets": offsets,
    }}
    return sio.Labels(
        labeled_frames=labeled_frames, videos=videos, skeletons=[skeleton],
        tracks=list(tracks.values()), sessions=sessions, suggestions=suggestions,
        provenance=provenance, event_types=event_types, events=events,
    )


def _frame_groups(project, skeleton, sio_cams, lf_by_cf, inst_by_cfm) -> dict:
    poses = project.poses
    frames = sorted({f for (_, f) in lf_by_cf})
    groups = {}
    for f in frames:
        instance_groups = []
        for m, name in enumerate(poses.individual_names):
            by_cam = {sio_cams[c]: inst_by_cfm[(c, f, m)] for c in range(poses.n_cameras)
                      if (c, f, m) in inst_by_cfm}
            if not by_cam:
                continue
            pts3d = poses.points3d[f, m]
            inst3d = None
            if np.isfinite(pts3d).any():
                inst3d = sio.Instance3D(points=pts3d.copy(), skeleton=skeleton,
                                        metadata={"n_views": poses.n_views[f, m].tolist()})
            instance_groups.append(sio.InstanceGroup(instance_by_camera=by_cam,
                                                     instance_3d=inst3d,
                                                     metadata={"individual": name}))
        lf_by_cam = {sio_cams[c]: lf_by_cf[(c, f)] for c in range(poses.n_cameras)
                     if (c, f) in lf_by_cf}
        # FrameGroups are keyed by session frame (videos may have different offsets).
        groups[f] = sio.FrameGroup(frame_idx=f, instance_groups=instance_groups,
                                   labeled_frame_by_camera=lf_by_cam)
    return groups


def export_slp(project: Project, path: str | Path, embed_frames: bool = False,
               overwrite: bool = False) -> Path:
    """Write ``project`` as a SLEAP ``.slp`` file atomically (see :func:`project_to_labels`).

    Args:
        embed_frames: Embed the images of frames with user (seed/human) labels, so the file
            opens without the videos (a SLEAP ``.pkg.slp`` style package). Needs the videos.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
        FileNotFoundError: ``embed_frames`` and a video is missing.
    """
    path = Path(path)
    if path.suffix != ".slp":
        raise ValueError(f"a SLEAP labels file must end with .slp, got {path.name}")
    check_overwrite(path, overwrite)
    labels = project_to_labels(project)
    if embed_frames:
        missing = [str(v.filename) for v in labels.videos if not Path(v.filename).exists()]
        if missing:
            raise FileNotFoundError(f"cannot embed frames: videos not found: {missing}")
        labels = _SessionKeepingLabels(**{f.alias: getattr(labels, f.name)
                                          for f in attrs.fields(sio.Labels) if f.init})
    with atomic_path(path) as tmp:
        sio.save_slp(labels, str(tmp), embed="user" if embed_frames else False,
                     embed_inplace=embed_frames, verbose=False)
    return path


class _SessionKeepingLabels(sio.Labels):
    """``Labels`` whose ``replace_videos`` also relinks RecordingSession cameras.

    sleap-io's embedding replaces each Video by its embedded copy through
    ``Labels.replace_videos``, which (in sleap-io 0.9) does not update the sessions, so the
    saved file would lose the camera <-> video links. Used only for embedding exports.
    """

    def replace_videos(self, old_videos=None, new_videos=None, video_map=None):
        if video_map is None:
            old_videos = self.videos if old_videos is None else old_videos
            video_map = dict(zip(old_videos, new_videos))
        super().replace_videos(video_map=video_map)
        for session in self.sessions:
            for old, new in video_map.items():
                camera = session.get_camera(old)
                if camera is not None:
                    session.remove_video(old)
                    session.add_video(new, camera)


def export_sleap_analysis_h5(project: Project, out_dir: str | Path, overwrite: bool = False,
                             stem: str | None = None) -> list[Path]:
    """Write one SLEAP analysis HDF5 per camera: ``<out_dir>/<stem>.<camera>.analysis.h5``.

    Layout (sleap-io's writer, SLEAP's "matlab" preset): ``tracks`` ``(n_tracks, 2, n_nodes,
    n_frames)`` px over every *video* frame ``0 .. n_frames + offset - 1``, ``point_scores``
    ``(n_tracks, n_nodes, n_frames)`` (1.0 for seed/human points, the model confidence
    otherwise), ``instance_scores``, ``track_names``, ``node_names``, ``edge_inds``,
    ``track_occupancy``. Each point is the best label: human where present, else the model's.
    Tracks with no label at all are left out (as SLEAP does).
    """
    out_dir = Path(out_dir)
    stem = stem or project_stem(project)
    poses = project.poses
    paths = [out_dir / f"{stem}.{name}.analysis.h5" for name in poses.camera_names]
    check_all_writable(paths, overwrite)
    skeleton = _skeleton(project)
    videos = _videos(project)
    tracks = [sio.Track(name) for name in poses.individual_names]
    labeled, human = poses.labeled_mask(), poses.human_mask()
    for c, (path, cam) in enumerate(zip(paths, project.session.cameras)):
        n_video = project.session.n_frames + cam.frame_offset
        video = sio.Video(filename=str(videos[c].filename), open_backend=False,
                          backend_metadata={"shape": (n_video, 1, 1, 1)})
        lfs = []
        for f in np.nonzero(labeled[c].any(axis=(1, 2)))[0]:
            instances = []
            for m in np.nonzero(labeled[c, f].any(axis=1))[0]:
                conf = np.where(human[c, f, m], 1.0,
                                poses.confidence[c, f, m]).astype(np.float64)
                conf[~labeled[c, f, m]] = np.nan
                finite = conf[np.isfinite(conf)]
                instances.append(sio.PredictedInstance.from_numpy(
                    poses.points2d[c, f, m], skeleton=skeleton, point_scores=conf,
                    score=float(finite.mean()) if finite.size else 0.0, track=tracks[m]))
            lfs.append(sio.LabeledFrame(video=video, frame_idx=int(f) + cam.frame_offset,
                                        instances=instances))
        labels = sio.Labels(labeled_frames=lfs, videos=[video], skeletons=[skeleton],
                            tracks=tracks)
        with atomic_path(path) as tmp:
            sio.save_analysis_h5(labels, str(tmp), video=0, all_frames=True)
    return paths


# ----------------------------------------------------------------------------- import
def _camera_for_video(labels, video, project: Project | None) -> str:
    """The camera name of ``video``: from the file's RecordingSession, else the project's camera
    whose video path (or stem) matches, else the video file's stem."""
    for session in labels.sessions:
        cam = session.get_camera(video)
        if cam is not None and cam.name:
            return cam.name
    filename = Path(str(video.filename if isinstance(video.filename, str) else video.filename[0]))
    if project is not None:
        for cam, path in zip(project.session.cameras, project.session.video_paths()):
            if path == filename or path.name == filename.name:
                return cam.name
        for cam in project.session.cameras:
            if cam.name == filename.stem:
                return cam.name
    return filename.stem


def import_slp(path: str | Path, project: Project | None = None, source: Source = Source.SEED,
               include_predictions: bool = False) -> PoseTable:
    """Read a ``.slp`` file's labels into a :class:`PoseTable`.

    Args:
        path: The ``.slp`` file.
        project: When given, the result has the project's cameras, frames, individuals and
            keypoints (matched by name; video frames are shifted by each camera's offset) so it
            can be merged into the project. Otherwise cameras come from the file (camera names,
            or video stems), individuals from its tracks, frames ``0 .. last labeled``.
        source: The source given to user-instance points (``SEED`` to use them as seed labels,
            ``HUMAN`` as ground truth). Instances the file marks as seeds stay ``SEED``.
        include_predictions: Also read predicted instances (source ``MODEL``, confidence = point
            score) where no user label exists.

    Raises:
        FileNotFoundError: no file. FormatError: keypoints or cameras do not match the project.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SLEAP file not found: {path}")
    source = Source(source)
    if not source.is_human:
        raise ValueError("source must be Source.SEED or Source.HUMAN for user instances")
    labels = sio.load_slp(str(path), open_videos=False)
    if not labels.skeletons:
        raise FormatError(f"{path} holds no skeleton")
    skeleton = labels.skeletons[0]
    file_kps = [n.name for n in skeleton.nodes]
    prov = labels.provenance.get(PROVENANCE_KEY, {}) if isinstance(labels.provenance, dict) else {}
    seed_keys = {(int(c), int(f), str(t)) for c, f, t in prov.get("seed_instances", [])}
    cam_of_video = {id(v): _camera_for_video(labels, v, project) for v in labels.videos}

    if project is not None:
        cameras = project.session.camera_names
        offsets = {c.name: c.frame_offset for c in project.session.cameras}
        keypoints = project.poses.keypoint_names
        individuals = list(project.poses.individual_names)
        n_frames = project.session.n_frames
        unknown = sorted(set(file_kps) - set(keypoints))
        if unknown:
            raise FormatError(f"{path}: keypoints {unknown} are not in the project's skeleton")
        foreign = sorted({n for n in cam_of_video.values() if n not in cameras})
        if foreign:
            raise FormatError(f"{path}: videos/cameras {foreign} match no camera of the project "
                              f"({cameras})")
    else:
        cameras = list(dict.fromkeys(cam_of_video[id(v)] for v in labels.videos))
        offsets = {name: 0 for name in cameras}
        keypoints = file_kps
        individuals = [t.name for t in labels.tracks] or ["individual0"]
        frames = [lf.frame_idx for lf in labels.labeled_frames]
        n_frames = (max(frames) + 1) if frames else 0
    kp_index = [keypoints.index(k) for k in file_kps]
    table = PoseTable.empty(cameras, n_frames, individuals, keypoints)
    video_index = {id(v): i for i, v in enumerate(labels.videos)}

    for lf in labels.labeled_frames:
        cam = cam_of_video[id(lf.video)]
        c = cameras.index(cam)
        f = lf.frame_idx - offsets[cam]
        if not 0 <= f < n_frames:
            continue
        ordered = sorted(lf.instances, key=lambda i: isinstance(i, sio.PredictedInstance))
        for inst in ordered:  # user instances first: they win
            predicted = isinstance(inst, sio.PredictedInstance)
            if predicted and not include_predictions:
                continue
            name = inst.track.name if inst.track is not None else individuals[0]
            if name not in individuals:
                if project is not None:
                    raise FormatError(f"{path}: track {name!r} is not an individual of the "
                                      f"project ({individuals})")
                continue
            m = individuals.index(name)
            if predicted:
                arr = inst.numpy(scores=True)
                xy, scores = arr[:, :2], arr[:, 2]
                src = Source.MODEL
            else:
                xy, scores = inst.numpy(), np.ones(len(file_kps))
                is_seed = (video_index[id(lf.video)], lf.frame_idx, name) in seed_keys
                src = Source.SEED if is_seed else source
            for j, k in enumerate(kp_index):
                if np.isnan(xy[j, 0]) or not np.isnan(table.points2d[c, f, m, k, 0]):
                    continue
                table.points2d[c, f, m, k] = xy[j]
                table.source[c, f, m, k] = int(src)
                table.confidence[c, f, m, k] = 1.0 if src.is_human else scores[j]
    return table


def import_slp_segments(path: str | Path, project: Project | None = None) -> SegmentTable:
    """Behavior segments from a ``.slp`` file's events (in session frames when ``project`` is
    given: the first camera's offset is removed)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"SLEAP file not found: {path}")
    labels = sio.load_slp(str(path), open_videos=False)
    offset = 0
    if project is not None and labels.videos:
        cam = _camera_for_video(labels, labels.videos[0], project)
        offset = next((c.frame_offset for c in project.session.cameras if c.name == cam), 0)
    return events_to_segments(labels.events, frame_offset=offset)
