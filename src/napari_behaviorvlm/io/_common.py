"""Helpers shared by the exporters and importers (no Qt): names, overwrite checks, frames.

Conventions used by every format module:

- A *session frame* ``f`` is camera ``c``'s *video frame* ``f + frame_offset[c]``; files that other
  tools open next to the video (``.slp``, DLC image names, SLEAP analysis HDF5) index by video
  frame, files about the session as a whole (anipose 3D CSV, segment tables) by session frame.
- Coordinates in files are ``x, y`` pixels (origin at the top-left pixel's centre).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from napari_behaviorvlm.core.atomic import check_overwrite
from napari_behaviorvlm.core.pose import PoseTable
from napari_behaviorvlm.core.project import Project

__all__ = [
    "FormatError", "check_all_writable", "count_unreviewed_flags", "project_stem", "read_frames",
    "safe_name", "video_stems",
]


class FormatError(ValueError):
    """A file is not in the expected layout; the message names the file and what is wrong."""


_UNSAFE = re.compile(r"[^A-Za-z0-9_.]+")


def safe_name(text: str, fallback: str = "session") -> str:
    """``text`` reduced to letters, digits, ``_`` and ``.`` (other runs become ``_``)."""
    cleaned = _UNSAFE.sub("_", str(text)).strip("_.")
    return cleaned or fallback


def project_stem(project: Project) -> str:
    """A file-name stem for the project: ``settings["name"]``, else the session folder's name,
    else ``session``; made safe with :func:`safe_name`."""
    name = project.settings.get("name") if isinstance(project.settings, dict) else None
    if not name and project.session.root is not None:
        name = Path(project.session.root).name
    return safe_name(name or "session")


def video_stems(project: Project) -> list[str]:
    """One unique, file-safe name per camera: the video file's stem (``camera name`` appended
    when two cameras share a stem)."""
    cameras = project.session.cameras
    stems = [safe_name(Path(c.video).stem, fallback=safe_name(c.name)) for c in cameras]
    if len(set(stems)) != len(stems):
        stems = [f"{s}_{safe_name(c.name)}" for s, c in zip(stems, cameras)]
    return stems


def count_unreviewed_flags(poses: PoseTable) -> int:
    """Number of 2D labels still flagged for review (a human edit or acceptance clears a flag),
    counted like the review list: a flag on a missing label has nothing to export."""
    from napari_behaviorvlm.core.review import flagged_mask

    return int(np.count_nonzero(flagged_mask(poses)))


def check_all_writable(paths: Iterable[Path], overwrite: bool) -> None:
    """Refuse before writing anything when one of ``paths`` exists and ``overwrite`` is False.

    Raises:
        FileExistsError: naming the first existing path.
    """
    for path in paths:
        check_overwrite(path, overwrite)


def read_frames(video: str | Path, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(index, frame)`` for the requested video frames, in ascending order, read with
    the package's frame-exact :class:`~napari_behaviorvlm.video.reader.VideoReader`.

    ``frame`` is ``uint8`` ``(H, W, 3)`` RGB or ``(H, W)`` grey.

    Raises:
        FileNotFoundError: the video does not exist.
        FormatError: a requested frame is past the end of the video.
    """
    from napari_behaviorvlm.video.reader import VideoReader

    video = Path(video)
    if not video.exists():
        raise FileNotFoundError(
            f"video {video} not found: frames for the export cannot be read (fix the session's "
            "video paths, or export without images)"
        )
    with VideoReader(video) as reader:
        for i in sorted({int(i) for i in indices}):
            try:
                frame = np.asarray(reader[i])
            except IndexError:
                raise FormatError(f"{video} has no frame {i} (it has {reader.n_frames})") from None
            yield i, frame
