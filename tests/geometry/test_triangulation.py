"""Triangulation: exactness on noise-free points, missing views, weights, RANSAC."""

from __future__ import annotations

import numpy as np
import pytest

from napari_behaviorvlm.geometry.camera import camera_ring
from napari_behaviorvlm.geometry.triangulation import (
    reprojection_errors,
    triangulate,
    triangulate_ransac,
)


@pytest.fixture(scope="module")
def rig():
    return camera_ring(6)


@pytest.fixture(scope="module")
def truth():
    rng = np.random.default_rng(1)
    return rng.uniform([-150, -150, 0], [150, 150, 120], size=(40, 12, 3))  # frames x keypoints


def test_noise_free_points_are_exact(rig, truth):
    points2d = rig.project(truth)
    assert points2d.shape == (6, 40, 12, 2)
    out = triangulate(points2d, rig)
    assert out.shape == truth.shape
    assert np.abs(out - truth).max() < 1e-6
    errors = reprojection_errors(out, points2d, rig)
    assert errors.shape == (6, 40, 12)
    assert np.nanmax(errors) < 1e-6


def test_missing_views(rig, truth):
    points2d = rig.project(truth)
    points2d[:4, 0, 0] = np.nan  # 2 views left: still exact
    points2d[:5, 0, 1] = np.nan  # 1 view left: NaN
    points2d[:, 1, 2] = np.nan  # no view
    points2d[[0, 2, 4], 3] = np.nan  # a whole frame seen by 3 cameras
    out = triangulate(points2d, rig)
    assert np.abs(out[0, 0] - truth[0, 0]).max() < 1e-6
    assert np.isnan(out[0, 1]).all() and np.isnan(out[1, 2]).all()
    assert np.abs(out[3] - truth[3]).max() < 1e-6
    errors = reprojection_errors(out, points2d, rig)
    assert np.isnan(errors[:4, 0, 0]).all() and np.isfinite(errors[4:, 0, 0]).all()


def test_weights_downweight_a_noisy_view(rig, truth):
    rng = np.random.default_rng(2)
    points2d = rig.project(truth)
    points2d[3] += rng.normal(0, 20.0, points2d[3].shape)  # one very noisy camera
    plain = np.linalg.norm(triangulate(points2d, rig) - truth, axis=-1)
    weights = np.ones(points2d.shape[:-1])
    weights[3] = 0.01
    weighted = np.linalg.norm(triangulate(points2d, rig, weights) - truth, axis=-1)
    assert np.median(weighted) < 0.1 * np.median(plain)
    weights[3] = 0.0  # weight 0 drops the view: same as NaN
    dropped = points2d.copy()
    dropped[3] = np.nan
    np.testing.assert_allclose(triangulate(points2d, rig, weights), triangulate(dropped, rig),
                               atol=1e-9)


def test_bad_shapes_are_reported(rig):
    with pytest.raises(ValueError, match="views"):
        triangulate(np.zeros((5, 3, 2)), rig)
    with pytest.raises(ValueError, match="weights"):
        triangulate(np.zeros((6, 3, 2)), rig, weights=np.ones((6, 4)))
    with pytest.raises(ValueError, match=">= 0"):
        triangulate(np.zeros((6, 3, 2)), rig, weights=-np.ones((6, 3)))


def test_ransac_rejects_outlier_views(rig, truth):
    rng = np.random.default_rng(3)
    points2d = rig.project(truth) + rng.normal(0, 0.3, (6,) + truth.shape[:-1] + (2,))
    bad = np.zeros(points2d.shape[:-1], dtype=bool)
    bad[2, :20] = True  # camera 2 swapped to a far candidate in 20 frames
    bad[5, 10:30, :6] = True  # and camera 5 in some keypoints, overlapping
    points2d[bad] += rng.choice([-1, 1], size=(bad.sum(), 2)) * rng.uniform(40, 120, (bad.sum(), 2))
    points2d[0, 35] = np.nan  # a missing view

    plain = np.linalg.norm(triangulate(points2d, rig) - truth, axis=-1)
    result = triangulate_ransac(points2d, rig, threshold_px=5.0)
    robust = np.linalg.norm(result.points3d - truth, axis=-1)
    assert result.points3d.shape == truth.shape
    assert result.inliers.shape == result.reproj_error.shape == (6, 40, 12)
    assert result.n_views.shape == (40, 12) and result.n_views.dtype.kind == "i"
    # every outlier view is rejected, every good observed view kept
    observed = np.isfinite(points2d).all(axis=-1)
    assert not result.inliers[bad].any()
    assert result.inliers[observed & ~bad].all()
    assert not result.inliers[~observed].any()
    np.testing.assert_array_equal(result.n_views, (observed & ~bad).sum(axis=0))
    # errors reported for every view with a 2D point, inlier or not
    assert np.isfinite(result.reproj_error[observed]).all()
    assert np.isnan(result.reproj_error[~observed]).all()
    assert (result.reproj_error[bad] > 5.0).all()
    assert robust.max() < 1.0 < plain[bad.any(axis=0)].max()


def test_ransac_min_views_and_unusable_points(rig, truth):
    points2d = rig.project(truth[:2])
    points2d[2:, 0, 0] = np.nan  # only 2 views
    points2d[1:, 0, 1] = np.nan  # only 1 view
    result = triangulate_ransac(points2d, rig, threshold_px=2.0, min_views=3)
    assert np.isnan(result.points3d[0, 0]).all() and result.n_views[0, 0] == 0
    assert not result.inliers[:, 0, 0].any()
    assert np.isnan(result.points3d[0, 1]).all()
    assert np.abs(result.points3d[1] - truth[1]).max() < 1e-6
    assert (result.n_views[1] == 6).all()
    result2 = triangulate_ransac(points2d, rig, threshold_px=2.0, min_views=2)
    assert result2.n_views[0, 0] == 2
    with pytest.raises(ValueError, match="min_views"):
        triangulate_ransac(points2d, rig, min_views=1)


def test_a_moved_camera_is_triangulated_with_its_new_pose(truth):
    # the conditioned projections are kept per camera pose: moving a camera must not reuse
    # the old ones
    group = camera_ring(4)
    assert np.abs(triangulate(group.project(truth), group) - truth).max() < 1e-6
    group[1].tvec = group[1].tvec + np.array([40.0, -25.0, 60.0])
    group[2].rvec = group[2].rvec + np.array([0.0, 0.05, -0.03])
    moved = group.project(truth)
    assert np.abs(triangulate(moved, group) - truth).max() < 1e-6
    assert np.abs(triangulate_ransac(moved, group).points3d - truth).max() < 1e-6
