"""Sanity checks of a calibration: duplicate cameras and implausible values.

A calibration can load fine and still be wrong: a camera section copied from another (the
``sleap-anipose`` example ships ``side`` as a copy of ``top``), a negative focal length, a
principal point off the image, distortion so strong that the model folds back inside the image,
two cameras at one position, NaN. :func:`validate_calibration` names each such problem;
:func:`calibration_quality` summarizes a calibration for ``behaviorvlm info``.
"""

from __future__ import annotations

import math
from itertools import combinations
from typing import Any

import attrs
import numpy as np

from napari_behaviorvlm.geometry.camera import Camera, CameraGroup

__all__ = ["CalibrationIssue", "calibration_quality", "validate_calibration"]

# Two cameras whose centres are closer than this (mm) are at "the same position".
SAME_POSITION_MM = 5.0
# ... and, when their orientations also agree within this (degrees), duplicates.
SAME_ORIENTATION_DEG = 0.5
# Radial distortion factor allowed at the image corners (1 = none).
RADIAL_FACTOR_RANGE = (0.3, 3.0)
# Below this share of the principal point -> farthest corner distance, a distortion model that
# folds back is an error (most of the image cannot be undistorted), above it a warning.
MIN_INVERTIBLE_SHARE = 0.5


@attrs.define(frozen=True)
class CalibrationIssue:
    """One problem found in a calibration.

    Attributes:
        cameras: Names of the camera(s) concerned.
        severity: ``"error"`` (the calibration is wrong for these cameras) or ``"warning"``
            (suspicious; check it).
        message: What is wrong and what to do.
    """

    cameras: tuple[str, ...] = attrs.field(converter=tuple)
    severity: str = attrs.field(validator=attrs.validators.in_(("error", "warning")))
    message: str

    @property
    def camera(self) -> str:
        """The first camera concerned."""
        return self.cameras[0]

    def __str__(self) -> str:
        return f"{self.severity}: {', '.join(self.cameras)}: {self.message}"


def _finite(cam: Camera) -> bool:
    return all(np.isfinite(v).all() for v in (cam.matrix, cam.dist, cam.rvec, cam.tvec))


def _corner_radius(cam: Camera) -> float:
    """Largest normalized (distorted) distance of an image corner from the principal point."""
    width, height = cam.size
    fx, fy = cam.matrix[0, 0], cam.matrix[1, 1]
    cx, cy = cam.matrix[0, 2], cam.matrix[1, 2]
    xs, ys = np.array([0.0, width]), np.array([0.0, height])
    return float(np.max(np.hypot((xs[:, None] - cx) / fx, (ys[None, :] - cy) / fy)))


def _radial_factor_range(cam: Camera, r_max: float) -> tuple[float, float]:
    """Min and max radial distortion factor ``1 + k1 r^2 + k2 r^4 + k3 r^6`` for r <= r_max."""
    r2 = np.linspace(0.0, r_max, 64) ** 2
    k1, k2, _, _, k3 = cam.dist
    factor = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
    return float(factor.min()), float(factor.max())


def _angle_deg(a: Camera, b: Camera) -> float:
    rel = a.rotation @ b.rotation.T
    return math.degrees(math.acos(float(np.clip((np.trace(rel) - 1) / 2, -1.0, 1.0))))


def _camera_issues(cam: Camera) -> list[CalibrationIssue]:
    issues: list[CalibrationIssue] = []

    def add(severity: str, message: str) -> None:
        issues.append(CalibrationIssue((cam.name,), severity, message))

    if not _finite(cam):
        add("error", "non-finite values (NaN or inf) in the intrinsics, distortion or extrinsics")
        return issues
    width, height = cam.size
    if width <= 0 or height <= 0:
        add("error", f"image size {width}x{height} px is not positive")
        return issues
    fx, fy = cam.matrix[0, 0], cam.matrix[1, 1]
    if fx <= 0 or fy <= 0:
        add("error", f"focal length must be positive, got fx={fx:.4g}, fy={fy:.4g} px")
        return issues
    if max(fx, fy) / min(fx, fy) > 1.5:
        add("warning", f"fx={fx:.1f} and fy={fy:.1f} px differ by more than 50%")
    if not 0.05 * max(width, height) < fx < 50 * max(width, height):
        add("warning", f"focal length {fx:.1f} px is implausible for a {width}x{height} image")
    cx, cy = cam.matrix[0, 2], cam.matrix[1, 2]
    if not (0 <= cx <= width and 0 <= cy <= height):
        add("error", f"principal point ({cx:.1f}, {cy:.1f}) px lies outside the "
                     f"{width}x{height} image")
    elif abs(cx - width / 2) > 0.25 * width or abs(cy - height / 2) > 0.25 * height:
        add("warning", f"principal point ({cx:.1f}, {cy:.1f}) px is far from the image centre")
    corner = _corner_radius(cam)
    limit = cam.distortion_limit()
    if limit < corner:
        share = limit / corner
        add("error" if share < MIN_INVERTIBLE_SHARE else "warning",
            f"the distortion model folds back at {100 * share:.0f}% of the way to the farthest "
            f"image corner (k1 k2 k3 = {cam.dist[0]:.3g} {cam.dist[1]:.3g} {cam.dist[4]:.3g}): "
            "pixels beyond cannot be undistorted and count as missing views")
    else:
        low, high = _radial_factor_range(cam, corner)
        if low < RADIAL_FACTOR_RANGE[0] or high > RADIAL_FACTOR_RANGE[1]:
            add("warning", f"huge radial distortion (k1 k2 k3 = {cam.dist[0]:.3g} "
                           f"{cam.dist[1]:.3g} {cam.dist[4]:.3g}): the radial factor reaches "
                           f"{low:.2f}..{high:.2f} inside the image")
    if np.abs(cam.dist[2:4]).max() > 0.1:
        add("warning", f"large tangential distortion p1={cam.dist[2]:.3g}, p2={cam.dist[3]:.3g}")
    if abs(float(np.linalg.det(cam.rotation)) - 1.0) > 1e-6:
        add("error", "the rotation is not a proper rotation")
    return issues


def validate_calibration(group: CameraGroup) -> list[CalibrationIssue]:
    """Report duplicate and implausible cameras.

    Checks: non-finite values, non-positive image size or focal length, principal point outside
    the image (error) or far from its centre (warning), a radial distortion model that folds
    back inside the image (:meth:`Camera.distortion_limit`; error below half of the distance to
    the farthest corner, else warning) or that is huge (warning), large tangential distortion,
    improper rotation, duplicate names, and for each camera pair: identical or near-identical
    cameras (same position and orientation, error, reported once as a duplicate) or two cameras
    at the same position (warning).

    Returns:
        The issues found (errors first), empty when nothing is suspicious.
    """
    issues: list[CalibrationIssue] = []
    names = group.names
    for name in sorted({n for n in names if names.count(n) > 1}):
        issues.append(CalibrationIssue((name,), "error",
                                       f"camera name {name!r} is used {names.count(name)} times"))
    if len(group) < 2:
        issues.append(CalibrationIssue(tuple(names) or ("-",), "warning",
                                       "fewer than 2 cameras: nothing can be triangulated"))
    for cam in group:
        issues.extend(_camera_issues(cam))
    for a, b in combinations(group.cameras, 2):
        if not (_finite(a) and _finite(b)):
            continue
        distance = float(np.linalg.norm(a.center - b.center))
        if distance >= SAME_POSITION_MM:
            continue
        angle = _angle_deg(a, b)
        if angle < SAME_ORIENTATION_DEG:
            identical = (np.array_equal(a.matrix, b.matrix) and np.array_equal(a.dist, b.dist)
                         and np.array_equal(a.rvec, b.rvec) and np.array_equal(a.tvec, b.tvec))
            what = "identical to" if identical else "a near-duplicate of"
            issues.append(CalibrationIssue(
                (a.name, b.name), "error",
                f"camera {b.name} is {what} camera {a.name} (centres {distance:.2f} mm apart, "
                f"orientations {angle:.2f} deg apart): one section was probably copied from the "
                "other; recalibrate (behaviorvlm calibrate) or fix the file"))
        else:
            issues.append(CalibrationIssue(
                (a.name, b.name), "warning",
                f"cameras {a.name} and {b.name} sit at the same position ({distance:.2f} mm "
                f"apart) with different orientations ({angle:.1f} deg)"))
    return sorted(issues, key=lambda issue: issue.severity != "error")  # errors first, stable


def calibration_quality(group: CameraGroup) -> dict[str, Any]:
    """A compact, JSON-ready summary of a calibration.

    Returns:
        ``n_cameras``; ``cameras``: per camera ``size``, ``focal_px``, ``principal_offset_px``
        (distance of the principal point from the image centre), ``k1``, ``center_mm``,
        ``nearest_camera_mm`` and ``invertible_share`` (share of the way to the farthest image
        corner where pixels can be undistorted, 1 = everywhere); ``baseline_mm`` (min and max
        distance between camera centres); ``reprojection_median_px`` when the file's metadata
        records it; ``errors``, ``warnings`` (counts), ``issues`` (strings) and ``ok`` (no
        errors).
    """
    issues = validate_calibration(group)
    finite = [cam for cam in group if _finite(cam)]
    centers = {cam.name: cam.center for cam in finite}
    cams: dict[str, Any] = {}
    for cam in group:
        width, height = cam.size
        others = [float(np.linalg.norm(centers[cam.name] - c)) for n, c in centers.items()
                  if n != cam.name and cam.name in centers]
        cams[cam.name] = {
            "size": [width, height],
            "focal_px": float(cam.matrix[0, 0]),
            "principal_offset_px": float(np.hypot(cam.matrix[0, 2] - (width - 1) / 2,
                                                  cam.matrix[1, 2] - (height - 1) / 2)),
            "k1": float(cam.dist[0]),
            "center_mm": [float(v) for v in centers[cam.name]] if cam.name in centers else None,
            "nearest_camera_mm": min(others) if others else None,
            "invertible_share": (min(1.0, cam.distortion_limit() / _corner_radius(cam))
                                 if _finite(cam) and width > 0 and height > 0 else None),
        }
    dists = [float(np.linalg.norm(centers[a] - centers[b])) for a, b in combinations(centers, 2)]
    summary: dict[str, Any] = {
        "n_cameras": len(group),
        "cameras": cams,
        "baseline_mm": {"min": min(dists), "max": max(dists)} if dists else None,
        "errors": sum(i.severity == "error" for i in issues),
        "warnings": sum(i.severity == "warning" for i in issues),
        "issues": [str(i) for i in issues],
    }
    for key in ("error_median_px", "error"):
        value = group.metadata.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            summary["reprojection_median_px" if key == "error_median_px"
                    else "reprojection_error_px"] = float(value)
            break
    summary["ok"] = summary["errors"] == 0
    return summary
