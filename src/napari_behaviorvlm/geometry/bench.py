"""Triangulation benchmark: the vectorized DLT against a per-point loop and aniposelib.

Synthetic data: :func:`camera_ring` cameras (with lens distortion) around an arena, random 3D
points in the arena, projected to every camera, 0.3 px Gaussian noise, 5% of views missing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

from napari_behaviorvlm.geometry.camera import CameraGroup, camera_ring, undistort_points
from napari_behaviorvlm.geometry.triangulation import triangulate

__all__ = ["bench_triangulate", "per_point_triangulate"]


def per_point_triangulate(points2d: np.ndarray, group: CameraGroup) -> np.ndarray:
    """Straightforward baseline: for each point, undistort each view and solve the DLT by SVD.

    Args:
        points2d: (C, N, 2) distorted px, NaN = missing.

    Returns:
        (N, 3) world mm, NaN where fewer than 2 views.
    """
    extrinsics = [cam.extrinsics for cam in group]
    out = np.full((points2d.shape[1], 3), np.nan)
    for n in range(points2d.shape[1]):
        rows = []
        for c, cam in enumerate(group):
            pixel = points2d[c, n]
            if not np.isfinite(pixel).all():
                continue
            x, y = undistort_points(pixel.reshape(1, 1, 2), cam.matrix, cam.dist).reshape(2)
            proj = extrinsics[c]
            rows.append(x * proj[2] - proj[0])
            rows.append(y * proj[2] - proj[1])
        if len(rows) >= 4:
            _, _, vt = np.linalg.svd(np.asarray(rows))
            out[n] = vt[-1, :3] / vt[-1, 3]
    return out


def _timed_interleaved(funcs: dict[str, Callable[[], np.ndarray]], repeats: int
                       ) -> dict[str, tuple[float, np.ndarray]]:
    """Median seconds and last result of each function; repeats are interleaved (a, b, a, b, ...)
    so that a change in machine load hits every contender alike."""
    times: dict[str, list[float]] = {name: [] for name in funcs}
    results: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, func in funcs.items():
            start = time.perf_counter()
            results[name] = func()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), results[name]) for name in funcs}


def _aniposelib_group(group: CameraGroup):
    from aniposelib.cameras import Camera as AniCamera
    from aniposelib.cameras import CameraGroup as AniGroup

    return AniGroup([AniCamera(matrix=c.matrix, dist=c.dist, size=c.size, rvec=c.rvec, tvec=c.tvec,
                               name=c.name) for c in group])


def bench_triangulate(n_points: int = 100_000, n_cameras: int = 6, repeats: int = 3,
                      baseline_points: int = 2_000, seed: int = 0,
                      use_aniposelib: bool = True) -> dict:
    """Time :func:`triangulate` against the per-point baseline and aniposelib (when importable).

    The per-point baseline runs on the first ``baseline_points`` points and its rate is
    extrapolated (it is linear in the number of points). Times are medians over ``repeats``,
    with the contenders interleaved in each repeat; aniposelib (JAX) gets one untimed warm-up
    call so its JIT compilation is not counted.

    Returns:
        A JSON-ready dict: rates in points/s, speed-up ratios, max differences in mm.
    """
    rng = np.random.default_rng(seed)
    group = camera_ring(n_cameras)
    truth = rng.uniform([-150.0, -150.0, 0.0], [150.0, 150.0, 120.0], (n_points, 3))
    points2d = group.project(truth) + rng.normal(0.0, 0.3, (n_cameras, n_points, 2))
    points2d[rng.random((n_cameras, n_points)) < 0.05] = np.nan

    n_base = min(baseline_points, n_points)
    sub = np.ascontiguousarray(points2d[:, :n_base])
    funcs: dict[str, Callable[[], np.ndarray]] = {
        "ours": lambda: triangulate(points2d, group),
        "base": lambda: per_point_triangulate(sub, group),
    }
    ani_reason = None
    if use_aniposelib:
        try:
            ani_group = _aniposelib_group(group)
        except ImportError as exc:
            ani_reason = str(exc)
        else:
            ani_group.triangulate(points2d, undistort=True, progress=False)  # JIT warm-up
            funcs["ani"] = lambda: ani_group.triangulate(points2d, undistort=True, progress=False)
    timed = _timed_interleaved(funcs, repeats)
    (t_ours, ours), (t_base, base) = timed["ours"], timed["base"]
    ok = np.isfinite(ours).all(axis=1)
    result: dict = {
        "points": n_points, "cameras": n_cameras, "repeats": repeats,
        "noise_px": 0.3, "missing_view_fraction": 0.05,
        "vectorized": {"seconds": t_ours, "points_per_s": n_points / t_ours,
                       "median_error_to_truth_mm": float(np.median(
                           np.linalg.norm(ours[ok] - truth[ok], axis=1)))},
        "per_point_baseline": {
            "points_timed": n_base, "extrapolated": n_base < n_points,
            "seconds_for_timed_points": t_base, "points_per_s": n_base / t_base,
            "max_diff_mm": float(np.nanmax(np.abs(base - ours[:n_base]))),
        },
    }
    result["speedup_vs_per_point"] = result["vectorized"]["points_per_s"] / (n_base / t_base)
    if "ani" in timed:
        t_ani, ani = timed["ani"]
        both = ok & np.isfinite(ani).all(axis=1)
        result["aniposelib"] = {
            "available": True, "seconds": t_ani, "points_per_s": n_points / t_ani,
            "max_diff_mm": float(np.abs(ani[both] - ours[both]).max()),
            "median_diff_mm": float(np.median(np.abs(ani[both] - ours[both]).max(axis=1))),
            "median_error_to_truth_mm": float(np.median(
                np.linalg.norm(ani[both] - truth[both], axis=1))),
        }
        result["speedup_vs_aniposelib"] = t_ani / t_ours
    elif use_aniposelib:
        result["aniposelib"] = {"available": False, "reason": ani_reason}
    return result
