import numpy as np
import pytest

from napari_behaviorvlm.behavior.features import (
    KeypointRoles,
    interpolate_gaps,
    pose_features,
    video_features,
    windowed,
)

FPS = 25.0


def test_pose_features_3d_follow_the_script(scripted):
    pts, truth, names = scripted
    fs = pose_features(pts, names, FPS)
    speed = fs.get("speed")[:, 0]
    elev = fs.get("elevation")[:, 0]
    assert np.nanmedian(speed[truth == "run"]) > 3 * np.nanmedian(speed[truth == "walk"])
    assert np.nanmedian(speed[truth == "rest"]) < 0.2
    assert np.nanmedian(elev[truth == "rear"]) > np.nanmedian(elev[truth == "walk"]) + 0.3
    assert np.isnan(fs.get("other_dist")).all()  # single animal


def test_pose_features_2d_and_nan_robust(scripted):
    pts, truth, names = scripted
    pts2d = pts[..., :2].copy()
    pts2d[10:14, 0, :] = np.nan  # a gap of 4 frames for every keypoint
    pts2d[60, 0, 0] = np.nan
    fs = pose_features(pts2d, names, FPS)
    assert np.isnan(fs.get("elevation")).all()
    assert np.isfinite(fs.get("speed")[:, 0]).all()
    ratio = fs.get("body_length_ratio")[:, 0]
    assert np.nanmedian(ratio[truth == "rear"]) < 0.8  # foreshortened seen from above


def test_two_animals_social_features(scripted):
    pts, _, names = scripted
    other = pts.copy()
    other[..., 1] += 60.0  # 60 mm to the side
    both = np.concatenate([pts, other], axis=1)
    fs = pose_features(both, names, FPS, individuals=["a", "b"])
    d = fs.get("other_dist")
    assert np.all(np.isfinite(d)) and np.allclose(d[:, 0] * fs.body_length[0], 60.0, atol=2.0)
    assert (fs.nearest[:, 0] == 1).all() and (fs.nearest[:, 1] == 0).all()


def test_pair_features_who_follows_and_crouch(scripted):
    pts, truth, names = scripted
    k = {n: i for i, n in enumerate(names)}
    pts = pts.copy()
    for name in ("back_front", "back_mid", "back_rear"):
        pts[truth == "rest", 0, k[name], 2] = 12.0  # the back lowered while resting
    follower = pts.copy()
    follower[..., 0] -= 120.0  # the same path, 120 mm behind
    fs = pose_features(np.concatenate([pts, follower], axis=1), names, FPS, ["lead", "follow"])
    moving = np.isin(truth, ["walk", "run"])
    toward, away = fs.get("toward_other"), fs.get("other_away")
    # the follower moves toward the leader, which moves away from it
    assert np.median(toward[moving, 1]) > 0.5 and np.median(away[moving, 1]) > 0.5
    assert np.median(toward[moving, 0]) < -0.5 and np.mean(toward[moving, 0] < 0) > 0.95
    assert np.allclose(fs.get("relative_heading")[truth == "walk"], 1.0, atol=0.05)
    rear, head = fs.get("head_other_rear")[:, 1], fs.get("head_other_head")[:, 1]
    assert np.all(rear[truth == "walk"] < head[truth == "walk"])  # nose toward the leader's rear
    crouch = fs.get("back_height_ratio")[:, 0]
    assert np.nanmedian(crouch[truth == "rest"]) < 0.7 < np.nanmedian(crouch[truth == "walk"])
    solo = pose_features(pts, names, FPS)
    assert np.isnan(solo.get("toward_other")).all()
    assert np.isnan(pose_features(pts[..., :2], names, FPS).get("back_height_ratio")).all()


def test_roles_and_errors():
    roles = KeypointRoles.from_names(["nose", "earl", "earr", "neck", "bodycentre", "tailbase"])
    assert roles.head == [0, 1, 2] and roles.tail_base == [5]
    with pytest.raises(ValueError, match="head and tail-base"):
        KeypointRoles.from_names(["a", "b"])
    with pytest.raises(ValueError, match="frames, animals, keypoints"):
        pose_features(np.zeros((5, 3)), ["a"], 25)


def test_interpolate_gaps_only_short_bounded_runs():
    x = np.array([0.0, np.nan, 2.0, np.nan, np.nan, np.nan, 6.0, np.nan])
    out = interpolate_gaps(x, max_gap=2)
    assert out[1] == pytest.approx(1.0)
    assert np.isnan(out[3:6]).all() and np.isnan(out[7])


def test_video_features_motion_and_windowed():
    rng = np.random.default_rng(0)
    frames = np.zeros((40, 32, 32), dtype=np.uint8)
    for f in range(40):
        if 20 <= f < 30:  # a bright square moves
            frames[f, 5:13, f - 18:f - 10] = 255
    frames += rng.integers(0, 3, frames.shape, dtype=np.uint8)
    fs = video_features(frames, fps=10, grid=8)
    motion = fs.get("motion")[:, 0]
    assert motion[22:29].mean() > 5 * motion[2:15].mean()
    assert fs.values.shape[:2] == (40, 1)
    w = windowed(fs, window_s=0.5)
    assert w.shape == (40, 1, 2 * len(fs.names))
    # two cameras per frame
    fs2 = video_features(([f, f] for f in frames), fps=10, grid=8)
    assert "motion1" in fs2.names


def test_missing_tail_base_falls_back_to_rear_of_back(scripted):
    pts, truth, names = scripted
    pts = pts.copy()
    pts[:, :, names.index("tail_base")] = np.nan  # never seen (e.g. the labeler missed it)
    fs = pose_features(pts, names, FPS)
    assert np.isfinite(fs.body_length).all()
    assert np.nanmedian(fs.get("speed")[truth == "rest", 0]) < 0.2
