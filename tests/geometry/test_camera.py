"""Camera model: anipose toml and sleap-io round trips, undistortion, look_at."""

from __future__ import annotations

import numpy as np
import pytest

from napari_behaviorvlm.geometry.camera import (
    CalibrationError,
    CameraGroup,
    camera_ring,
    load_calibration,
    look_at,
    save_calibration,
)


@pytest.fixture
def rig() -> CameraGroup:
    group = camera_ring(4, dist=(-0.25, 0.07, 0.0012, -0.0007, 0.01))
    group.metadata = {"board": "charuco", "error_px": 0.31, "note": None}
    return group


def test_toml_round_trip_is_exact(rig, tmp_path):
    path = tmp_path / "calibration.toml"
    save_calibration(rig, path)
    loaded = load_calibration(path)
    assert loaded.names == rig.names
    for a, b in zip(rig, loaded):
        assert a.size == b.size
        for attr in ("matrix", "dist", "rvec", "tvec"):
            np.testing.assert_array_equal(getattr(a, attr), getattr(b, attr))
    assert loaded.metadata == {"board": "charuco", "error_px": 0.31}  # None is dropped


def test_shipped_anipose_file_loads(shared_datasets):
    group = load_calibration(shared_datasets / "sleap-anipose-minimal-session" / "calibration.toml")
    assert group.names == ["back", "mid", "side", "top"]
    assert group["back"].size == (1280, 1024)
    assert group["back"].dist[0] == pytest.approx(-0.2853406116327607)


def test_bad_files_name_the_problem(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        load_calibration(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[cam_0]\nname = 'a'\nsize = [10, 10]\n")
    with pytest.raises(CalibrationError, match=r"cam_0.*matrix"):
        load_calibration(bad)


def test_sleap_io_round_trip(rig):
    sio_group = rig.to_sleap_io()
    assert [c.name for c in sio_group.cameras] == rig.names
    back = CameraGroup.from_sleap_io(sio_group)
    for a, b in zip(rig, back):
        assert a.name == b.name and tuple(a.size) == tuple(b.size)
        for attr in ("matrix", "dist", "rvec", "tvec"):
            np.testing.assert_allclose(getattr(a, attr), getattr(b, attr), rtol=0, atol=1e-12)
    # sleap-io's extrinsic matrix is our world -> camera [R | t]
    np.testing.assert_allclose(np.asarray(sio_group.cameras[1].extrinsic_matrix)[:3],
                               rig[1].extrinsics, atol=1e-12)


def test_undistort_inverts_project(rig):
    rng = np.random.default_rng(0)
    points = rng.uniform([-150, -150, 0], [150, 150, 120], (500, 3))
    for cam in rig:
        pixels = cam.project(points)
        normalized = cam.undistort(pixels)
        cam_frame = cam.world_to_camera(points)
        np.testing.assert_allclose(normalized, cam_frame[:, :2] / cam_frame[:, 2:], atol=1e-9)
    assert np.isnan(rig[0].undistort(np.array([[np.nan, 1.0]]))).all()


def test_undistort_outside_the_invertible_domain_is_nan():
    cam = camera_ring(1, dist=(-0.5, 0.0, 0.0, 0.0, 0.0))[0]
    limit = cam.distortion_limit()
    assert limit == pytest.approx(2 / 3 * np.sqrt(2 / 3), rel=1e-3)  # max of r - 0.5 r^3
    fx, cx, cy = cam.matrix[0, 0], cam.matrix[0, 2], cam.matrix[1, 2]
    inside, outside = [cx + 0.9 * limit * fx, cy], [cx + 1.05 * limit * fx, cy]
    out = cam.undistort(np.array([inside, outside]))
    assert np.isfinite(out[0]).all() and np.isnan(out[1]).all()
    in_world = cam.rotation.T @ (np.array([*out[0], 1.0]) * 300.0 - cam.tvec)
    np.testing.assert_allclose(cam.project(in_world), inside, atol=1e-6)
    assert camera_ring(1)[0].distortion_limit() == np.inf  # monotonic model: no limit


def test_look_at_points_the_optical_axis_at_the_target():
    rvec, tvec = look_at((500.0, 100.0, 300.0), (0.0, 0.0, 50.0))
    group = camera_ring(1)
    cam = group[0]
    cam.rvec, cam.tvec = rvec, tvec
    np.testing.assert_allclose(cam.center, [500.0, 100.0, 300.0], atol=1e-9)
    centre_px = cam.project(np.array([0.0, 0.0, 50.0]))
    np.testing.assert_allclose(centre_px, cam.matrix[:2, 2], atol=1e-6)
    # world up is image up: a point above the target is higher in the image (smaller y)
    assert cam.project(np.array([0.0, 0.0, 100.0]))[1] < centre_px[1]


def test_rotation_follows_the_rotation_vector_and_is_read_only(rig):
    import cv2

    cam = rig[0]
    assert np.array_equal(cam.rotation, cv2.Rodrigues(cam.rvec)[0])
    assert not cam.rotation.flags.writeable
    cam.rvec = cam.rvec + np.array([0.0, 0.1, 0.0])  # a recalibrated camera
    assert np.array_equal(cam.rotation, cv2.Rodrigues(cam.rvec)[0])


def test_projection_matches_opencv_and_is_nan_behind_the_camera(rig):
    import cv2

    rng = np.random.default_rng(3)
    sample = rng.uniform([-300, -300, -50], [300, 300, 400], (380, 3))
    sample[:5] = np.nan
    for cam in rig:
        # 20 points behind this camera (negative depth), then the rest
        behind = (rng.uniform([-50, -50, -300], [50, 50, -1], (20, 3)) - cam.tvec) @ cam.rotation
        points = np.vstack([behind, sample])
        ahead = cam.world_to_camera(points)[:, 2] > 1e-9
        assert (~ahead).sum() >= 20
        expected, _ = cv2.projectPoints(points[ahead].reshape(-1, 1, 3), cam.rvec, cam.tvec,
                                        cam.matrix, cam.dist)
        pixels = cam.project(points)
        np.testing.assert_allclose(pixels[ahead], expected.reshape(-1, 2), rtol=0, atol=1e-9)
        assert np.isnan(pixels[~ahead]).all()
    # the group projects through every camera at once, with any leading shape
    grid = sample[5:].reshape(5, 75, 3)
    together = rig.project(grid)
    assert together.shape == (len(rig), 5, 75, 2)
    for c, cam in enumerate(rig):
        np.testing.assert_array_equal(together[c], cam.project(grid))


@pytest.mark.parametrize("opencv", ["4", "5"])
def test_undistortion_inverts_the_projection_on_opencv_4_and_5(monkeypatch, opencv):
    import cv2

    from napari_behaviorvlm.geometry import camera as camera_module

    calls, stood_in = [], False
    if opencv == "4" and not hasattr(cv2, "undistortPointsIter"):
        # OpenCV 5 here: stand in for OpenCV 4's function, which takes the criteria itself
        def iterated(src, matrix, dist, r, p, criteria):
            calls.append(criteria)
            return cv2.undistortPoints(src, matrix, dist, criteria=criteria)

        monkeypatch.setattr(cv2, "undistortPointsIter", iterated, raising=False)
        stood_in = True
    elif opencv == "5" and hasattr(cv2, "undistortPointsIter"):
        pytest.skip("OpenCV 4 here: its undistortPoints takes no criteria")
    matrix = np.array([[800.0, 0, 640], [0, 800.0, 360], [0, 0, 1]])
    dist = np.array([-0.25, 0.08, 0.001, -0.001, 0.0])
    normalised = np.array([[[-0.5, -0.3]], [[0.2, 0.1]], [[0.6, 0.35]]])
    pixels = cv2.projectPoints(np.concatenate([normalised[:, 0], np.ones((3, 1))], axis=1),
                               np.zeros(3), np.zeros(3), matrix, dist)[0]
    back = camera_module.undistort_points(pixels, matrix, dist)
    np.testing.assert_allclose(back, normalised, atol=1e-9)
    if stood_in:
        assert calls == [camera_module.UNDISTORT_CRITERIA]
