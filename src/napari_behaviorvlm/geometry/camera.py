"""Pinhole cameras with OpenCV distortion, and the anipose ``calibration.toml`` format.

Conventions (the same as anipose and OpenCV):

- ``matrix`` (3, 3) intrinsics in px; ``dist`` (5,) OpenCV coefficients ``k1 k2 p1 p2 k3``.
- ``rvec`` (3,) Rodrigues rotation and ``tvec`` (3,) translation **world -> camera**:
  ``X_cam = R @ X_world + t``; world units are millimetres.
- ``size`` is ``(width, height)`` in px.
- Image coordinates: x to the right, y down, origin at the top-left pixel's centre.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import cv2
import numpy as np


import tomli_w

__all__ = [
    "CalibrationError", "Camera", "CameraGroup", "RigArrays", "camera_ring", "load_calibration",
    "UNDISTORT_CRITERIA", "look_at", "rig_arrays", "save_calibration", "undistort_points",
]


log = logging.getLogger(__name__)


class CalibrationError(ValueError):
    """A calibration file or object is unreadable, inconsistent or implausible."""


def _vec(n: int):
    def convert(value) -> np.ndarray:
        arr = np.asarray(value, dtype=np.float64).reshape(-1)
        if arr.size != n:
            raise CalibrationError(f"expected {n} values, got {arr.size}")
        return arr

    return convert


def _matrix(value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (3, 3):
        raise CalibrationError(f"camera matrix must be 3x3, got shape {arr.shape}")
    return arr


def _dist(value) -> np.ndarray:
    arr = np.zeros(5)
    values = np.asarray(value, dtype=np.float64).reshape(-1)
    if values.size > 5:
        raise CalibrationError(f"expected at most 5 distortion coefficients, got {values.size}")
    arr[: values.size] = values
    return arr


@functools.lru_cache(maxsize=256)
def _radial_limit(k1: float, k2: float, k3: float) -> float:
    """See :meth:`Camera.distortion_limit` (cached: undistortion asks for it on every call)."""
    r = np.linspace(0.0, 4.0, 4001)
    r_d = r * (1 + r**2 * (k1 + r**2 * (k2 + r**2 * k3)))
    falling = np.flatnonzero(np.diff(r_d) <= 0)
    return float(r_d[falling[0]]) if falling.size else math.inf


@functools.lru_cache(maxsize=1024)
def _rotation(rvec: tuple[float, float, float]) -> np.ndarray:
    """Read-only rotation matrix of a Rodrigues vector (cached: projection asks for it on
    every call, ~100,000 times per 500 two-mouse frames)."""
    rotation = cv2.Rodrigues(np.array(rvec, dtype=np.float64))[0]
    rotation.flags.writeable = False
    return rotation


UNDISTORT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12)
"""Iterations of OpenCV's point undistortion: 50 steps or 1e-12 normalised units."""


def undistort_points(pixels: np.ndarray, matrix: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Normalised image coordinates ``(N, 1, 2)`` of pixels ``(N, 1, 2)`` under the camera
    ``matrix`` (3, 3) and distortion ``dist``, iterated to :data:`UNDISTORT_CRITERIA`.

    OpenCV 4 takes the criteria in ``undistortPointsIter``; OpenCV 5 dropped that function and
    takes them in ``undistortPoints``: both are supported."""
    if hasattr(cv2, "undistortPointsIter"):
        return cv2.undistortPointsIter(pixels, matrix, dist, None, None, UNDISTORT_CRITERIA)
    return cv2.undistortPoints(pixels, matrix, dist, criteria=UNDISTORT_CRITERIA)


@attrs.frozen(eq=False)
class RigArrays:
    """The parameters of a list of cameras stacked for vectorized work (read-only arrays).

    Attributes:
        rotation_t: ``(C, 3, 3)`` transposed world -> camera rotations (``X_cam = X R^T + t``).
        tvec: ``(C, 1, 3)`` mm translations.
        focal, principal: ``(C, 1)`` pairs ``(fx, fy)`` and ``(cx, cy)`` px, each as two arrays.
        dist: five ``(C, 1)`` arrays ``k1 k2 p1 p2 k3``.
        origin: ``(3,)`` mm world centre of the cameras, and ``scale`` (mm) their mean distance
            to it: the conditioning of triangulation.
        conditioned: ``(C, 3, 4)`` ``[R | t]`` acting on conditioned homogeneous points
            ``((X - origin) / scale, 1)``.
    """

    rotation_t: np.ndarray
    tvec: np.ndarray
    focal: tuple[np.ndarray, np.ndarray]
    principal: tuple[np.ndarray, np.ndarray]
    dist: tuple[np.ndarray, ...]
    origin: np.ndarray
    scale: float
    conditioned: np.ndarray


# rig_arrays' results by the cameras' parameters
_RIG_ARRAYS: dict[bytes, RigArrays] = {}


def rig_arrays(cameras: Sequence[Camera]) -> RigArrays:
    """:class:`RigArrays` of ``cameras``, kept per set of camera parameters (the labeling
    projects and triangulates ~100,000 times per run with the same cameras; a camera whose
    parameters change gets new arrays)."""
    key = b"".join(cam.rvec.tobytes() + cam.tvec.tobytes() + cam.matrix.tobytes()
                   + cam.dist.tobytes() for cam in cameras)
    found = _RIG_ARRAYS.get(key)
    if found is None:
        rotation = np.stack([cam.rotation for cam in cameras])
        matrix = np.stack([cam.matrix for cam in cameras])
        centers = np.stack([cam.center for cam in cameras])
        origin = centers.mean(axis=0)
        scale = float(np.linalg.norm(centers - origin, axis=1).mean())
        scale = scale if scale > 1e-9 else 1.0
        conditioned = np.stack([np.hstack([cam.rotation * scale,
                                           (cam.rotation @ origin + cam.tvec)[:, None]])
                                for cam in cameras])
        arrays = [rotation.transpose(0, 2, 1), np.stack([cam.tvec for cam in cameras])[:, None],
                  matrix[:, 0, 0, None], matrix[:, 1, 1, None],
                  matrix[:, 0, 2, None], matrix[:, 1, 2, None],
                  *np.stack([cam.dist for cam in cameras]).T[..., None], origin, conditioned]
        for arr in arrays:
            arr.flags.writeable = False
        rot_t, tvec, fx, fy, cx, cy, k1, k2, p1, p2, k3, origin, conditioned = arrays
        found = RigArrays(rot_t, tvec, (fx, fy), (cx, cy), (k1, k2, p1, p2, k3), origin, scale,
                          conditioned)
        if len(_RIG_ARRAYS) >= 64:
            _RIG_ARRAYS.clear()
        _RIG_ARRAYS[key] = found
    return found


def _project(cameras: Sequence[Camera], points: np.ndarray) -> np.ndarray:
    """World points (..., 3) mm -> distorted pixels (C, ..., 2) in each camera, all at once.

    OpenCV's pinhole model with ``k1 k2 p1 p2 k3`` distortion, as ``cv2.projectPoints``
    computes it (the camera matrix's skew is ignored there too); NaN for NaN inputs and for
    points at or behind a camera's centre plane.
    """
    rig = rig_arrays(cameras)
    points = np.asarray(points, dtype=np.float64)
    cam = np.matmul(points.reshape(-1, 3), rig.rotation_t) + rig.tvec  # (C, N, 3)
    depth = cam[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        x = cam[..., 0] / depth
        y = cam[..., 1] / depth
    k1, k2, p1, p2, k3 = rig.dist
    r2 = x * x + y * y
    radial = 1.0 + r2 * (k1 + r2 * (k2 + r2 * k3))
    xy2 = 2.0 * x * y
    out = np.empty(cam.shape[:2] + (2,))
    (fx, fy), (cx, cy) = rig.focal, rig.principal
    out[..., 0] = (x * radial + p1 * xy2 + p2 * (r2 + 2.0 * x * x)) * fx + cx
    out[..., 1] = (y * radial + p1 * (r2 + 2.0 * y * y) + p2 * xy2) * fy + cy
    out[~(depth > 1e-9)] = np.nan
    return out.reshape((len(cameras),) + points.shape[:-1] + (2,))


@attrs.define(eq=False)
class Camera:
    """One calibrated camera (see module docstring for conventions)."""

    name: str
    size: tuple[int, int] = attrs.field(converter=lambda s: (int(s[0]), int(s[1])))
    matrix: np.ndarray = attrs.field(converter=_matrix)
    dist: np.ndarray = attrs.field(factory=lambda: np.zeros(5), converter=_dist)
    rvec: np.ndarray = attrs.field(factory=lambda: np.zeros(3), converter=_vec(3))
    tvec: np.ndarray = attrs.field(factory=lambda: np.zeros(3), converter=_vec(3))

    @property
    def rotation(self) -> np.ndarray:
        """(3, 3) rotation matrix world -> camera (read-only)."""
        return _rotation(tuple(self.rvec.tolist()))

    @property
    def extrinsics(self) -> np.ndarray:
        """(3, 4) ``[R | t]``."""
        return np.hstack([self.rotation, self.tvec[:, None]])

    @property
    def projection(self) -> np.ndarray:
        """(3, 4) ``K [R | t]`` (ignores distortion)."""
        return self.matrix @ self.extrinsics

    @property
    def center(self) -> np.ndarray:
        """(3,) camera centre in world coordinates (mm)."""
        return -self.rotation.T @ self.tvec

    def world_to_camera(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world mm -> (..., 3) camera-frame mm."""
        points = np.asarray(points, dtype=np.float64)
        return points @ self.rotation.T + self.tvec

    def project(self, points: np.ndarray) -> np.ndarray:
        """Project world points (..., 3) mm to distorted pixel coordinates (..., 2).

        NaN inputs give NaN outputs. Points behind the camera give NaN.
        """
        return _project([self], points)[0]

    def distortion_limit(self) -> float:
        """Largest distorted normalized radius the radial model reaches (inf if it never folds).

        The radial model ``r_d = r (1 + k1 r^2 + k2 r^4 + k3 r^6)`` stops increasing at some
        radius for strong barrel distortion; pixels farther from the principal point than this
        (in normalized units) have no undistorted preimage. Tangential terms are ignored.
        """
        k1, k2, _, _, k3 = self.dist
        return _radial_limit(float(k1), float(k2), float(k3))

    def undistort(self, points: np.ndarray) -> np.ndarray:
        """Distorted pixels (..., 2) -> normalized, undistorted image coordinates (..., 2).

        NaN for NaN inputs and for pixels outside the distortion model's invertible domain
        (beyond :meth:`distortion_limit`), where no undistorted point maps to the pixel.
        """
        points = np.asarray(points, dtype=np.float64)
        flat = points.reshape(-1, 2)
        out = np.full_like(flat, np.nan)
        ok = np.isfinite(flat).all(axis=1)
        limit = self.distortion_limit()
        if math.isfinite(limit):
            radius = np.hypot((flat[:, 0] - self.matrix[0, 2]) / self.matrix[0, 0],
                              (flat[:, 1] - self.matrix[1, 2]) / self.matrix[1, 1])
            ok &= radius < limit
        if ok.any():
            und = undistort_points(flat[ok].reshape(-1, 1, 2), self.matrix, self.dist)
            out[ok] = und.reshape(-1, 2)
        return out.reshape(points.shape)

    def to_dict(self) -> dict[str, Any]:
        """anipose ``calibration.toml`` section for this camera."""
        return {
            "name": self.name,
            "size": [int(self.size[0]), int(self.size[1])],
            "matrix": self.matrix.tolist(),
            "distortions": self.dist.tolist(),
            "rotation": self.rvec.tolist(),
            "translation": self.tvec.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Camera:
        try:
            return cls(
                name=str(data["name"]),
                size=data["size"],
                matrix=data["matrix"],
                dist=data.get("distortions", np.zeros(5)),
                rvec=data.get("rotation", np.zeros(3)),
                tvec=data.get("translation", np.zeros(3)),
            )
        except KeyError as exc:
            raise CalibrationError(f"camera section lacks the key {exc.args[0]!r}") from None


@attrs.define(eq=False)
class CameraGroup:
    """Several calibrated cameras sharing one world frame (mm)."""

    cameras: list[Camera] = attrs.field(converter=list)
    metadata: dict[str, Any] = attrs.field(factory=dict)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def __len__(self) -> int:
        return len(self.cameras)

    def __iter__(self):
        return iter(self.cameras)

    def __getitem__(self, key: int | str) -> Camera:
        if isinstance(key, str):
            for cam in self.cameras:
                if cam.name == key:
                    return cam
            raise KeyError(f"no camera named {key!r}; cameras are {self.names}")
        return self.cameras[key]

    def subset(self, names: Iterable[str]) -> CameraGroup:
        """The cameras named, in that order."""
        return CameraGroup([self[n] for n in names], dict(self.metadata))

    def project(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) mm -> pixels (C, ..., 2) in every camera (NaN for NaN inputs
        and for points behind a camera)."""
        return _project(self.cameras, points)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for i, cam in enumerate(self.cameras):
            data[f"cam_{i}"] = cam.to_dict()
        data["metadata"] = dict(self.metadata)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CameraGroup:
        sections = [k for k in data if k != "metadata" and isinstance(data[k], dict)]
        if not sections:
            raise CalibrationError("no camera sections found (expected [cam_0], [cam_1], ...)")
        cameras = []
        for key in sorted(sections, key=_section_order):
            try:
                cameras.append(Camera.from_dict(data[key]))
            except (CalibrationError, ValueError, TypeError) as exc:
                raise CalibrationError(f"[{key}]: {exc}") from None
        return cls(cameras, dict(data.get("metadata", {})))

    # sleap-io interop -------------------------------------------------------
    def to_sleap_io(self):
        """Convert to a ``sleap_io.CameraGroup`` (same names, intrinsics, extrinsics)."""
        import sleap_io as sio

        return sio.CameraGroup(
            cameras=[
                sio.Camera(
                    name=c.name, size=tuple(c.size), matrix=c.matrix.copy(), dist=c.dist.copy(),
                    rvec=c.rvec.copy(), tvec=c.tvec.copy(),
                )
                for c in self.cameras
            ],
            metadata=dict(self.metadata),
        )

    @classmethod
    def from_sleap_io(cls, group) -> CameraGroup:
        """Build from a ``sleap_io.CameraGroup``."""
        cameras = []
        for i, c in enumerate(group.cameras):
            size = c.size if c.size is not None else (0, 0)
            cameras.append(Camera(name=c.name or f"cam_{i}", size=size, matrix=c.matrix,
                                  dist=c.dist, rvec=c.rvec, tvec=c.tvec))
        return cls(cameras, dict(getattr(group, "metadata", {}) or {}))


def _section_order(key: str):
    tail = key.rsplit("_", 1)[-1]
    return (0, int(tail), key) if tail.isdigit() else (1, 0, key)


def load_calibration(path: str | Path) -> CameraGroup:
    """Read an anipose ``calibration.toml``.

    The calibration is validated on load (:func:`~napari_behaviorvlm.geometry.validation.
    validate_calibration`): each error-level issue (a copied camera, NaN, a non-positive focal
    length...) is logged as a warning naming the file; ``behaviorvlm info`` shows them all.

    Raises:
        CalibrationError: the file is missing, not TOML, or a camera section is malformed; the
            message names the file and the section.
    """
    from napari_behaviorvlm.core.tomlfile import read_toml  # core imports this module

    path = Path(path)
    data = read_toml(path, "calibration", CalibrationError)
    try:
        group = CameraGroup.from_dict(data)
    except CalibrationError as exc:
        raise CalibrationError(f"{path}: {exc}") from None
    from napari_behaviorvlm.geometry.validation import validate_calibration

    for issue in validate_calibration(group):
        if issue.severity == "error":
            log.warning("%s: %s", path, issue)
    return group


def save_calibration(group: CameraGroup, path: str | Path) -> None:
    """Write an anipose ``calibration.toml`` atomically."""
    # imported here: napari_behaviorvlm.core imports this module (Session holds a CameraGroup)
    from napari_behaviorvlm.core.atomic import atomic_write_text

    data = group.to_dict()
    data["metadata"] = _toml_safe(data["metadata"])
    atomic_write_text(path, tomli_w.dumps(data))


def _toml_safe(value):
    if isinstance(value, dict):
        return {str(k): _toml_safe(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_toml_safe(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def look_at(camera_position: Sequence[float], target: Sequence[float],
            up: Sequence[float] = (0.0, 0.0, 1.0)) -> tuple[np.ndarray, np.ndarray]:
    """Extrinsics ``(rvec, tvec)`` of a camera at ``camera_position`` looking at ``target`` (mm).

    The image y axis points along ``-up`` projected on the image plane (world up is image up).
    """
    eye = np.asarray(camera_position, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    up = np.asarray(up, dtype=np.float64)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(z, np.array([0.0, 1.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    rot = np.stack([x, y, z])
    rvec = cv2.Rodrigues(rot)[0].reshape(3)
    tvec = -rot @ eye
    return rvec, tvec


def camera_ring(n_cameras: int = 6, radius: float = 600.0, height: float = 350.0,
                target: Sequence[float] = (0.0, 0.0, 50.0), size: tuple[int, int] = (1280, 1024),
                focal: float = 900.0,
                dist: Sequence[float] = (-0.2, 0.05, 0.001, -0.001, 0.0)) -> CameraGroup:
    """A synthetic rig: ``n_cameras`` cameras on a circle around an arena, all aimed at ``target``.

    Cameras sit at ``radius`` mm from the vertical axis, evenly spaced in angle, at heights that
    alternate around ``height`` mm (+-15%) so no two views are mirror images. Principal point at
    the image centre; ``dist`` are OpenCV ``k1 k2 p1 p2 k3``. Used by tests and benchmarks.
    """
    cameras = []
    for i in range(n_cameras):
        angle = 2.0 * math.pi * i / n_cameras
        z = height * (1.15 if i % 2 else 0.85)
        rvec, tvec = look_at((radius * math.cos(angle), radius * math.sin(angle), z), target)
        matrix = [[focal, 0.0, (size[0] - 1) / 2], [0.0, focal, (size[1] - 1) / 2], [0, 0, 1]]
        cameras.append(Camera(f"cam{i}", size, matrix, dist, rvec, tvec))
    return CameraGroup(cameras)
