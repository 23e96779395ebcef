"""Load a multi-camera session from a folder of videos or a ``session.toml`` file.

Folder layouts (camera names sorted alphabetically):

- videos directly in the folder: one camera per file, named by the file stem
  (``back.mp4``, ``top.mp4`` -> cameras ``back``, ``top``);
- otherwise one sub-folder per camera holding exactly one video, named by the sub-folder
  (``back/minimal_back.mp4`` -> camera ``back``; the anipose/sleap-anipose layout).

A ``calibration.toml`` (anipose) in the folder is loaded and reordered to the camera order; a
``session.toml`` in the folder takes precedence over the folder scan.

``session.toml`` (paths relative to the file's folder)::

    fps = 30.0                        # optional; overrides the videos' rate (recorded in notes)
    n_frames = 1000                   # optional; explicit trim (<= every camera's frames)
    strict = false                    # optional; true: unequal frame counts are an error
    calibration = "calibration.toml"  # optional: a path, or an inline [calibration] table

    [[cameras]]
    name = "back"                     # matches the calibration's camera name
    video = "back/minimal_back.mp4"
    frame_offset = 0                  # optional; video frame shown at session frame 0

Unequal frame counts are trimmed to the shortest camera (unless ``strict``), and the trim is
written to ``Session.notes`` and logged as a warning; unequal frame rates are an error.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import tomli_w


from napari_behaviorvlm.core.atomic import atomic_write_text, check_overwrite
from napari_behaviorvlm.core.tomlfile import read_toml
from napari_behaviorvlm.core.session import CameraSource, Session
from napari_behaviorvlm.geometry.camera import (
    CalibrationError, CameraGroup, _toml_safe, load_calibration,
)
from napari_behaviorvlm.video.reader import (
    VIDEO_EXTENSIONS, FrameArray, VideoIndex, VideoReader, load_index,
)

__all__ = ["SESSION_FILE", "SessionError", "SessionVideo", "find_camera_videos", "load_session",
           "open_session_videos", "save_session_file"]

log = logging.getLogger(__name__)

SESSION_FILE = "session.toml"
CALIBRATION_FILE = "calibration.toml"
_SESSION_KEYS = {"fps", "n_frames", "strict", "calibration", "cameras"}
_CAMERA_KEYS = {"name", "video", "frame_offset"}
_FPS_RTOL = 1e-3


class SessionError(ValueError):
    """A session folder or file is inconsistent (names the files/cameras and what to do)."""


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def find_camera_videos(folder: str | os.PathLike) -> dict[str, Path]:
    """Camera name -> video path for a session folder (see module docstring), sorted by name.

    Raises:
        SessionError: no videos, or two videos claim the same camera name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"session folder not found: {folder}")
    found: dict[str, Path] = {}
    direct = sorted(p for p in folder.iterdir() if _is_video(p))
    if direct:
        for video in direct:
            if video.stem in found:
                raise SessionError(f"{folder}: two videos for camera {video.stem!r}: "
                                   f"{found[video.stem].name} and {video.name}; keep one")
            found[video.stem] = video
    else:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            videos = sorted(p for p in sub.iterdir() if _is_video(p))
            if len(videos) > 1:
                raise SessionError(f"{sub}: {len(videos)} videos ({', '.join(v.name for v in videos)}); "
                                   "a camera sub-folder must hold exactly one video")
            if videos:
                found[sub.name] = videos[0]
    if not found:
        raise SessionError(f"{folder}: no videos found (expected camera videos "
                           f"{sorted(VIDEO_EXTENSIONS)} in the folder or one per sub-folder)")
    return dict(sorted(found.items()))


def load_session(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Session:
    """Load a session from a folder of camera videos or a ``session.toml`` file.

    Args:
        path: Session folder, or session file.
        cache_dir: Where frame indices of videos in read-only folders are cached.

    Returns:
        A :class:`~napari_behaviorvlm.core.session.Session` with ``n_frames`` the number of
        session frames every camera can show and ``notes`` describing any trim/offset/override.

    Raises:
        FileNotFoundError: missing folder, file or video.
        SessionError: inconsistent cameras, frame rates, frame counts (strict) or calibration.
        VideoError: a video is unreadable, corrupt or unsupported.
        CalibrationError: the calibration file is malformed.
    """
    path = Path(path)
    if path.is_dir():
        if (path / SESSION_FILE).is_file():
            return _load_session_file(path / SESSION_FILE, cache_dir)
        videos = find_camera_videos(path)
        cameras = [CameraSource(name, os.path.relpath(video, path)) for name, video in videos.items()]
        calib_path = path / CALIBRATION_FILE
        calibration = load_calibration(calib_path) if calib_path.is_file() else None
        return _assemble(cameras, path, calibration, calib_path, cache_dir=cache_dir)
    if not path.exists():
        raise FileNotFoundError(f"session not found: {path}")
    if path.suffix.lower() == ".toml":
        return _load_session_file(path, cache_dir)
    raise SessionError(f"{path}: not a session (give a folder of camera videos or a "
                       f"{SESSION_FILE} file)")


def read_session_file(path: str | os.PathLike) -> dict[str, Any]:
    """Parse and validate a session file's keys (no video is opened)."""
    path = Path(path)
    data = read_toml(path, "session", SessionError, missing=FileNotFoundError)
    unknown = set(data) - _SESSION_KEYS
    if unknown:
        raise SessionError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(_SESSION_KEYS)}")
    cams = data.get("cameras")
    if not isinstance(cams, list) or not cams or not all(isinstance(c, dict) for c in cams):
        raise SessionError(f"{path}: needs one or more [[cameras]] tables with name and video")
    for k, cam in enumerate(cams):
        missing = {"name", "video"} - set(cam)
        if missing:
            raise SessionError(f"{path}: [[cameras]] #{k + 1} lacks {sorted(missing)}")
        extra = set(cam) - _CAMERA_KEYS
        if extra:
            raise SessionError(f"{path}: [[cameras]] #{k + 1} ({cam['name']}) has unknown keys "
                               f"{sorted(extra)}; allowed: {sorted(_CAMERA_KEYS)}")
        offset = cam.get("frame_offset", 0)
        if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise SessionError(f"{path}: camera {cam['name']!r}: frame_offset must be an "
                               f"integer >= 0, got {offset!r}")
    names = [str(c["name"]) for c in cams]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SessionError(f"{path}: camera names repeat: {dupes}")
    if "n_frames" in data and (not isinstance(data["n_frames"], int) or data["n_frames"] < 1):
        raise SessionError(f"{path}: n_frames must be an integer >= 1, got {data['n_frames']!r}")
    if "strict" in data and not isinstance(data["strict"], bool):
        raise SessionError(f"{path}: strict must be true or false, got {data['strict']!r}")
    if "fps" in data and (not isinstance(data["fps"], (int, float)) or not data["fps"] > 0):
        raise SessionError(f"{path}: fps must be a number > 0, got {data['fps']!r}")
    return data


def _load_session_file(path: Path, cache_dir) -> Session:
    data = read_session_file(path)
    root = path.parent
    cameras = [CameraSource(str(c["name"]), str(c["video"]), int(c.get("frame_offset", 0)))
               for c in data["cameras"]]
    calibration = None
    calib_source: Path | None = None
    calib = data.get("calibration")
    if isinstance(calib, str):
        calib_source = Path(calib) if Path(calib).is_absolute() else root / calib
        calibration = load_calibration(calib_source)
    elif isinstance(calib, dict):
        calib_source = path
        try:
            calibration = CameraGroup.from_dict(calib)
        except CalibrationError as exc:
            raise CalibrationError(f"{path} [calibration]: {exc}") from None
    elif calib is not None:
        raise SessionError(f"{path}: calibration must be a path or a [calibration] table")
    return _assemble(cameras, root, calibration, calib_source, fps=data.get("fps"),
                     n_frames=data.get("n_frames"), strict=bool(data.get("strict", False)),
                     source=path, cache_dir=cache_dir)


def _assemble(cameras: list[CameraSource], root: Path, calibration: CameraGroup | None,
              calib_source: Path | None, *, fps: float | None = None, n_frames: int | None = None,
              strict: bool = False, source: Path | None = None, cache_dir=None) -> Session:
    """Check cameras against their videos and calibration; decide n_frames; collect notes."""
    where = source if source is not None else root
    notes: list[str] = []
    indices: list[VideoIndex] = []
    for cam in cameras:
        video = cam.video_path(root)
        if not video.is_file():
            raise FileNotFoundError(f"{where}: camera {cam.name!r}: video not found: {video}")
        index = load_index(video, cache_dir)
        indices.append(index)
        notes.extend(f"camera {cam.name!r} ({video.name}): {p}" for p in index.problems)

    # Frame rates must agree (a rate mismatch cannot be fixed by trimming).
    rates = [ix.fps for ix in indices]
    if any(not math.isclose(r, rates[0], rel_tol=_FPS_RTOL) for r in rates):
        listing = ", ".join(f"{c.video_path(root).name}: {r:g} fps" for c, r in zip(cameras, rates))
        raise SessionError(f"{where}: cameras have different frame rates ({listing}); "
                           "re-encode them to a common rate or check the recordings")
    video_fps = float(np.median(rates))
    if fps is not None and not math.isclose(float(fps), video_fps, rel_tol=_FPS_RTOL):
        notes.append(f"fps {float(fps):g} from {where.name} overrides the videos' {video_fps:g} fps")
    session_fps = float(fps) if fps is not None else video_fps

    available = []
    for cam, index in zip(cameras, indices):
        if cam.frame_offset:
            notes.append(f"camera {cam.name!r}: frame_offset {cam.frame_offset} "
                         f"(session frame 0 = video frame {cam.frame_offset})")
        left = index.n_frames - cam.frame_offset
        if left < 1:
            raise SessionError(f"{where}: camera {cam.name!r}: frame_offset {cam.frame_offset} "
                               f"is past the end of {cam.video_path(root).name} "
                               f"({index.n_frames} frames)")
        available.append(left)
    counts = ", ".join(f"{c.name} {a}" for c, a in zip(cameras, available))
    shortest = min(available)
    if n_frames is not None:
        if n_frames > shortest:
            cam = cameras[available.index(shortest)]
            raise SessionError(f"{where}: n_frames = {n_frames} but camera {cam.name!r} has only "
                               f"{shortest} frames after its offset (frames per camera: {counts}); "
                               f"set n_frames = {shortest} (or remove it to trim to the shortest "
                               "camera), or check that camera's video and frame_offset")
        if n_frames < max(available):
            notes.append(f"n_frames = {n_frames} set by {where.name} (frames per camera: {counts})")
        total = int(n_frames)
    elif len(set(available)) > 1:
        if strict:
            raise SessionError(f"{where}: cameras have different frame counts ({counts}) and "
                               "strict = true; fix the videos, set frame_offset/n_frames, or "
                               "set strict = false to trim to the shortest")
        total = shortest
        notes.append(f"trimmed to {total} frames, the shortest camera (frames per camera: {counts})")
    else:
        total = shortest

    if calibration is not None:
        calibration = _match_calibration(calibration, cameras, indices, calib_source or where)
    for note in notes:
        log.warning("%s: %s", where, note)
    return Session(cameras=cameras, fps=session_fps, n_frames=total, calibration=calibration,
                   root=root, notes=notes)


def _match_calibration(calibration: CameraGroup, cameras: list[CameraSource],
                       indices: list[VideoIndex], source: Path) -> CameraGroup:
    names = [c.name for c in cameras]
    calib_names = calibration.names
    dupes = sorted({n for n in calib_names if calib_names.count(n) > 1})
    if dupes:
        raise SessionError(f"{source}: the calibration names cameras {dupes} more than once")
    no_video = [n for n in calib_names if n not in names]
    no_calib = [n for n in names if n not in calib_names]
    if no_video or no_calib:
        parts = []
        if no_calib:
            parts.append(f"cameras without calibration: {no_calib}")
        if no_video:
            parts.append(f"calibrated cameras without video: {no_video}")
        raise SessionError(f"{source}: calibration cameras {calib_names} do not match the "
                           f"video cameras {names} ({'; '.join(parts)}); rename the videos or "
                           "the calibration's camera names so they match")
    matched = calibration.subset(names)
    for cam, index in zip(matched, indices):
        w, h = cam.size
        if w and h and (w, h) != (index.width, index.height):
            raise SessionError(f"{source}: camera {cam.name!r} is calibrated for {w}x{h} px but "
                               f"its video is {index.width}x{index.height} px")
    return matched


def save_session_file(session: Session, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``session`` as a ``session.toml`` (atomically).

    Video paths under the file's folder are written relative to it (others absolute); ``n_frames`` is written
    so a trim is kept; the calibration (if any) is written inline as a ``[calibration]`` table
    in the anipose layout.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = Path(path)
    check_overwrite(path, overwrite)
    base = path.parent.resolve()
    cams = []
    for cam in session.cameras:
        video = cam.video_path(session.root).resolve()
        # Relative when the video lies under the file's folder, so the folder can move.
        rel = video.relative_to(base).as_posix() if video.is_relative_to(base) else video.as_posix()
        cams.append({"name": cam.name, "video": rel, "frame_offset": int(cam.frame_offset)})
    data: dict[str, Any] = {"fps": float(session.fps), "n_frames": int(session.n_frames),
                            "cameras": cams}
    if session.calibration is not None:
        data["calibration"] = _toml_safe(session.calibration.to_dict())
    atomic_write_text(path, tomli_w.dumps(data))
    return path


@attrs.define(eq=False)
class SessionVideo(FrameArray):
    """One camera's video as seen on the session's time axis (napari-ready lazy array).

    ``video[f]`` is the camera's video frame ``f + frame_offset``; ``len(video) == n_frames``.
    """

    reader: VideoReader
    frame_offset: int
    n_frames: int
    name: str = ""

    @property
    def height(self) -> int:
        return self.reader.height

    @property
    def width(self) -> int:
        return self.reader.width

    @property
    def gray(self) -> bool:
        return self.reader.gray

    def read(self, index: int) -> np.ndarray:
        """Session frame ``index`` (uint8, ``(H, W)`` or ``(H, W, 3)``)."""
        return self.reader.read(self._frame_index(index) + self.frame_offset)

    def close(self) -> None:
        self.reader.close()


def open_session_videos(session: Session, cache_dir: str | os.PathLike | None = None,
                        cache_frames: int = 64) -> list[SessionVideo]:
    """One :class:`SessionVideo` per camera, in session order."""
    return [
        SessionVideo(VideoReader(path, cache_dir=cache_dir, cache_frames=cache_frames),
                     cam.frame_offset, session.n_frames, cam.name)
        for cam, path in zip(session.cameras, session.video_paths())
    ]
