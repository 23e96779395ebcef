"""napari reader: a session folder (camera videos) or a ``session.toml`` -> one Image layer per
camera, lazy and frame-exact, shown in grid mode on a shared time slider.

Thin over :mod:`napari_behaviorvlm.video.session_io`; the session (with its calibration) is in
every layer's ``metadata["session"]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_behaviorvlm.core.session import Session
from napari_behaviorvlm.video.session_io import (
    SESSION_FILE, SessionError, find_camera_videos, load_session, open_session_videos,
    read_session_file,
)

__all__ = ["get_reader", "session_layer_data"]

LayerDataTuple = tuple[Any, dict[str, Any], str]


def _session_path(path: str | os.PathLike | list) -> Path | None:
    """The session folder/file ``path`` designates, or None if it is not one."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    path = Path(path)
    if path.is_dir():
        if (path / SESSION_FILE).is_file():
            return path
        try:
            find_camera_videos(path)
        except (SessionError, OSError):
            return None
        return path
    if path.is_file() and path.suffix.lower() == ".toml":
        try:
            read_session_file(path)  # a calibration.toml or other TOML is not a session
        except (SessionError, OSError):
            return None
        return path
    return None


def get_reader(path: str | os.PathLike | list) -> Callable[[Any], list[LayerDataTuple]] | None:
    """npe2 reader contribution: a reader function for a session folder or session file, else None."""
    session_path = _session_path(path)
    if session_path is None:
        return None

    def read_session(_path: Any) -> list[LayerDataTuple]:
        return session_layer_data(load_session(session_path))

    return read_session


def session_layer_data(session: Session) -> list[LayerDataTuple]:
    """One Image layer per camera: lazy :class:`SessionVideo` data named by the camera,
    ``metadata={"session": session, "camera": name}``, fixed contrast limits (0, 255) so napari
    never scans the video. Switches the current viewer (if any) to grid mode."""
    layers: list[LayerDataTuple] = []
    for video in open_session_videos(session):
        kwargs = {
            "name": video.name,
            "metadata": {"session": session, "camera": video.name},
            "contrast_limits": (0, 255),
            "rgb": not video.gray,
            "multiscale": False,
        }
        layers.append((video, kwargs, "image"))
    _enable_grid()
    return layers


def _enable_grid() -> None:
    try:
        import napari
    except ImportError:  # pragma: no cover - napari is a dependency
        return
    viewer = napari.current_viewer()
    if viewer is not None:
        viewer.grid.enabled = True
