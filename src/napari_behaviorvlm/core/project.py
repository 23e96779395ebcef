"""The project file: session, skeleton, poses, segments and settings in one ``.bvlm`` file.

Format (version 1): a ZIP archive holding

- ``project.json``: ``{"format": "napari-behaviorvlm-project", "version": 1, "session": ...,
  "skeleton": ..., "pose_names": ..., "segments": [...], "settings": {...}}``
- ``poses/<field>.npy``: each :class:`~napari_behaviorvlm.core.pose.PoseTable` array, saved
  with ``numpy.save`` (exact dtype and values, NaN included).

Saving writes a temporary file beside the target and atomically replaces it, so a crash during
a save leaves the previous good file in place. Settings must be JSON-serialisable and must never
hold secrets (an API key is read from the environment, only the variable's *name* is stored).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from napari_behaviorvlm.core.atomic import atomic_write
from napari_behaviorvlm.core.pose import PoseTable
from napari_behaviorvlm.core.segments import SegmentTable
from napari_behaviorvlm.core.session import Session
from napari_behaviorvlm.core.skeleton import Skeleton

__all__ = ["PROJECT_SUFFIX", "Project", "ProjectFileError", "load_project", "save_project"]

FORMAT_NAME = "napari-behaviorvlm-project"
FORMAT_VERSION = 1
PROJECT_SUFFIX = ".bvlm"


class ProjectFileError(ValueError):
    """A project file is corrupt, truncated, from another program or from a newer version."""


@attrs.define(eq=False)
class Project:
    """Everything the user works on: the session, skeleton, pose table, segments, settings."""

    session: Session
    skeleton: Skeleton
    poses: PoseTable
    segments: SegmentTable = attrs.field(factory=SegmentTable)
    settings: dict[str, Any] = attrs.field(factory=dict)

    @classmethod
    def new(cls, session: Session, skeleton: Skeleton,
            individuals: list[str] | None = None) -> Project:
        """An empty project for ``session`` (one individual ``mouse0`` unless given)."""
        individuals = individuals or ["mouse0"]
        poses = PoseTable.empty(session.camera_names, session.n_frames, individuals,
                                skeleton.keypoints)
        return cls(session=session, skeleton=skeleton, poses=poses)

    def save(self, path: str | Path) -> Path:
        return save_project(self, path)

    def equals(self, other: Project) -> bool:
        """True when every part matches exactly."""
        return (
            self.session.to_dict() == other.session.to_dict()
            and self.skeleton == other.skeleton
            and self.poses.equals(other.poses)
            and self.segments.equals(other.segments)
            and self.settings == other.settings
        )


def save_project(project: Project, path: str | Path) -> Path:
    """Write ``project`` to ``path`` atomically and return the path.

    Raises:
        TypeError: ``project.settings`` holds something that is not JSON-serialisable.
    """
    path = Path(path)
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "session": project.session.to_dict(),
        "skeleton": project.skeleton.to_dict(),
        "pose_names": project.poses.names(),
        "segments": project.segments.to_records(),
        "settings": project.settings,
    }
    text = json.dumps(header, indent=1, allow_nan=True)
    with atomic_write(path, "wb") as handle:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("project.json", text)
            for name, arr in project.poses.to_arrays().items():
                buf = io.BytesIO()
                np.save(buf, arr, allow_pickle=False)
                zf.writestr(f"poses/{name}.npy", buf.getvalue())
    return path


def load_project(path: str | Path) -> Project:
    """Read a project file written by :func:`save_project`.

    Raises:
        FileNotFoundError: no file at ``path``.
        ProjectFileError: the file is corrupt, truncated, foreign or from a newer version; the
            message names the file and says what to do.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"project file not found: {path}")
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                header = json.loads(zf.read("project.json").decode("utf-8"))
            except KeyError:
                raise ProjectFileError(
                    f"{path} is a ZIP archive but not a napari-behaviorvlm project "
                    "(no project.json inside)"
                ) from None
            if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
                raise ProjectFileError(f"{path} is not a napari-behaviorvlm project file")
            version = header.get("version")
            if not isinstance(version, int) or version > FORMAT_VERSION:
                raise ProjectFileError(
                    f"{path} has project format version {version!r}; this napari-behaviorvlm "
                    f"reads up to version {FORMAT_VERSION}: upgrade the package"
                )
            arrays = {}
            for name in PoseTable.ARRAY_FIELDS:
                try:
                    arrays[name] = np.load(io.BytesIO(zf.read(f"poses/{name}.npy")),
                                           allow_pickle=False)
                except KeyError:
                    raise ProjectFileError(f"{path} lacks poses/{name}.npy: the file is incomplete") from None
    except zipfile.BadZipFile as exc:
        raise ProjectFileError(
            f"{path} is corrupt or not a napari-behaviorvlm project ({exc}). Saves are atomic, "
            "so an interrupted save never produces this: the file was damaged or replaced by "
            "another program; restore it from a backup or relabel"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, OSError) as exc:
        if isinstance(exc, ProjectFileError):
            raise
        raise ProjectFileError(f"{path} is damaged and cannot be read: {exc}") from None
    try:
        return Project(
            session=Session.from_dict(header["session"]),
            skeleton=Skeleton.from_dict(header["skeleton"]),
            poses=PoseTable.from_arrays(header["pose_names"], arrays),
            segments=SegmentTable.from_records(header.get("segments", [])),
            settings=header.get("settings", {}),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ProjectFileError(f"{path} has inconsistent content: {exc}") from None
