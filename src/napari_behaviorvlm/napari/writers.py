"""napari writer contributions for keypoint Points layers (thin: the work is in ``io``).

A keypoint layer (``data`` ``[frame, y, x]``; features keypoint, individual, confidence, source)
is written as

- SLEAP labels (``.slp``): seed/human points as user instances, model points as predicted
  instances with scores (:func:`napari_behaviorvlm.io.sleap.export_slp`);
- a DeepLabCut prediction table (``.csv``): every frame, ``x, y, likelihood`` per keypoint
  (:func:`napari_behaviorvlm.io.dlc.predictions_dataframe`), readable by movement and DLC tools.

The camera is the layer's ``metadata["behaviorvlm"]["camera"]`` (else the layer name without
`` keypoints``). When the viewer has a BehaviorVLM project open with that camera, its video,
frame offset, fps, skeleton and calibration are used; otherwise a one-camera session at 30 fps
whose video is named after the camera. napari's save dialog has already confirmed replacing an
existing file; writes are atomic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_behaviorvlm.core.atomic import atomic_write_text
from napari_behaviorvlm.core.project import Project
from napari_behaviorvlm.core.session import CameraSource, Session
from napari_behaviorvlm.core.skeleton import Skeleton
from napari_behaviorvlm.io.dlc import predictions_dataframe
from napari_behaviorvlm.io.layers import pose_table_from_points
from napari_behaviorvlm.io.sleap import export_slp

__all__ = ["layer_project", "write_points_dlc_csv", "write_points_slp"]


def _open_project() -> Project | None:
    try:
        import napari

        from napari_behaviorvlm.napari.project_state import get_project_state

        viewer = napari.current_viewer()
    except Exception:  # no napari / no viewer: plain conversion
        return None
    state = get_project_state(viewer) if viewer is not None else None
    return None if state is None else state.project


def layer_project(data: Any, attributes: dict, project: Project | None = None) -> Project:
    """A one-camera :class:`Project` holding a keypoint layer's labels (see module docstring).

    Args:
        data: The layer data ``(N, 3)`` ``[frame, y, x]``.
        attributes: The layer's attributes (``features``, ``metadata``, ``name``).
        project: The open project to take the session details from (default: the current
            viewer's, when any).
    """
    meta = attributes.get("metadata") or {}
    camera = (meta.get("behaviorvlm") or {}).get("camera") or \
        str(attributes.get("name", "camera")).removesuffix(" keypoints")
    features = attributes.get("features")
    project = project if project is not None else _open_project()
    if project is not None and camera in project.session.camera_names:
        session = project.session
        poses = pose_table_from_points(data, features, camera, n_frames=session.n_frames)
        cam = next(c for c in session.cameras if c.name == camera)
        calib = session.calibration.subset([camera]) if session.calibration is not None and \
            camera in session.calibration.names else None
        one = Session(cameras=[cam], fps=session.fps, n_frames=session.n_frames,
                      calibration=calib, root=session.root)
        return Project(session=one, skeleton=project.skeleton, poses=poses,
                       settings={"name": project.settings.get("name", camera)})
    poses = pose_table_from_points(data, features, camera)
    session = Session(cameras=[CameraSource(name=camera, video=f"{camera}.mp4")], fps=30.0,
                      n_frames=poses.n_frames)
    skeleton = Skeleton(keypoints=poses.keypoint_names, regions={}, name="skeleton")
    return Project(session=session, skeleton=skeleton, poses=poses, settings={"name": camera})


def write_points_slp(path: str, data: Any, attributes: dict) -> list[str]:
    """napari writer: a keypoint layer as SLEAP labels (``.slp``)."""
    export_slp(layer_project(data, attributes), Path(path), overwrite=True)
    return [str(path)]


def write_points_dlc_csv(path: str, data: Any, attributes: dict) -> list[str]:
    """napari writer: a keypoint layer as a DeepLabCut prediction table (``.csv``)."""
    project = layer_project(data, attributes)
    atomic_write_text(path, predictions_dataframe(project.poses, 0).to_csv())
    return [str(path)]
