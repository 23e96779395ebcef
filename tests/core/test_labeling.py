from __future__ import annotations

import numpy as np
import pytest

from napari_behaviorvlm.core.labeling import (
    ViewerSettings, apply_human_label, hints_layer_data, mark_seed_frame, next_keypoint_to_label, points_layer_data,
    remap_skeleton, reprojection_hints, seed_frames, skeleton_vectors, unmark_seed_frame,
)
from napari_behaviorvlm.core.pose import Flag, Source
from napari_behaviorvlm.core.project import load_project
from napari_behaviorvlm.core.skeleton import Skeleton


def test_points_layer_data_is_frame_y_x_with_features(make_tiny_project):
    project, _ = make_tiny_project()
    poses = project.poses
    poses.set_label("cam1", 2, 0, "tail_tip", (10.5, 20.25), source=Source.MODEL, confidence=0.3)
    poses.flags[1, 2, 0, poses.keypoint_index("tail_tip")] = Flag.JUMP | Flag.SWAP
    poses.set_label("cam1", 4, 0, "ear_left", (1.0, 2.0))
    layer = points_layer_data(poses, "cam1")
    assert layer.data.tolist() == [[2.0, 20.25, 10.5], [4.0, 2.0, 1.0]]
    feats = layer.features
    assert list(feats["keypoint"]) == ["tail_tip", "ear_left"]
    assert list(feats["source"]) == ["model", "human"]
    assert feats["confidence"].tolist() == pytest.approx([0.3, 1.0])
    assert feats["flagged"].tolist() == [True, False]
    assert "jump" in feats["reasons"][0] and "swap" in feats["reasons"][0]
    assert layer.index.tolist() == [[2, 0, 11], [4, 0, 0]]
    assert len(points_layer_data(poses, "cam0").data) == 0


def test_seed_frames_convert_human_labels_and_persist(make_tiny_project, tmp_path):
    project, _ = make_tiny_project()
    project.poses.set_label("cam0", 3, 0, "ear_left", (5, 5))
    assert mark_seed_frame(project, 3) == 1
    assert project.poses.source[0, 3, 0, 0] == Source.SEED
    mark_seed_frame(project, 1)  # empty seed frame is remembered in the settings
    assert seed_frames(project) == [1, 3]
    project.session.calibration = None  # no 3D needed for this test
    apply_human_label(project, "cam2", 1, 0, "ear_right", (7, 8))
    assert project.poses.source[2, 1, 0, 1] == Source.SEED
    project.save(tmp_path / "p.bvlm")
    again = load_project(tmp_path / "p.bvlm")
    assert seed_frames(again) == [1, 3]
    assert unmark_seed_frame(again, 3) == 1 and seed_frames(again) == [1]
    assert again.poses.source[0, 3, 0, 0] == Source.HUMAN
    with pytest.raises(ValueError, match="outside the session"):
        mark_seed_frame(project, 99)


def test_reprojection_hints_predict_missing_views(make_tiny_project):
    project, truth = make_tiny_project()
    group = project.session.calibration
    true2d = group.project(truth)  # (C, F, 1, K, 2)
    poses = project.poses
    for c in (0, 1):  # keypoint 4 seen by two cameras in frame 2
        poses.set_label(c, 2, 0, 4, true2d[c, 2, 0, 4])
    poses.set_label(0, 2, 0, 7, true2d[0, 2, 0, 7])  # only one view: no hint
    hints = reprojection_hints(project, [2])
    assert hints.shape == (3, 1, 1, 12, 2)
    np.testing.assert_allclose(hints[2, 0, 0, 4], true2d[2, 2, 0, 4], atol=1e-6)
    assert np.isnan(hints[0, 0, 0, 4]).all() and np.isnan(hints[1, 0, 0, 4]).all()  # labeled there
    assert np.isnan(hints[:, 0, 0, 7]).all()
    every = reprojection_hints(project)
    assert every.shape == (3, 5, 1, 12, 2)
    np.testing.assert_array_equal(every[:, 2], hints[:, 0])
    assert np.isnan(every[:, [0, 1, 3, 4]]).all()
    data, feats = hints_layer_data(poses, every, "cam2")
    assert data.shape == (1, 3) and data[0, 0] == 2 and list(feats["keypoint"]) == ["back_rear"]
    np.testing.assert_allclose(data[0, [2, 1]], true2d[2, 2, 0, 4], atol=1e-6)


def test_next_keypoint_follows_skeleton_order_and_skips_labeled(make_tiny_project):
    project, _ = make_tiny_project()
    poses = project.poses
    assert next_keypoint_to_label(poses, 0, 0, 0) == 0
    poses.set_label(0, 0, 0, 1, (1, 1))
    assert next_keypoint_to_label(poses, 0, 0, 0, current=0) == 2
    assert next_keypoint_to_label(poses, 0, 0, 0, current=11) == 0  # wraps
    for k in range(12):
        poses.set_label(0, 0, 0, k, (1, 1))
    assert next_keypoint_to_label(poses, 0, 0, 0, current=3) is None


def test_skeleton_vectors_join_labeled_edge_ends(make_tiny_project):
    project, _ = make_tiny_project()
    poses, skel = project.poses, project.skeleton
    poses.set_label(0, 1, 0, "ear_left", (10, 20))
    poses.set_label(0, 1, 0, "ear_right", (30, 25))
    vec = skeleton_vectors(poses, skel, 0)
    assert vec.shape == (1, 2, 3)
    assert vec[0].tolist() == [[1, 20, 10], [0, 5, 20]]


def test_remap_skeleton_keeps_labels_by_name(make_tiny_project):
    project, _ = make_tiny_project()
    project.poses.set_label(1, 0, 0, "tail_tip", (3, 4))
    skel = Skeleton(["tail_tip", "nose"], {"all": ["tail_tip", "nose"]}, [("nose", "tail_tip")])
    new = remap_skeleton(project, skel)
    assert new.poses.keypoint_names == ["tail_tip", "nose"]
    assert new.poses.points2d[1, 0, 0, 0].tolist() == [3, 4]
    assert np.isnan(new.poses.points2d[:, :, :, 1]).all()


def test_viewer_settings_roundtrip_without_secrets(make_tiny_project):
    project, _ = make_tiny_project()
    mark_seed_frame(project, 2)
    s = ViewerSettings(color_mode="keypoint", show_names=True, current_keypoint="back_mid",
                       run={"backend": "vlm", "api_key_env": "OPENAI_API_KEY"})
    s.store(project)
    assert ViewerSettings.from_project(project) == s
    assert seed_frames(project) == [2]
    with pytest.raises(ValueError):
        ViewerSettings(color_mode="rainbow")


def test_confidence_colors_go_red_to_green():
    from napari_behaviorvlm.core.labeling import confidence_colors, keypoint_colors

    colors = confidence_colors([0.0, 0.5, 1.0, np.nan])
    assert colors.shape == (4, 4)
    assert colors[0, 0] > 0.8 and colors[0, 1] < 0.2  # red
    assert colors[2, 1] > 0.7 and colors[2, 0] < 0.2  # green
    assert colors[1, 0] > 0.9 and colors[1, 1] > 0.7  # yellow
    assert np.allclose(colors[3, :3], colors[3, 0])  # grey for unknown
    ramp = confidence_colors(np.linspace(0, 1, 11))
    assert np.all(np.diff(ramp[:, 0] - ramp[:, 1]) < 0)  # steadily less red, more green
    kc = keypoint_colors([0, 1, 12])
    assert np.allclose(kc[0], kc[2]) and not np.allclose(kc[0], kc[1])


def test_skeleton_text_roundtrip_and_errors():
    from napari_behaviorvlm.core.labeling import skeleton_from_text, skeleton_text
    from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton

    skel = default_qd_mouse_skeleton()
    text = skeleton_text(skel)
    back = skeleton_from_text(**text, name="qd_mouse")
    assert back == skel
    with pytest.raises(ValueError, match="edges line 1"):
        skeleton_from_text("a\nb", edges="a b c")
    with pytest.raises(ValueError, match="unknown keypoint"):
        skeleton_from_text("a\nb", edges="a - z")
    with pytest.raises(ValueError, match="regions line 2"):
        skeleton_from_text("a\nb", regions="r: a\nb")
