"""Small hand-built multi-camera QD fixtures for the pose tests (no simulator needed).

A 12-keypoint mouse template walks a smooth loop in a 400 mm arena, seen by ``n_cameras``
cameras on a ring (``look_at``); images are rendered as Gaussian dots on a dim body blob with
sensor noise. Everything is deterministic for a given seed.
"""

from __future__ import annotations

import numpy as np

from napari_behaviorvlm.core.pose import Source
from napari_behaviorvlm.core.project import Project
from napari_behaviorvlm.core.session import CameraSource, Session
from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton
from napari_behaviorvlm.geometry.camera import Camera, CameraGroup, look_at

# keypoint template in the body frame (mm): x forward, y left, z up
TEMPLATE = np.array([
    [38, 9, 22], [38, -9, 22],                       # ears
    [25, 0, 28], [5, 0, 30], [-18, 0, 26],           # back
    [22, 12, 2], [22, -12, 2], [-15, 14, 2], [-15, -14, 2],  # paws
    [-32, 0, 14], [-55, 0, 6], [-80, 0, 3],          # tail
], dtype=np.float64)


def make_group(n_cameras: int = 4, width: int = 320, height: int = 240) -> CameraGroup:
    cams = []
    f = 0.9 * width
    for i in range(n_cameras):
        ang = 2 * np.pi * i / n_cameras + 0.3
        pos = [420 * np.cos(ang), 420 * np.sin(ang), 320 + 40 * (i % 2)]
        rvec, tvec = look_at(pos, [0, 0, 20])
        k = [[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]]
        cams.append(Camera(f"cam{i}", (width, height), k, np.zeros(5), rvec, tvec))
    return CameraGroup(cams)


def make_motion(n_frames: int, n_mice: int = 1, seed: int = 0) -> np.ndarray:
    """(F, M, K, 3) mm ground truth."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n_frames, n_mice, len(TEMPLATE), 3))
    for m in range(n_mice):
        t = np.arange(n_frames) / 30.0
        phase = rng.uniform(0, 2 * np.pi)
        r = 90 + 30 * m
        ang = phase + 0.6 * t * (1 if m == 0 else -1)
        cx, cy = r * np.cos(ang), r * np.sin(ang)
        heading = ang + np.pi / 2 * (1 if m == 0 else -1)
        for fi in range(n_frames):
            c, s = np.cos(heading[fi]), np.sin(heading[fi])
            rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
            body = TEMPLATE.copy()
            gait = 6 * np.sin(2 * np.pi * 3 * t[fi] + np.array([0, np.pi, np.pi, 0]))
            body[5:9, 0] += gait
            body[9:, 1] += 8 * np.sin(2 * np.pi * 0.7 * t[fi] + np.array([0, 1, 2]))
            out[fi, m] = body @ rot.T + [cx[fi], cy[fi], 0]
    return out


def render(group: CameraGroup, points3d: np.ndarray, frame: int, camera: int, seed: int = 0,
           noise: float = 3.0) -> np.ndarray:
    cam = group[camera]
    w, h = cam.size
    pts = cam.project(points3d[frame].reshape(-1, 3))
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.full((h, w), 20.0)
    centre = np.nanmean(pts, axis=0)
    img += 25 * np.exp(-(((xx - centre[0]) / 30) ** 2 + ((yy - centre[1]) / 20) ** 2))
    for x, y in pts:
        if np.isfinite(x) and -5 < x < w + 5 and -5 < y < h + 5:
            x0, x1 = int(max(x - 6, 0)), int(min(x + 7, w))
            y0, y1 = int(max(y - 6, 0)), int(min(y + 7, h))
            img[y0:y1, x0:x1] += 160 * np.exp(-((xx[y0:y1, x0:x1] - x) ** 2
                                                + (yy[y0:y1, x0:x1] - y) ** 2) / (2 * 1.4 ** 2))
    rng = np.random.default_rng(seed * 100003 + frame * 101 + camera)
    img += rng.normal(0, noise, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_project(n_cameras=4, n_frames=40, n_mice=1, seeds=(0, 20, 39), seed=0):
    """(project, truth3d, frame_source): a project with seed labels and no videos."""
    group = make_group(n_cameras)
    truth = make_motion(n_frames, n_mice, seed)
    session = Session(cameras=[CameraSource(c.name, f"{c.name}.mp4") for c in group], fps=30,
                      n_frames=n_frames, calibration=group)
    project = Project.new(session, default_qd_mouse_skeleton(),
                          individuals=[f"mouse{i}" for i in range(n_mice)])
    truth2d = group.project(truth)  # (C, F, M, K, 2)
    for f in seeds:
        for c in range(n_cameras):
            for m in range(n_mice):
                for k in range(truth.shape[2]):
                    project.poses.set_label(c, f, m, k, truth2d[c, f, m, k], source=Source.SEED)
    cache: dict = {}

    def source(camera: int, frame: int) -> np.ndarray:
        key = (camera, frame)
        if key not in cache:
            cache[key] = render(group, truth, frame, camera, seed)
        return cache[key]

    return project, truth, source
