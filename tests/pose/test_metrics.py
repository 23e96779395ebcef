"""``evaluate_poses`` on hand-made tables: every count can be checked by eye."""

from __future__ import annotations

import numpy as np
import pytest

from napari_behaviorvlm.core.pose import PoseTable
from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton
from napari_behaviorvlm.pose.metrics import evaluate_poses


def test_swap_rate_per_individual_counts_each_mouse_over_its_own_keypoints():
    skeleton = default_qd_mouse_skeleton()
    n_frames, n_kp = 4, skeleton.n_keypoints
    # two mice 100 mm apart, keypoints 10 mm apart along x: no two true points closer than 10 mm
    truth = np.zeros((n_frames, 2, n_kp, 3))
    truth[..., 0] = np.arange(n_kp) * 10.0
    truth[:, 1, :, 1] = 100.0
    visible = np.ones((2, n_frames, 2, n_kp), bool)
    poses = PoseTable.empty(["cam0", "cam1"], n_frames, ["mouse0", "mouse1"], skeleton.keypoints)
    poses.points3d[:] = truth + 0.5
    poses.points3d[0, 0, 0] = truth[0, 0, 1]  # mouse0 keypoint 0 on its own keypoint 1
    poses.points3d[1, 0, 2] = truth[1, 1, 2]  # mouse0 keypoint 2 on mouse1's
    poses.points3d[2, 1, 3] = truth[2, 0, 3]  # mouse1 keypoint 3 on mouse0's
    poses.points3d[3, 1, :] = np.nan  # mouse1 missing in the last frame
    poses.flags[1, 1, 0, 2] = 1  # one of the swaps flagged (in one view)
    poses.flags[0, 0, 1, 5] = 1  # and a keypoint that is not swapped
    m = evaluate_poses(poses, skeleton, truth, np.zeros((2, n_frames, 2, n_kp, 2)), visible)
    assert m["n_swapped"] == 3 and m["n_located"] == 4 * n_kp + 3 * n_kp
    assert m["n_swapped_flagged"] == 1 and m["swap_flag_share"] == pytest.approx(1 / 3)
    assert m["identity_swap_rate"] == pytest.approx(3 / (7 * n_kp))
    assert m["per_individual_swap_rate"] == pytest.approx(
        {"mouse0": 2 / (4 * n_kp), "mouse1": 1 / (3 * n_kp)})
    assert m["individual_exchange_frames"] == 0


def test_an_exchange_is_a_mouse_labeled_where_the_other_one_is_not_a_mouse_labeled_in_part():
    skeleton = default_qd_mouse_skeleton()
    n_frames, n_kp = 3, skeleton.n_keypoints
    # mouse0 along x from 0 to 110 mm, mouse1 parallel to it 30 mm away and 80 mm ahead
    truth = np.zeros((n_frames, 2, n_kp, 3))
    truth[..., 0] = np.arange(n_kp) * 10.0
    truth[:, 1, :, 0] += 80.0
    truth[:, 1, :, 1] = 30.0
    visible = np.ones((2, n_frames, 2, n_kp), bool)
    poses = PoseTable.empty(["cam0", "cam1"], n_frames, ["mouse0", "mouse1"], skeleton.keypoints)
    poses.points3d[:] = truth
    # frame 0: mouse0 labeled right but only at its last two keypoints, whose mean (105, 0)
    # lies 50 mm from its full centre and 42 mm from mouse1's: no exchange all the same
    poses.points3d[0, 0, :-2] = np.nan
    # frame 1: mouse0 labeled on mouse1 throughout: an exchange
    poses.points3d[1, 0] = truth[1, 1]
    m = evaluate_poses(poses, skeleton, truth, np.zeros((2, n_frames, 2, n_kp, 2)), visible)
    assert m["individual_exchange_frames"] == 1


def test_located_flag_recall_leaves_the_missing_keypoints_out():
    skeleton = default_qd_mouse_skeleton()
    n_frames, n_kp = 2, skeleton.n_keypoints
    truth = np.zeros((n_frames, 1, n_kp, 3))
    truth[..., 0] = np.arange(n_kp) * 10.0
    visible = np.ones((2, n_frames, 1, n_kp), bool)
    poses = PoseTable.empty(["cam0", "cam1"], n_frames, ["mouse0"], skeleton.keypoints)
    poses.points3d[:] = truth
    poses.points3d[0, 0, :3] = np.nan  # three missing keypoints, flagged as every missing one is
    poses.flags[:, 0, 0, :3] = 2
    poses.points3d[1, 0, 0] += 8.0  # two wrong 3D points, one of them flagged
    poses.points3d[1, 0, 1] += 8.0
    poses.flags[0, 1, 0, 0] = 1
    m = evaluate_poses(poses, skeleton, truth, np.zeros((2, n_frames, 1, n_kp, 2)), visible)
    assert m["n_bad"] == 5 and m["flag_recall"] == pytest.approx(4 / 5)
    assert m["n_located_bad"] == 2 and m["n_located_flagged_bad"] == 1
    assert m["located_flag_recall"] == pytest.approx(1 / 2)
