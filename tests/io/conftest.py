"""A small hand-built project for the IO tests (no simulator): 3 calibrated cameras with tiny
lossless videos, 2 mice, 4 keypoints, seed/human/model labels, NaNs, flags, 3D points and
segments. Every video frame ``i`` is a uniform grey of value ``10 * i`` (offsets included), so a
test can tell which frame was written."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest

from napari_behaviorvlm.core.pose import Flag, PoseTable, Source
from napari_behaviorvlm.core.project import Project
from napari_behaviorvlm.core.segments import Segment, SegmentTable
from napari_behaviorvlm.core.session import CameraSource, Session
from napari_behaviorvlm.core.skeleton import Skeleton
from napari_behaviorvlm.geometry.camera import Camera, CameraGroup, look_at

N_FRAMES = 20
SIZE = (64, 48)  # width, height px
OFFSETS = [0, 2, 1]


def write_test_video(path, n_frames: int, size=SIZE) -> None:
    """Lossless (FFV1) video whose frame ``i`` is a uniform grey ``10 * i``."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=30)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(n_frames):
            img = np.full((size[1], size[0], 3), (10 * i) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def make_skeleton() -> Skeleton:
    return Skeleton(
        keypoints=["ear_left", "ear_right", "back", "tail"],
        regions={"ears": ["ear_left", "ear_right"], "body": ["back", "tail"]},
        edges=[("ear_left", "back"), ("ear_right", "back"), ("back", "tail")],
        symmetry=[("ear_left", "ear_right")],
        name="tiny_mouse",
    )


def make_calibration(names) -> CameraGroup:
    cams = []
    for i, name in enumerate(names):
        angle = 2 * math.pi * i / len(names)
        rvec, tvec = look_at([300 * math.cos(angle), 300 * math.sin(angle), 250], [0, 0, 0])
        matrix = [[80.0, 0, SIZE[0] / 2], [0, 80.0, SIZE[1] / 2], [0, 0, 1]]
        cams.append(Camera(name=name, size=SIZE, matrix=matrix, rvec=rvec, tvec=tvec))
    return CameraGroup(cams)


@pytest.fixture
def small_project(tmp_path) -> Project:
    names = ["camA", "camB", "camC"]
    video_dir = tmp_path / "videos"
    video_dir.mkdir()
    cameras = []
    for name, off in zip(names, OFFSETS):
        write_test_video(video_dir / f"rec_{name}.mkv", N_FRAMES + off)
        cameras.append(CameraSource(name=name, video=f"videos/rec_{name}.mkv", frame_offset=off))
    calib = make_calibration(names)
    session = Session(cameras=cameras, fps=30.0, n_frames=N_FRAMES, calibration=calib,
                      root=tmp_path)
    skeleton = make_skeleton()
    individuals = ["mouse0", "mouse1"]
    poses = PoseTable.empty(names, N_FRAMES, individuals, skeleton.keypoints)
    rng = np.random.default_rng(0)
    pts3d = rng.uniform(-40, 40, size=(N_FRAMES, 2, 4, 3))
    pts3d[..., 2] = rng.uniform(0, 30, size=(N_FRAMES, 2, 4))
    poses.points3d[:] = pts3d
    poses.n_views[:] = 3
    proj2d = calib.project(pts3d)  # (C, F, M, K, 2)
    poses.points2d[:] = proj2d
    poses.source[:] = Source.MODEL
    poses.confidence[:] = rng.uniform(0.2, 0.99, size=poses.confidence.shape).astype(np.float32)
    poses.reproj_error[:] = rng.uniform(0, 3, size=poses.reproj_error.shape).astype(np.float32)
    for f in (0, 5):  # seed frames: every camera, both mice
        poses.source[:, f] = Source.SEED
        poses.confidence[:, f] = 1.0
        poses.reproj_error[:, f] = np.nan
    # a human correction of a model label (camB, frame 7, mouse0, ear_left) and a full human frame
    poses.set_label("camB", 7, "mouse0", "ear_left", (10.25, 20.5), Source.HUMAN)
    for k in range(4):
        poses.set_label("camC", 9, "mouse1", k, proj2d[2, 9, 1, k] + 0.5, Source.HUMAN)
    # missing labels: one keypoint, one whole animal in one view, a frame with no labels at all
    for c, f, m, k in [(0, 3, 0, 3), (1, 11, 1, 0)]:
        poses.set_label(c, f, m, k, None)
    for k in range(4):
        poses.set_label("camA", 12, "mouse1", k, None)
        for c in range(3):
            for m in range(2):
                poses.set_label(c, 15, m, k, None)
    poses.points3d[15] = np.nan
    poses.n_views[15] = 0
    # unreviewed flags on model labels
    poses.flags[0, 4, 0, 1] = Flag.HIGH_REPROJ_ERROR
    poses.flags[1, 4, 1, 2] = Flag.SWAP | Flag.JUMP
    poses.flags[2, 13, 0, 0] = Flag.LOW_MODEL_CONFIDENCE
    segments = SegmentTable([
        Segment(0, 6, "walk", subject="mouse0", source="model", score=0.8, caption="walks along"),
        Segment(7, 7, "rear", subject="mouse0", source="human"),
        Segment(3, 12, "chase", subject="mouse1", target="mouse0", source="model", score=0.55),
        Segment(13, 19, "groom", subject="mouse1", source="human", caption="face wash"),
    ])
    return Project(session=session, skeleton=skeleton, poses=poses, segments=segments,
                   settings={"name": "tiny"})
