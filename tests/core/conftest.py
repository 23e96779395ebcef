"""Fixtures for the labeling and review tests: a tiny calibrated 3-camera project."""

from __future__ import annotations

import numpy as np
import pytest

from napari_behaviorvlm.core.project import Project
from napari_behaviorvlm.core.session import CameraSource, Session
from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton
from napari_behaviorvlm.geometry.camera import Camera, CameraGroup, look_at


def tiny_project(n_frames: int = 5, seed: int = 0) -> tuple[Project, np.ndarray]:
    """Project with 3 cameras around the origin, 12 QD keypoints, no labels; and the true
    3D points (F, 1, K, 3) mm."""
    rng = np.random.default_rng(seed)
    cams = []
    for i, angle in enumerate(np.deg2rad([0, 120, 240])):
        rvec, tvec = look_at([400 * np.cos(angle), 400 * np.sin(angle), 300], [0, 0, 0])
        cams.append(Camera(name=f"cam{i}", size=(160, 120),
                           matrix=[[150, 0, 80], [0, 150, 60], [0, 0, 1]], rvec=rvec, tvec=tvec))
    group = CameraGroup(cams)
    session = Session(cameras=[CameraSource(c.name, f"{c.name}.mp4") for c in cams], fps=30,
                      n_frames=n_frames, calibration=group)
    project = Project.new(session, default_qd_mouse_skeleton())
    truth = rng.uniform(-40, 40, size=(n_frames, 1, 12, 3))
    return project, truth


@pytest.fixture
def make_tiny_project():
    """Factory: ``make_tiny_project(n_frames=5, seed=0) -> (project, truth3d (F, 1, K, 3) mm)``."""
    return tiny_project
