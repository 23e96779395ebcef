"""anipose export, read back as anipose reads it (pandas + its cam_regex) and with movement."""

from __future__ import annotations

import re
import sys

import numpy as np
import pandas as pd
import pytest

from napari_behaviorvlm.core.pose import Source
from napari_behaviorvlm.geometry.camera import load_calibration
from napari_behaviorvlm.io.anipose import CAM_REGEX, export_anipose, read_anipose_3d
from tests.movement_reader import read_with_movement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_anipose_layout_and_values(small_project, tmp_path):
    files = export_anipose(small_project, tmp_path / "ani")
    poses = small_project.poses
    config = tomllib.loads((tmp_path / "ani" / "config.toml").read_text())
    regex = config["triangulation"]["cam_regex"]
    assert regex == CAM_REGEX
    sess = tmp_path / "ani" / "tiny"
    calib = load_calibration(sess / "calibration" / "calibration.toml")
    assert calib.names == poses.camera_names
    pose_files = sorted((sess / "pose-2d").glob("*.h5"))
    assert len(pose_files) == 6  # 2 mice x 3 cameras
    groups = {}
    for path in pose_files:  # anipose: camera = regex group, video = name without it
        cam = re.search(regex, path.stem).groups()[0].strip()
        group = re.sub(regex, "", path.stem).strip()
        groups.setdefault(group, []).append(cam)
        assert cam in calib.names
        df = pd.read_hdf(path)  # anipose reads without a key
        assert list(df.columns.names) == ["scorer", "bodyparts", "coords"]
        assert len(df) == poses.n_frames  # every frame
        c, m = poses.camera_names.index(cam), int(group[-1])
        dlabs = df.loc[:, df.columns.levels[0][0]]
        xy = np.stack([dlabs.loc[:, (k, ("x", "y"))].to_numpy() for k in poses.keypoint_names], 1)
        np.testing.assert_array_equal(xy, poses.points2d[c, :, m])
        lik = np.stack([dlabs.loc[:, (k, "likelihood")].to_numpy() for k in poses.keypoint_names],
                       1)
        expected = np.where(poses.human_mask()[c, :, m], 1.0, poses.confidence[c, :, m])
        expected[~poses.labeled_mask()[c, :, m]] = 0.0
        np.testing.assert_allclose(lik, expected, rtol=1e-6)
    assert groups == {"tiny_mouse0": poses.camera_names, "tiny_mouse1": poses.camera_names}

    table = pd.read_csv(sess / "pose-3d" / "tiny_mouse1.csv")
    kp = poses.keypoint_names[0]
    assert list(table.columns[:6]) == [f"{kp}_{s}" for s in ("x", "y", "z", "error", "ncams",
                                                             "score")]
    assert list(table.columns[-13:]) == [f"M_{i}{j}" for i in range(3) for j in range(3)] + [
        "center_0", "center_1", "center_2", "fnum"]
    keypoints, pts, _ = read_anipose_3d(sess / "pose-3d" / "tiny_mouse1.csv")
    assert keypoints == poses.keypoint_names
    np.testing.assert_allclose(pts, poses.points3d[:, 1])
    assert np.isnan(table[f"{kp}_ncams"][15]) and table[f"{kp}_ncams"][3] == 3
    labeled = poses.labeled_mask()[:, 3, 1, 0]
    assert table[f"{kp}_error"][3] == pytest.approx(
        float(np.mean(poses.reproj_error[labeled, 3, 1, 0])), rel=1e-5)
    assert all(p.exists() for p in files)


def test_movement_reads_anipose_files(small_project, tmp_path):
    export_anipose(small_project, tmp_path / "ani")
    poses = small_project.poses
    sess = tmp_path / "ani" / "tiny"
    ds = read_with_movement(sess / "pose-3d" / "tiny_mouse0.csv", source_software="Anipose")
    order = [list(ds.keypoints.values).index(k) for k in poses.keypoint_names]
    np.testing.assert_allclose(ds.position.values[:, :, order, 0].transpose(0, 2, 1),
                               poses.points3d[:, 0])
    ds2 = read_with_movement(sess / "pose-2d" / "tiny_mouse0-camcamB.h5", "DeepLabCut")
    np.testing.assert_allclose(ds2.position.values[:, :, :, 0].transpose(0, 2, 1),
                               poses.points2d[1, :, 0])


def test_anipose_needs_calibration_and_refuses_overwrite(small_project, tmp_path):
    export_anipose(small_project, tmp_path / "ani")
    with pytest.raises(FileExistsError):
        export_anipose(small_project, tmp_path / "ani")
    export_anipose(small_project, tmp_path / "ani", overwrite=True)
    small_project.session.calibration = None
    with pytest.raises(ValueError, match="calibrat"):
        export_anipose(small_project, tmp_path / "other")


def test_aniposelib_triangulates_the_export(small_project, tmp_path):
    """anipose's own triangulation (aniposelib) on our calibration.toml and pose-2d files gives
    back the 3D points the 2D labels were projected from."""
    aniposelib = pytest.importorskip("aniposelib.cameras")
    export_anipose(small_project, tmp_path / "ani")
    poses = small_project.poses
    sess = tmp_path / "ani" / "tiny"
    cgroup = aniposelib.CameraGroup.load(str(sess / "calibration" / "calibration.toml"))
    cam_names = sorted(poses.camera_names)
    cgroup = cgroup.subset_cameras_names(cam_names)
    points = np.stack([
        np.stack([pd.read_hdf(sess / "pose-2d" / f"tiny_mouse0-cam{c}.h5")
                  .loc[:, "behaviorvlm"].loc[:, (k, ("x", "y"))].to_numpy()
                  for k in poses.keypoint_names], axis=1)
        for c in cam_names])  # (C, F, K, 2)
    p3d = cgroup.triangulate(points.reshape(len(cam_names), -1, 2)).reshape(poses.n_frames, 4, 3)
    exact = (poses.labeled_mask()[:, :, 0].all(axis=0)
             & ~(poses.source[:, :, 0] == Source.HUMAN).any(axis=0))  # all views, no edit
    assert exact.sum() > 40
    np.testing.assert_allclose(p3d[exact], poses.points3d[:, 0][exact], atol=1e-3)
