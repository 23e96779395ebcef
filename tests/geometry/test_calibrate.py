"""Board calibration: board files, a synthetic rendered rig with known truth, the real dataset."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from napari_behaviorvlm.cli import main
from napari_behaviorvlm.geometry.calibrate import (
    Board,
    calibrate,
    detect_board_in_source,
    load_board,
)
from napari_behaviorvlm.geometry.camera import CalibrationError, load_calibration, look_at
from napari_behaviorvlm.geometry.validation import validate_calibration

BOARD = Board("charuco", 5, 7, 30.0, 22.0, 4, 50)
FOCAL = 700.0
CAMERA_POSITIONS = [(0.0, 0.0, -600.0), (250.0, -50.0, -560.0), (-250.0, 80.0, -550.0)]


def _render_views(root, texture, board_to_texture, n_frames, n_cameras=3, seed=0):
    """Render a board texture by homography into distortion-free 640x480 cameras.

    ``board_to_texture`` (3, 3) maps board-plane mm (the board's object-point frame) to texture
    px. Returns the cameras' (rvec, tvec), world -> camera.
    """
    matrix = np.array([[FOCAL, 0, 319.5], [0, FOCAL, 239.5], [0, 0, 1.0]])
    rng = np.random.default_rng(seed)
    extrinsics = [look_at(p, (0, 0, 0), up=(0, -1, 0)) for p in CAMERA_POSITIONS[:n_cameras]]
    for c in range(n_cameras):
        (root / f"cam{c}").mkdir()
    for f in range(n_frames):
        rot_board = cv2.Rodrigues(rng.normal(0, 0.35, 3))[0]
        t_board = rng.normal(0, 30, 3) - rot_board @ np.array([75.0, 105.0, 0.0])
        for c, (rvec, tvec) in enumerate(extrinsics):
            rot = cv2.Rodrigues(rvec)[0]
            r_cam, t_cam = rot @ rot_board, rot @ t_board + tvec
            hom = (matrix @ np.column_stack([r_cam[:, 0], r_cam[:, 1], t_cam])
                   @ np.linalg.inv(board_to_texture))
            image = cv2.warpPerspective(texture, hom, (640, 480), flags=cv2.INTER_LINEAR,
                                        borderValue=128)
            image = cv2.GaussianBlur(image, (3, 3), 0.7) + rng.normal(0, 2, image.shape)
            cv2.imwrite(str(root / f"cam{c}" / f"view-{f}.png"),
                        np.clip(image, 0, 255).astype(np.uint8))
    return extrinsics


def _check_rig(group, extrinsics):
    rot0, t0 = cv2.Rodrigues(extrinsics[0][0])[0], extrinsics[0][1]
    for c, cam in enumerate(group):
        assert cam.matrix[0, 0] == pytest.approx(FOCAL, rel=0.01)
        # world = cam0's frame: compare camera centres expressed in cam0's frame (mm)
        truth = rot0 @ np.asarray(CAMERA_POSITIONS[c]) + t0
        assert np.linalg.norm(cam.center - truth) < 6.0  # 1% of the 600 mm distance


@pytest.fixture(scope="module")
def synthetic_rig(tmp_path_factory):
    """ChArUco board views in 3 cameras with known truth."""
    root = tmp_path_factory.mktemp("synthcal")
    ppm = 6  # board image pixels per mm
    texture = BOARD._charuco().generateImage((5 * 30 * ppm, 7 * 30 * ppm), marginSize=0)
    to_texture = np.array([[ppm, 0, -0.5], [0, ppm, -0.5], [0, 0, 1.0]])
    return root, _render_views(root, texture, to_texture, 14)


def test_board_files_in_three_layouts(tmp_path):
    native = tmp_path / "native.toml"
    native.write_text('type = "charuco"\nsquares_x = 8\nsquares_y = 11\nsquare_length = 24.0\n'
                      "marker_length = 18.75\nmarker_bits = 4\ndict_size = 1000\n")
    anipose = tmp_path / "config.toml"
    anipose.write_text('[calibration]\nboard_type = "charuco"\nboard_size = [8, 11]\n'
                       "board_marker_bits = 4\nboard_marker_dict_number = 1000\n"
                       "board_marker_length = 18.75\nboard_square_side_length = 24.0\n")
    sleap_anipose = tmp_path / "board.toml"
    sleap_anipose.write_text("board_x = 8\nboard_y = 11\nsquare_length = 24.0\n"
                             "marker_length = 18.75\nmarker_bits = 4\ndict_size = 1000\n")
    boards = [load_board(p) for p in (native, anipose, sleap_anipose)]
    assert boards[0] == boards[1] == boards[2]
    assert boards[0].n_corners == 70 and boards[0].object_points().shape == (70, 3)
    # checkerboards: anipose-style sizes count inner corners
    checker = tmp_path / "checker.toml"
    checker.write_text("board_x = 8\nboard_y = 11\nsquare_length = 24.0\n")
    board = load_board(checker)
    assert board.type == "checkerboard" and board.inner_corners == (8, 11)
    points = board.object_points()
    assert points.shape == (88, 3) and points[1, 0] == 24.0 and points[8, 1] == 24.0


def test_bad_board_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('type = "charuco"\nsquares_x = 8\nsquare_length = 24.0\n')
    with pytest.raises(CalibrationError, match="squares_y"):
        load_board(bad)
    bad.write_text('type = "charuco"\nsquares_x = 8\nsquares_y = 11\nsquare_length = 24.0\n'
                   "marker_length = 18.75\ndict_size = 300\n")
    with pytest.raises(CalibrationError, match="dict_size"):
        load_board(bad)
    with pytest.raises(CalibrationError, match="not found"):
        load_board(tmp_path / "missing.toml")


def test_synthetic_rig_is_recovered(synthetic_rig):
    root, extrinsics = synthetic_rig
    result = calibrate(BOARD, {f"cam{c}": root / f"cam{c}" for c in range(3)})
    report = result.report
    assert report["overall"]["reprojection_px"]["median"] < 0.3
    assert report["overall"]["triangulated_px"]["median"] < 0.3
    for c in range(3):
        assert report["cameras"][f"cam{c}"]["frames_detected"] >= 12
    _check_rig(result.group, extrinsics)
    assert report["issues"] == [] and len(report["worst_frames"]) == 5


def test_worst_frames_reveal_frames_that_do_not_pair_up(synthetic_rig, tmp_path):
    import shutil

    root, _ = synthetic_rig
    for c in (0, 1):
        shutil.copytree(root / f"cam{c}", tmp_path / f"cam{c}")
    a, b = tmp_path / "cam1" / "view-3.png", tmp_path / "cam1" / "view-4.png"
    a.rename(tmp_path / "swap.png")
    b.rename(a)
    (tmp_path / "swap.png").rename(b)
    result = calibrate(BOARD, {f"cam{c}": tmp_path / f"cam{c}" for c in (0, 1)})
    worst = result.report["worst_frames"]
    assert {w["frame"] for w in worst[:4]} == {3, 4}
    assert worst[0]["median_px"] > 5 * result.report["overall"]["reprojection_px"]["median"]


def test_synthetic_checkerboard_rig_is_recovered(tmp_path):
    board = Board("checkerboard", 6, 8, 25.0)  # 5 x 7 inner corners
    ppm, margin = 6, 25.0  # white margin of one square around the board
    squares = np.indices((8, 6)).sum(axis=0) % 2 == 0  # (rows, cols), top-left black
    texture = np.kron(np.where(squares, 0, 255), np.ones((25 * ppm, 25 * ppm))).astype(np.uint8)
    texture = cv2.copyMakeBorder(texture, *(int(margin * ppm),) * 4, cv2.BORDER_CONSTANT, value=255)
    # object points start at the first inner corner: one square plus the margin from the edge
    offset = ppm * (margin + board.square_length) - 0.5
    to_texture = np.array([[ppm, 0, offset], [0, ppm, offset], [0, 0, 1.0]])
    extrinsics = _render_views(tmp_path, texture, to_texture, 10, n_cameras=2, seed=1)
    result = calibrate(board, {f"cam{c}": tmp_path / f"cam{c}" for c in range(2)})
    assert result.report["overall"]["frames_detected"] >= 16
    assert result.report["overall"]["reprojection_px"]["median"] < 0.3
    _check_rig(result.group, extrinsics)


def test_calibrate_command(synthetic_rig, tmp_path, capsys):
    root, _ = synthetic_rig
    board_file = tmp_path / "board.toml"
    board_file.write_text('type = "charuco"\nsquares_x = 5\nsquares_y = 7\nsquare_length = 30.0\n'
                          "marker_length = 22.0\nmarker_bits = 4\ndict_size = 50\n")
    out, report = tmp_path / "calibration.toml", tmp_path / "report.json"
    args = ["calibrate", "--board", str(board_file), "--images",
            f"cam0={root / 'cam0'}", f"cam1={root / 'cam1' / '*.png'}", f"cam2={root / 'cam2'}",
            "-o", str(out), "--json", str(report)]
    assert main(args) == 0
    assert load_calibration(out).names == ["cam0", "cam1", "cam2"]
    data = json.loads(report.read_text())
    for key in ("median", "mean", "p95"):
        assert data["overall"]["reprojection_px"][key] < 1.0
        assert data["cameras"]["cam1"]["reprojection_px"][key] < 1.0
    assert data["cameras"]["cam2"]["frames_detected"] == 14
    assert "overall" in capsys.readouterr().out
    assert main(args) == 2  # never overwrites silently
    assert "already exists" in capsys.readouterr().err
    assert main(["calibrate", "--board", str(board_file), "--images", "cam0", "-o",
                 str(tmp_path / "x.toml")]) == 2
    assert "CAMERA=PATH" in capsys.readouterr().err


def test_too_few_board_views_is_explained(synthetic_rig, tmp_path):
    root, _ = synthetic_rig
    other = Board("charuco", 6, 8, 30.0, 22.0, 5, 100)  # wrong dictionary: nothing detected
    with pytest.raises(CalibrationError, match="board was found in only 0 of 14"):
        calibrate(other, {"cam0": root / "cam0", "cam1": root / "cam1"})


@pytest.mark.slow
def test_minimal_session_calibrates_below_half_a_pixel(shared_datasets):
    root = shared_datasets / "sleap-anipose-minimal-session"
    board = load_board(root / "board.toml")
    views = ["back", "mid", "side", "top"]
    result = calibrate(board, {v: root / v / "calibration_images" for v in views})
    overall = result.report["overall"]
    assert overall["reprojection_px"]["median"] <= 0.5
    assert overall["triangulated_px"]["median"] <= 0.5
    assert overall["frames_detected"] >= 80
    for v in views:
        assert result.report["cameras"][v]["reprojection_px"]["median"] <= 0.5
    # the recalibration separates side from top (the shipped file has side as a copy of top)
    assert np.linalg.norm(result.group["side"].center - result.group["top"].center) > 50.0
    assert validate_calibration(result.group) == [] and result.report["issues"] == []


def test_video_source(shared_datasets):
    root = shared_datasets / "sleap-anipose-minimal-session" / "back" / "calibration_images"
    board = load_board(root.parent.parent / "board.toml")
    det = detect_board_in_source("back", root / "minimal_session-back-calibration.mp4", board,
                                 every=5)
    assert det.n_read == 5 and det.size == (1280, 1024)
    assert sorted(det.frames) == [0, 5, 10, 15, 20]
    assert all(len(ids) >= 60 for ids, _ in det.frames.values())
