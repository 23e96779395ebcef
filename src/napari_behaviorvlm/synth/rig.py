"""A randomized, realistic camera rig around the synthetic arena."""

from __future__ import annotations

import math

import numpy as np

from napari_behaviorvlm.geometry.camera import Camera, CameraGroup, look_at

__all__ = ["make_rig"]


def make_rig(n_cameras: int, width: int, height: int, arena_size: float,
             rng: np.random.Generator) -> CameraGroup:
    """``n_cameras`` calibrated cameras named ``cam0``... on a ring around a square arena.

    Cameras stand 1.45-1.7 arena sides from the centre, alternately high (52-62 deg
    elevation) and low (32-40 deg), all aimed near the arena centre. The focal length is fitted
    so the whole arena floor (and 60 mm above it) fills ~95% of the image: at 640x480, f is
    ~500-750 px. Principal point within a few px of the centre; mild barrel
    distortion (k1 -0.05..-0.15, k2 0.01..0.06, tiny tangential terms).
    """
    half = arena_size / 2.0
    corners = np.array([[sx * half, sy * half, z] for sx in (-1, 1) for sy in (-1, 1) for z in (0.0, 60.0)])
    cameras = []
    for i in range(n_cameras):
        azimuth = 2.0 * math.pi * i / n_cameras + rng.uniform(-0.12, 0.12)
        elevation = math.radians(rng.uniform(52.0, 62.0) if i % 2 == 0 else rng.uniform(32.0, 40.0))
        distance = arena_size * rng.uniform(1.45, 1.7)
        eye = np.array([
            distance * math.cos(elevation) * math.cos(azimuth),
            distance * math.cos(elevation) * math.sin(azimuth),
            distance * math.sin(elevation),
        ])
        target = np.array([rng.uniform(-20, 20), rng.uniform(-20, 20), rng.uniform(0.0, 20.0)])
        rvec, tvec = look_at(eye, target)
        probe = Camera(f"cam{i}", (width, height), np.eye(3), np.zeros(5), rvec, tvec)
        cam_pts = probe.world_to_camera(corners)
        norm = np.abs(cam_pts[:, :2] / cam_pts[:, 2:3]).max(axis=0)
        focal = 0.48 * min(width / norm[0], height / norm[1]) * rng.uniform(0.97, 1.03)
        cx = (width - 1) / 2.0 + rng.uniform(-0.01, 0.01) * width
        cy = (height - 1) / 2.0 + rng.uniform(-0.01, 0.01) * height
        matrix = [[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]]
        dist = [rng.uniform(-0.15, -0.05), rng.uniform(0.01, 0.06),
                rng.uniform(-5e-4, 5e-4), rng.uniform(-5e-4, 5e-4), 0.0]
        cameras.append(Camera(f"cam{i}", (width, height), matrix, dist, rvec, tvec))
    return CameraGroup(cameras, {"generator": "napari_behaviorvlm.synth", "units": "mm"})
