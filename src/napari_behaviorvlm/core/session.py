"""Session: the synchronized cameras of one recording, their calibration, fps and frame count.

A session frame ``f`` shows camera ``c``'s video frame ``f + c.frame_offset``. ``n_frames`` is
the number of session frames every camera can show (after offsets and any explicit trim).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from napari_behaviorvlm.geometry.camera import CameraGroup

__all__ = ["CameraSource", "Session"]


@attrs.define(eq=True)
class CameraSource:
    """One camera of a session.

    Attributes:
        name: Camera name; matches the calibration's camera name.
        video: Path of the video file (absolute, or relative to the session root).
        frame_offset: Video frame shown at session frame 0 (>= 0), to synchronize cameras.
    """

    name: str
    video: str
    frame_offset: int = attrs.field(default=0, converter=int)

    def video_path(self, root: str | Path | None) -> Path:
        path = Path(self.video)
        return path if path.is_absolute() or root is None else Path(root) / path


@attrs.define(eq=False)
class Session:
    """Cameras, calibration and timing of one multi-camera recording.

    Attributes:
        cameras: Camera sources in display order (axis ``C`` of every array).
        fps: Frames per second (shared by all cameras).
        n_frames: Number of session frames.
        calibration: Calibrated cameras in the same order as ``cameras``, or None.
        root: Folder that relative video paths are resolved against.
        notes: Human-readable notes on trims/offsets applied when the session was loaded.
    """

    cameras: list[CameraSource] = attrs.field(converter=list)
    fps: float = attrs.field(converter=float)
    n_frames: int = attrs.field(converter=int)
    calibration: CameraGroup | None = None
    root: Path | None = attrs.field(default=None, converter=lambda p: None if p is None else Path(p))
    notes: list[str] = attrs.field(factory=list)

    @property
    def camera_names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def video_paths(self) -> list[Path]:
        return [c.video_path(self.root) for c in self.cameras]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (calibration inline, anipose layout). Video paths are kept as given."""
        return {
            "fps": self.fps,
            "n_frames": self.n_frames,
            "cameras": [attrs.asdict(c) for c in self.cameras],
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "root": None if self.root is None else str(self.root),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Session:
        calib = data.get("calibration")
        return cls(
            cameras=[CameraSource(**c) for c in data["cameras"]],
            fps=data["fps"],
            n_frames=data["n_frames"],
            calibration=None if calib is None else CameraGroup.from_dict(calib),
            root=data.get("root"),
            notes=data.get("notes", []),
        )
