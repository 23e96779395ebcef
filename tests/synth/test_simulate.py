"""The simulator's truth is true: geometry, visibility, behavior, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton
from napari_behaviorvlm.synth import BEHAVIORS, SynthConfig, simulate
from napari_behaviorvlm.synth.body import inside_ellipsoids, segment_hits_ellipsoids
from napari_behaviorvlm.synth.motion import SNIFF_DISTANCE, SNIFF_OFFSET, SOLO_BEHAVIORS
from napari_behaviorvlm.synth.simulate import occluded_mask


def test_shapes_names_and_rig(small_sim):
    sim = small_sim
    c, f, m, k = 3, 30, 1, 12
    assert sim.points3d.shape == (f, m, k, 3) and sim.points3d.dtype == np.float64
    assert sim.points2d.shape == (c, f, m, k, 2) and sim.points2d.dtype == np.float64
    for name in ("visible", "in_image", "occluded", "missed"):
        assert getattr(sim, name).shape == (c, f, m, k) and getattr(sim, name).dtype == bool
    assert sim.behavior.shape == (f, m) and sim.behavior.dtype == object
    assert sim.camera_names == ["cam0", "cam1", "cam2"]
    assert sim.individual_names == ["mouse0"]
    assert sim.keypoint_names == default_qd_mouse_skeleton().keypoints
    for cam in sim.calibration:
        assert cam.size == (320, 240)
        # ~500-750 px at 640x480, i.e. half that at 320x240; mild barrel distortion.
        assert 200 < cam.matrix[0, 0] < 400
        assert -0.2 < cam.dist[0] < 0 and abs(cam.dist[2]) < 1e-3
        # Cameras stand outside the arena, above the floor.
        assert np.hypot(*cam.center[:2]) > sim.config.arena_size / 2 and cam.center[2] > 100


def test_points2d_are_exact_projections_and_visibility_is_consistent(small_sim):
    sim = small_sim
    for c, cam in enumerate(sim.calibration):
        np.testing.assert_array_equal(sim.points2d[c], cam.project(sim.points3d))
    expected = sim.in_image & ~sim.occluded & ~sim.missed
    np.testing.assert_array_equal(sim.visible, expected)
    x, y = sim.points2d[..., 0], sim.points2d[..., 1]
    assert (x[sim.visible] >= 0).all() and (x[sim.visible] <= 319).all()
    assert (y[sim.visible] >= 0).all() and (y[sim.visible] <= 239).all()


def test_dots_sit_outside_bodies_and_above_the_floor(two_mice_sim):
    sim = two_mice_sim
    n_f = sim.points3d.shape[0]
    pts = sim.points3d.reshape(n_f, -1, 3)
    c = sim.ellipsoid_centers.reshape(n_f, -1, 3)
    r = sim.ellipsoid_rotations.reshape(n_f, -1, 3, 3)
    a = sim.ellipsoid_axes.reshape(n_f, -1, 3)
    assert not inside_ellipsoids(pts, c, r, a, margin=0.5).any()
    assert (sim.points3d[..., 2] > 0).all()


def test_body_hides_a_paw_from_a_camera_behind_it(small_sim):
    """Constructed case: a camera on the far side of the body from a paw cannot see it, a
    camera on the paw's side can."""
    sim = small_sim
    k = sim.skeleton.index("paw_hind_left")
    f = 0
    paw = sim.points3d[f, 0, k]
    body = sim.ellipsoid_centers[f, 0, 0]  # rear body
    away = (body - paw) / np.linalg.norm(body - paw)
    behind = paw + away * 600.0  # looking at the paw through the body
    side = paw - away * 600.0
    side[2] = abs(side[2]) + 300.0  # on the paw's side, above the floor
    args = (sim.ellipsoid_centers[f:f + 1, 0], sim.ellipsoid_rotations[f:f + 1, 0],
            sim.ellipsoid_axes[f:f + 1, 0])
    target = paw[None, None, :]
    assert segment_hits_ellipsoids(behind, target, *args)[0, 0]
    assert not segment_hits_ellipsoids(side, target, *args)[0, 0]


def test_paws_are_often_occluded_and_occluded_dots_are_invisible(two_mice_sim):
    sim = two_mice_sim
    skel = sim.skeleton
    paws = [skel.index(n) for n in skel.regions["paws"]]
    paw_occ = sim.occluded[..., paws].mean()
    assert 0.2 < paw_occ < 0.8, paw_occ  # self-occlusion by the body matters
    assert not (sim.visible & sim.occluded).any()


def test_one_mouse_hides_dots_of_the_other(two_mice_sim):
    sim = two_mice_sim
    by_other = occluded_mask(sim.calibration, sim.points3d[:, :1], sim.ellipsoid_centers[:, 1:],
                             sim.ellipsoid_rotations[:, 1:], sim.ellipsoid_axes[:, 1:])
    assert by_other.any()  # mutual occlusion happens ...
    assert (sim.occluded[:, :, :1] | ~by_other).all()  # ... and is part of `occluded`
    assert not (sim.visible[:, :, :1] & by_other).any()


def test_occluded_dots_are_not_drawn(small_sim):
    sim = small_sim
    cands = np.argwhere(sim.occluded & sim.in_image & ~sim.missed)
    assert len(cands) > 0
    checked = 0
    for c, f, m, k in cands[:40]:
        x, y = sim.points2d[c, f, m, k]
        others = sim.points2d[c, f][sim.visible[c, f]]
        if len(others) and np.min(np.hypot(*(others - (x, y)).T)) < 5:
            continue  # a visible neighbour's glow would overlap
        with_dots = sim.render(c, f, noise=False, distractors=False).astype(float)
        without = sim.render(c, f, noise=False, distractors=False, dots=False).astype(float)
        iy, ix = int(round(y)), int(round(x))
        patch = (slice(iy - 1, iy + 2), slice(ix - 1, ix + 2))
        assert np.abs(with_dots[patch] - without[patch]).max() <= 1.0
        checked += 1
    assert checked > 0


def _centroid(diff: np.ndarray, x: float, y: float, radius: int) -> tuple[float, float]:
    iy, ix = int(round(y)), int(round(x))
    ys, xs = np.mgrid[iy - radius: iy + radius + 1, ix - radius: ix + radius + 1]
    w = np.clip(diff[ys, xs], 0, None)
    return float((w * xs).sum() / w.sum()), float((w * ys).sum() / w.sum())


def test_rendered_dot_centroids_sit_on_the_truth(small_sim):
    """Intensity-weighted centroids of the glows (noise-free render minus the same render
    without dots) sit on the exact projections, sub-pixel."""
    sim = small_sim
    errors = []
    for c in range(3):
        for f in (0, 15, 29):
            diff = (sim.render(c, f, noise=False, distractors=False).astype(float)
                    - sim.render(c, f, noise=False, distractors=False, dots=False))
            pts = sim.points2d[c, f][sim.visible[c, f]]
            for x, y in pts:
                near = np.hypot(*(pts - (x, y)).T)
                if np.sort(near)[1:2].min(initial=99) < 9 or not (5 < x < 314 and 5 < y < 234):
                    continue  # isolated dots away from the border
                cx, cy = _centroid(diff, x, y, 3)
                errors.append(np.hypot(cx - x, cy - y))
    errors = np.array(errors)
    assert len(errors) >= 30
    assert errors.max() < 0.5, errors.max()
    assert errors.mean() < 0.2, errors.mean()


def test_same_seed_same_session_other_seed_differs():
    cfg = SynthConfig(n_cameras=2, n_frames=20, width=160, height=120, n_mice=2, seed=5)
    a, b = simulate(cfg), simulate(cfg)
    for name in ("points3d", "points2d", "visible", "brightness", "missed"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.behavior, b.behavior)
    np.testing.assert_array_equal(a.render(1, 7), b.render(1, 7))
    for cam_a, cam_b in zip(a.calibration, b.calibration):
        np.testing.assert_array_equal(cam_a.matrix, cam_b.matrix)
    c = simulate(SynthConfig(n_cameras=2, n_frames=20, width=160, height=120, n_mice=2, seed=6))
    assert not np.allclose(a.points3d, c.points3d)
    assert not np.array_equal(a.render(1, 7), c.render(1, 7))


def test_all_solo_behaviors_appear_and_bouts_last_seconds():
    sim = simulate(SynthConfig(n_cameras=1, n_frames=900, width=160, height=120, seed=2))
    labels = set(sim.behavior[:, 0])
    assert labels == set(SOLO_BEHAVIORS)
    durations = [s.n_frames / sim.config.fps for s in sim.bouts()]
    inner = durations[1:-1]  # the last bout is cut by the session end
    assert min(inner) >= 0.9 and max(inner) <= 5.1


def test_two_mice_bouts_have_no_remnants_or_flicker():
    """No bout of a few frames in the truth: a solitary bout interrupted by a social episode is
    not resumed for its last frames, a solitary episode does not start a bout it has no room
    for, and a sniffer stepping back to the nose stays ``sniff`` (the schedule used to leave
    2-13-frame bouts and sniff/walk flicker that no observer could see)."""
    for seed in (0, 1, 2):
        sim = simulate(SynthConfig(n_cameras=1, n_frames=1800, width=160, height=120, n_mice=2,
                                   seed=seed))
        fps = sim.config.fps
        for m, name in enumerate(sim.individual_names):
            bouts = [b for b in sim.bouts() if b.subject == name]
            for prev, bout, nxt in zip(bouts, bouts[1:], bouts[2:]):  # inner bouts only
                if bout.label in ("walk", "run") and nxt.label == "sniff":
                    continue  # the approach to a mouse that was already close is short
                assert bout.n_frames >= 0.5 * fps, (seed, name, bout)
            labels = [b.label for b in bouts]
            flicker = [i for i in range(len(labels) - 2)
                       if labels[i] == labels[i + 2] == "sniff"]
            assert not flicker, (seed, name, flicker)


def test_two_mice_chase_sniff_and_never_interpenetrate(two_mice_sim):
    sim = two_mice_sim
    labels = set(sim.behavior.ravel())
    assert {"chase", "sniff"} <= labels <= set(BEHAVIORS)
    # Social labels name the other mouse as target; solitary ones none.
    social = np.isin(sim.behavior, ["chase", "sniff"])
    assert (sim.target[social] == 1 - np.nonzero(social)[1]).all()
    assert (sim.target[~social] == -1).all()
    # A sniffer's nose (tip of its head) is at the other mouse's rear or nose: within
    # 1.5 x SNIFF_DISTANCE of a point SNIFF_OFFSET mm beyond the other's rear end or nose tip
    # (at most 24 mm x 1.07 from one of its body centres).
    f, m = np.argwhere(sim.behavior == "sniff").T
    nose = (sim.ellipsoid_centers[f, m, 2]
            + sim.ellipsoid_rotations[f, m, 2, :, 0] * sim.ellipsoid_axes[f, m, 2, 0:1])
    other = sim.ellipsoid_centers[f, 1 - m]  # (N, 3 parts, 3)
    gap = np.linalg.norm(other - nose[:, None, :], axis=-1).min(axis=1)
    assert gap.max() < 1.5 * SNIFF_DISTANCE + SNIFF_OFFSET + 24.0 * 1.07 + 2.0, gap.max()
    # Surface samples of each mouse's body never enter the other's.
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(64, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    for a in (0, 1):
        b = 1 - a
        local = dirs[None, None] * sim.ellipsoid_axes[:, a, :, None, :]  # (F, P, N, 3)
        surf = sim.ellipsoid_centers[:, a, :, None, :] + np.einsum(
            "fpij,fpnj->fpni", sim.ellipsoid_rotations[:, a], local)
        n_f = surf.shape[0]
        inside = inside_ellipsoids(surf.reshape(n_f, -1, 3), sim.ellipsoid_centers[:, b],
                                   sim.ellipsoid_rotations[:, b], sim.ellipsoid_axes[:, b])
        assert not inside.any(), np.nonzero(inside)[0][:5]
    # Dots of the two mice come close together at times.
    closest = np.linalg.norm(sim.points3d[:, 0, :, None] - sim.points3d[:, 1, None], axis=-1).min()
    assert closest < 30.0


def test_motion_is_smooth_and_inside_the_arena(two_mice_sim):
    sim = two_mice_sim
    half = sim.config.arena_size / 2
    body = sim.ellipsoid_centers[:, :, 0]
    assert (np.abs(body[..., :2]) < half).all()
    speed = np.linalg.norm(np.diff(body, axis=0), axis=-1) * sim.config.fps
    assert speed.max() < 700.0  # mm/s; a running mouse tops out around 400
    assert speed.mean() > 20.0  # they do move


def test_missed_dots_follow_the_dropout_rate():
    sim = simulate(SynthConfig(n_cameras=2, n_frames=600, width=160, height=120, dropout_rate=0.1))
    assert 0.06 < sim.missed.mean() < 0.14
    easy = simulate(SynthConfig.preset("easy", n_cameras=2, n_frames=30, width=160, height=120))
    assert not easy.missed.any()


def test_config_validation_and_presets():
    assert SynthConfig.preset("hard").noise_sigma > SynthConfig().noise_sigma
    assert SynthConfig.preset("easy", seed=4).seed == 4
    with pytest.raises(ValueError, match="n_mice"):
        SynthConfig(n_mice=3)
    with pytest.raises(ValueError, match="arena_size"):
        SynthConfig(arena_size=200)
    with pytest.raises(ValueError, match="even"):
        SynthConfig(width=321)
    with pytest.raises(ValueError, match="difficulty"):
        SynthConfig.preset("impossible")
    cfg = SynthConfig.preset("hard", n_frames=10)
    assert SynthConfig.from_dict(cfg.to_dict()) == cfg


def test_distractors_exist_by_default_and_not_when_easy(small_sim):
    sim = small_sim
    extra = [
        (sim.render(c, f, noise=False).astype(float)
         - sim.render(c, f, noise=False, distractors=False)).max()
        for c in range(3) for f in range(0, 30, 5)
    ]
    assert max(extra) > 60  # reflections / eye shine / hot pixels as bright as real dots
    easy = simulate(SynthConfig.preset("easy", n_cameras=2, n_frames=5, width=160, height=120))
    for f in range(5):
        np.testing.assert_array_equal(easy.render(1, f, noise=False),
                                      easy.render(1, f, noise=False, distractors=False))
