"""Body-attached distractors learned from the seeds (``pose/decoys.py``), their part in stage 3
and the region offset of stage 1 (``pose/reasoner.py``)."""

from __future__ import annotations

import numpy as np

from napari_behaviorvlm.pose.candidates import Candidates
from napari_behaviorvlm.pose.decoys import Decoys, find_unlabeled_points
from napari_behaviorvlm.pose.reasoner import LocalReasoner, ViewContext, _fit_offsets, harmonize
from tests.pose.pose_fixtures import small_sim


def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _eye(pose: np.ndarray, sim, left: bool) -> np.ndarray:
    """A spot rigidly attached to the head: 9 mm in front of the ear, 2 mm lower."""
    ear_l, ear_r, back = (pose[sim.skeleton.index(n)] for n in ("ear_left", "ear_right", "back_front"))
    mid = (ear_l + ear_r) / 2
    fwd = mid - back
    fwd /= np.linalg.norm(fwd)
    ear = ear_l if left else ear_r
    return ear + 9.0 * fwd - np.array([0.0, 0.0, 2.0])


def test_decoys_learned_from_two_seeds_one_mirrored_follow_the_head():
    sim, seeds, _ = small_sim()
    base = sim.points3d[seeds[0]].astype(float)  # (1, K, 3)
    poses = [base @ _rot_z(a).T + t for a, t in [(0.0, 0.0), (1.1, [30.0, -20.0, 0.0]),
                                                 (2.5, [-40.0, 10.0, 0.0])]]
    # the left eye's spot shows in seeds 0 and 2, the right one's only in seed 1; plus one
    # spot that moves with nothing (a floor reflection at a different place in every seed)
    points = [np.array([_eye(poses[0][0], sim, True), [200.0, 0.0, 0.0]]),
              np.array([_eye(poses[1][0], sim, False), [0.0, 200.0, 0.0]]),
              np.array([_eye(poses[2][0], sim, True)])]
    decoys = Decoys.from_seeds(poses, points, sim.skeleton.mirror_index())
    assert len(decoys) == 2  # the left eye, confirmed, and its mirror image; no reflection
    new = base @ _rot_z(-0.7).T + np.array([15.0, 25.0, 3.0])
    pred, sig = decoys.predict(new, np.full(new.shape[:2], 2.0))
    want = np.array([_eye(new[0], sim, True), _eye(new[0], sim, False)])
    err = np.linalg.norm(pred[:, None] - want[None], axis=-1).min(axis=0)
    assert err.max() < 1.5  # the mirror image assumes a symmetric head: the seed pose is nearly so
    assert np.allclose(sig, 2.0)
    # a spot seen in a single seed is not a decoy
    assert len(Decoys.from_seeds(poses, [points[0], np.zeros((0, 3)), np.zeros((0, 3))])) == 0


def _turn(v: np.ndarray, axis: np.ndarray, angle: float) -> np.ndarray:
    """``v`` turned by ``angle`` about the unit ``axis`` (Rodrigues)."""
    return (v * np.cos(angle) + np.cross(axis, v) * np.sin(angle)
            + axis * (axis @ v) * (1.0 - np.cos(angle)))


def test_an_eye_rigid_to_the_ears_is_learned_while_the_head_nods():
    # the body turns about the ear-ear axis from seed to seed (the head nods against it): the
    # eye keeps its distances to the ears but moves ~4 mm in the frame the third anchor spans
    sim, seeds, _ = small_sim()
    base = sim.points3d[seeds[0]].astype(float)
    ears = [sim.skeleton.index(n) for n in ("ear_left", "ear_right")]
    body = [k for k in range(base.shape[1]) if k not in ears]
    poses, points = [], []
    for angle, nod, shift in [(0.0, 0.0, [0.0, 0.0, 0.0]), (1.1, 0.45, [30.0, -20.0, 0.0]),
                              (2.5, -0.45, [-40.0, 10.0, 0.0])]:
        pose = base.copy()
        eye = _eye(pose[0], sim, True)
        axis = pose[0, ears[0]] - pose[0, ears[1]]
        centre = pose[0, ears].mean(axis=0)
        for k in body:
            pose[0, k] = centre + _turn(pose[0, k] - centre, axis / np.linalg.norm(axis), nod)
        poses.append(pose @ _rot_z(angle).T + shift)
        points.append((eye @ _rot_z(angle).T + shift)[None])
    assert len(Decoys.from_seeds(poses, points, loose_mm=3.0)) == 0  # the frame alone: no match
    decoys = Decoys.from_seeds(poses, points)
    assert len(decoys) == 1 and set(ears) <= set(decoys.anchors[0])
    pred, _ = decoys.predict(poses[0], np.full(base.shape[:2], 2.0))
    assert np.linalg.norm(pred[0] - points[0][0]) < 3.0
    # two seeds are enough; a spot 2 mm farther from the ears in the other is not the same
    assert len(Decoys.from_seeds(poses, [points[0], points[1], np.zeros((0, 3))])) == 1
    ear = poses[1][0, ears[0]]
    away = points[1][0] + 2.0 * (points[1][0] - ear) / np.linalg.norm(points[1][0] - ear)
    assert len(Decoys.from_seeds(poses, [points[0], away[None], np.zeros((0, 3))])) == 0


def test_the_eyes_of_a_nodding_lopsided_head_confirm_each_other_past_a_paw_at_the_face():
    # the left eye's spot shows in seed 0, the right one's in seed 1 only; the head nods
    # between the seeds, and a front paw at the face keeps its distance to the left ear within
    # 1 mm while it circles the ear: by the seeds' spreads alone it would be the steadiest
    # third anchor
    sim, seeds, _ = small_sim()
    base = sim.points3d[seeds[0]].astype(float)
    ears = [sim.skeleton.index(n) for n in ("ear_left", "ear_right")]
    paw, neck = sim.skeleton.index("paw_front_left"), sim.skeleton.index("back_front")
    body = [k for k in range(base.shape[1]) if k not in ears]
    poses, points = [], []
    for i, (angle, nod, shift) in enumerate([(0.0, 0.0, [0.0, 0.0, 0.0]),
                                             (1.1, 0.45, [30.0, -20.0, 0.0]),
                                             (2.5, -0.45, [-40.0, 10.0, 0.0])]):
        pose = base.copy()
        eye = _eye(pose[0], sim, left=i != 1)
        axis = pose[0, ears[0]] - pose[0, ears[1]]
        centre = pose[0, ears].mean(axis=0)
        for k in body:
            pose[0, k] = centre + _turn(pose[0, k] - centre, axis / np.linalg.norm(axis), nod)
        circling = np.array([np.cos(2.0 * i), np.sin(2.0 * i), 0.0])
        pose[0, paw] = pose[0, ears[0]] + (12.0 + 0.5 * i) * circling
        poses.append(pose @ _rot_z(angle).T + shift)
        points.append((eye @ _rot_z(angle).T + shift)[None] if i < 2 else np.zeros((0, 3)))
    # no head is symmetric: the simulated one's right eye lies ~1 mm farther from the left ear
    # than its left eye from the right ear
    to_ears = [np.linalg.norm(points[i][0] - poses[i][0, ears], axis=1) for i in (0, 1)]
    assert 1.0 < np.abs(to_ears[0] - to_ears[1][::-1]).max() < 1.5
    mirror = sim.skeleton.mirror_index()
    assert len(Decoys.from_seeds(poses, points, mirror, mirror_rigid_mm=1.0)) == 0
    decoys = Decoys.from_seeds(poses, points, mirror)
    assert len(decoys) == 2  # the left eye and its mirror image
    assert {tuple(sorted(a)) for a in decoys.anchors} == {tuple(sorted(ears + [neck]))}
    pred, _ = decoys.predict(poses[0], np.full(base.shape[:2], 2.0))
    assert np.linalg.norm(pred - points[0][0], axis=-1).min() < 3.0


def test_a_skeleton_without_a_midline_still_anchors_its_decoys():
    # every keypoint paired left/right (a user's skeleton may name no midline keypoint): the
    # third anchor comes from the whole body, as without ``mirror``
    sim, seeds, _ = small_sim()
    base = sim.points3d[seeds[0]].astype(float)
    poses = [base @ _rot_z(a).T + t for a, t in [(0.0, 0.0), (1.1, [30.0, -20.0, 0.0]),
                                                 (2.5, [-40.0, 10.0, 0.0])]]
    points = [np.array([_eye(p[0], sim, True)]) for p in poses]
    paired = np.arange(base.shape[1]) ^ 1
    decoys = Decoys.from_seeds(poses, points, paired)
    assert len(decoys) >= 1
    pred, _ = decoys.predict(poses[0], np.full(base.shape[:2], 2.0))
    assert np.linalg.norm(pred - points[0][0], axis=-1).min() < 1.0


def test_a_keypoint_some_seed_did_not_show_is_no_decoy_anchor():
    # a paw held next to the left eye's spot in two seeds, unlabeled in the third: its distance
    # to the ear looks steady over the two that show it, and it is nearer the spot than the
    # back; with a seed missing it, nothing says it moves with the head
    sim, seeds, _ = small_sim()
    paw = sim.skeleton.index("paw_front_right")
    base = sim.points3d[seeds[0]].astype(float)
    base[0, paw] = _eye(base[0], sim, True) + np.array([0.0, 0.0, -10.0])  # the ear is nearer
    poses = [base @ _rot_z(a).T + t for a, t in [(0.0, 0.0), (1.1, [30.0, -20.0, 0.0]),
                                                 (2.5, [-40.0, 10.0, 0.0])]]
    points = [np.array([_eye(poses[0][0], sim, True)]), np.zeros((0, 3)),
              np.array([_eye(poses[2][0], sim, True)])]
    shown = Decoys.from_seeds(poses, points)
    assert len(shown) == 1 and paw in shown.anchors[0]  # every seed shows it: it is steady
    poses[1][0, paw] = np.nan
    decoys = Decoys.from_seeds(poses, points)
    assert len(decoys) == 1 and paw not in decoys.anchors[0]


def test_find_unlabeled_points_triangulates_unnamed_dots_only():
    sim, seeds, _ = small_sim()
    f = seeds[0]
    labels = sim.points2d[:, f].astype(float)
    spot = sim.points3d[f, 0, 0] + np.array([0.0, 0.0, 25.0])
    xy = sim.calibration.project(spot[None])[:, 0]  # (C, 2)
    cands = []
    for c in range(len(sim.calibration)):
        pts = np.vstack([labels[c].reshape(-1, 2), xy[c][None]])
        pts = pts[np.isfinite(pts).all(axis=1)]
        cands.append(Candidates(pts, np.full(len(pts), 100.0), np.full(len(pts), 9.0)))
    found = find_unlabeled_points(sim.calibration, labels, cands)
    assert len(found) == 1
    assert np.linalg.norm(found[0] - spot) < 0.5


def _ctx(sim, cand_xy, pred, sigma, decoys=None, decoy_sigma=None) -> ViewContext:
    n_kp = sim.skeleton.n_keypoints
    return ViewContext(
        camera=0, camera_name="cam0", frame=0,
        candidates=Candidates(np.asarray(cand_xy, float), np.full(len(cand_xy), 100.0),
                              np.full(len(cand_xy), 9.0)),
        predicted=pred, sigma=sigma, expected_visible=np.isfinite(pred).all(-1),
        locked=np.zeros((1, n_kp), bool), skeleton=sim.skeleton, individual_names=["mouse"],
        decoys=decoys, decoy_sigma=decoy_sigma)


def _harmonize_one(sim, name: str, sigma_px: float, cand_xy, shine=None):
    """Stage 3 on a view where only keypoint ``name`` is predicted, at (100, 100) px with
    ``sigma_px``; ``shine``: a decoy predicted there (sigma 2 px). Returns the keypoint's index
    and the assignment."""
    n_kp = sim.skeleton.n_keypoints
    k = sim.skeleton.index(name)
    pred = np.full((1, n_kp, 2), np.nan)
    sigma = np.full((1, n_kp), 2.0)
    pred[0, k] = [100.0, 100.0]
    sigma[0, k] = sigma_px
    decoy = (None, None) if shine is None else (np.array([shine], float), np.array([2.0]))
    ctx = _ctx(sim, cand_xy, pred, sigma, *decoy)
    reasoner = LocalReasoner()
    return k, harmonize(ctx, reasoner.assign_regions(ctx, reasoner.locate_regions(ctx)))


def test_a_decoy_keeps_an_uncertain_paw_off_the_eye_shine():
    sim, _, _ = small_sim()
    eye, paw_dot = [104.0, 100.0], [125.0, 100.0]
    # a re-anchored paw (sigma 12 px)
    paw, out = _harmonize_one(sim, "paw_front_left", 12.0, [eye, paw_dot])
    assert out.index[0, paw] == 0  # without the decoy the paw takes the eye's shine
    assert not out.decoy_dots.any()
    paw, out = _harmonize_one(sim, "paw_front_left", 12.0, [eye, paw_dot], [104.5, 100.0])
    assert out.index[0, paw] == 1
    assert out.decoy_dots.tolist() == [True, False]  # stage 4 is told the shine is the decoy's


def test_a_dot_a_keypoint_explains_better_is_not_the_decoys_though_it_won_it():
    # an ear on its dot, a second dot 4 px away: the ear takes its own; the decoy takes the
    # second, but only where its prediction explains that dot better than the ear's does is the
    # dot the decoy's for stage 4
    sim, _, _ = small_sim()
    for shine, is_decoys in [([109.0, 100.0], False), ([104.5, 100.0], True)]:
        ear, out = _harmonize_one(sim, "ear_left", 2.0, [[100.0, 100.0], [104.0, 100.0]], shine)
        assert out.index[0, ear] == 0
        assert out.decoy_dots.tolist() == [False, is_decoys]


def test_region_offset_does_not_slide_a_chain_by_one_dot():
    # a tail: the base predicted on its dot (sigma 2 px), mid and tip uncertain (11 px) and
    # 16 / 31 px off; the dots are 25 px apart along the chain, with one more dot before the
    # base (the back): sliding every keypoint onto the previous dot fits the uncertain ones
    dots = np.array([[100.0, 75.0], [100.0, 100.0], [100.0, 125.0], [100.0, 150.0]])
    pred = np.array([[100.0, 100.5], [100.0, 141.0], [100.0, 181.0]])
    sig = np.array([2.0, 11.0, 11.0])
    offset = _fit_regions([pred], [sig], dots)[0]
    assert np.linalg.norm(offset) < 2.0


def _fit_regions(preds: list[np.ndarray], sigmas: list[np.ndarray], dots: np.ndarray) -> np.ndarray:
    """Stage 1's offset fit of several regions given as lists (one array per region)."""
    region = np.repeat(np.arange(len(preds)), [len(p) for p in preds])
    return _fit_offsets(np.concatenate(preds), np.concatenate(sigmas), region, dots, 3.5, 12.0)


def test_region_offsets_fitted_together_equal_each_region_fitted_alone():
    # stage 1 fits every region of a view at once, each against only the candidates near it:
    # the offsets must be exactly those of one region at a time, and dots far beyond every
    # gate change nothing
    rng = np.random.default_rng(7)
    for _ in range(200):
        dots = rng.uniform(0, 400, (int(rng.integers(1, 50)), 2))
        preds, sigmas = [], []
        for _ in range(int(rng.integers(1, 9))):
            k = int(rng.integers(1, 5))
            preds.append(dots[rng.integers(len(dots))] + rng.normal(0, 12, (k, 2)))
            sigmas.append(rng.uniform(0.5, 20.0, k))
        together = _fit_regions(preds, sigmas, dots)
        assert together.shape == (len(preds), 2)
        for pred, sig, offset in zip(preds, sigmas, together):
            assert np.array_equal(offset, _fit_regions([pred], [sig], dots)[0])
        far = np.vstack([dots, rng.uniform(2000, 3000, (5, 2))])
        assert np.array_equal(_fit_regions(preds, sigmas, far), together)
    # a region whose keypoints all moved by the same shift onto their dots is found there
    dots = np.array([[50.0, 50.0], [60.0, 52.0], [70.0, 55.0], [200.0, 200.0]])
    offset = _fit_regions([dots[:3] - [6.0, -4.0]], [np.full(3, 3.0)], dots)[0]
    np.testing.assert_allclose(offset, [6.0, -4.0], atol=1e-9)
