"""A lost keypoint found again among the dots nobody holds (``pose/reacquire.py``)."""

from __future__ import annotations

import numpy as np

from napari_behaviorvlm.core.pose import Flag
from napari_behaviorvlm.pose.candidates import Candidates
from napari_behaviorvlm.pose.reacquire import MAX_FREE_DOTS, free_dots, free_points
from napari_behaviorvlm.pose.refine import BodyModel, RefineParams, refine_frame
from tests.pose.pose_fixtures import small_sim


def _cands(xy: np.ndarray) -> Candidates:
    xy = xy[np.isfinite(xy).all(axis=1)]
    return Candidates(xy, np.full(len(xy), 100.0), np.full(len(xy), 9.0))


def _frame(n_mice: int = 1):
    """(sim, body, true pose ``(M, K, 3)``) of the first frame past the seeds where mouse 0's
    tail tip and front paws sit well at their places on the seeds' body (a paw reaching far
    from every seed pose is no case for the body-place rule) and no two dots of a view are
    within 2 px (a dot on another keypoint's is held by that keypoint's label)."""
    sim, seeds, _ = small_sim(n_mice=n_mice)
    body = BodyModel.from_seeds(sim.skeleton, [sim.points3d[f].astype(float) for f in seeds])
    names = ("tail_tip", "paw_front_left", "paw_front_right")
    for f in range(sim.n_frames):
        true = sim.points3d[f].astype(float)
        fits = []
        for k in map(sim.skeleton.index, names):
            without = true.copy()
            without[0, k] = np.nan
            fits.append(body.point_residuals(without, true[0, k])[0, k])
        xy = sim.calibration.project(true).reshape(len(sim.calibration), -1, 2)
        ids = [sim.skeleton.index(n) for n in names]
        gaps = np.linalg.norm(xy[:, ids, None] - xy[:, None], axis=-1)  # (C, 3, M K)
        gaps[:, np.arange(len(ids)), ids] = np.inf
        if f not in seeds and max(fits) < 0.5 and gaps.min() > 2.0:
            return sim, body, true
    raise AssertionError("no frame fits")


def test_free_points_are_dots_no_label_holds_that_three_views_agree_on():
    sim, _, true = _frame()
    group = sim.calibration
    tip = sim.skeleton.index("tail_tip")
    labels = group.project(true)  # (C, M, K, 2)
    spot = true[0, tip] + np.array([0.0, 0.0, 30.0])
    spot_xy = group.project(spot[None])[:, 0]
    n_cam = len(group)
    # every view: the keypoints' dots and the spot; two views also a stray dot
    stray = [np.array([[5.0, 7.0]]), np.array([[600.0, 9.0]])] + [np.zeros((0, 2))] * (n_cam - 2)
    cands = [_cands(np.vstack([labels[c, 0], spot_xy[c][None], stray[c]])) for c in range(n_cam)]
    labels[:, 0, tip] = np.nan  # the tail tip's dots are nobody's
    found = free_points(group, cands, labels, agree_px=2.0, min_views=3)
    dist = np.linalg.norm(found.points3d[:, None] - np.stack([true[0, tip], spot])[None], axis=-1)
    assert len(found) == 2 and (dist.min(axis=0) < 0.5).all()
    for p in range(2):  # each point names its dot in every view
        for c in range(n_cam):
            xy = cands[c].xy[found.dots[p, c]]
            assert np.linalg.norm(xy - group[c].project(found.points3d[p][None])[0]) < 0.5
    # held dots are no free points; neither are dots only two views show
    assert len(free_points(group, cands, group.project(true), 2.0, min_views=3)) == 1
    assert len(free_points(group, cands, labels, 2.0, min_views=n_cam + 1)) == 0


def test_a_view_full_of_faint_dots_searches_only_its_brightest():
    # 300 faint dots per view (reflections, noise) and the tail tip's bright one: paired
    # unbounded, the views' dots would make 15 x 300^2 points to check
    sim, _, true = _frame()
    group = sim.calibration
    tip = sim.skeleton.index("tail_tip")
    labels = group.project(true)
    labels[:, 0, tip] = np.nan
    rng = np.random.default_rng(1)
    cands = []
    for c in range(len(group)):
        xy = np.vstack([group[c].project(true[0, tip][None]), rng.uniform(0, 480, (300, 2))])
        peak = np.r_[200.0, rng.uniform(20, 60, 300)]
        cands.append(Candidates(xy, peak.astype(np.float32), np.full(len(xy), 9, np.int32)))
    free = free_dots(cands, labels, max_dots=MAX_FREE_DOTS)
    assert all(len(f) == MAX_FREE_DOTS and 0 in f for f in free)
    found = free_points(group, cands, labels, agree_px=2.0, min_views=len(group))
    assert np.linalg.norm(found.points3d - true[0, tip], axis=1).min() < 0.5


def _refine_lost(true, sim, body, lost, extra=(), params=None, n_mice=1):
    """Stage 4 on a frame where the keypoints ``lost`` ((individual, name) pairs) are model
    keypoints without labels whose predictions lie 30 mm off (a stale seed pose); every
    other keypoint is a human label. Each view's candidates: the true dots of every keypoint
    and the projections of the 3D points ``extra``."""
    group = sim.calibration
    obs = group.project(true)
    n_cam, n_ind, n_kp = obs.shape[:3]
    human = np.ones((n_cam, n_ind, n_kp), bool)
    pred = true.copy()
    for m, name in lost:
        k = sim.skeleton.index(name)
        human[:, m, k] = False
        pred[m, k] += np.array([30.0, 0.0, 0.0])
    spots = group.project(np.array(extra).reshape(-1, 3))  # (C, E, 2)
    cands = [_cands(np.vstack([obs[c].reshape(-1, 2), spots[c]])) for c in range(n_cam)]
    obs[~human] = np.nan
    shape = (n_cam, n_ind, n_kp)
    return refine_frame(group, sim.skeleton, obs, human, cands, np.full(shape, -1),
                        np.full(shape, 0.9), np.full(shape, 5.0), np.zeros(shape, np.uint16),
                        pred, np.full((n_ind, n_kp), 4.0), params or RefineParams(), body=body)


def test_a_lost_tail_tip_takes_its_free_dot_back():
    sim, body, true = _frame()
    tip = (0, sim.skeleton.index("tail_tip"))
    # the retry near the stale prediction finds nothing: lost without re-acquisition
    off = _refine_lost(true, sim, body, [(0, "tail_tip")], params=RefineParams(reacquire_min_views=0))
    assert off.n_views[tip] == 0
    out = _refine_lost(true, sim, body, [(0, "tail_tip")])
    assert out.n_views[tip] == len(sim.calibration)
    assert np.linalg.norm(out.points3d[tip] - true[tip]) < 0.5
    assert not out.flags[:, 0, tip[1]].any()


def test_a_free_dot_off_the_body_is_nobodys():
    sim, body, true = _frame()
    tip = sim.skeleton.index("tail_tip")
    spot = true[0, 3] + np.array([0.0, 0.0, 40.0])  # 40 mm above the back
    out = _refine_lost(true, sim, body, [(0, "tail_tip")], extra=[spot])
    assert np.linalg.norm(out.points3d[0, tip] - true[0, tip]) < 0.5
    # the tail tip's own dot gone: the spot stays free and the tail tip lost
    far = true.copy()
    far[0, tip] = spot
    out = _refine_lost(far, sim, body, [(0, "tail_tip")])
    assert out.n_views[0, tip] == 0 and (out.flags[:, 0, tip] == int(Flag.FEW_VIEWS)).all()


def test_both_front_paws_lost_each_takes_the_dot_on_its_side():
    sim, body, true = _frame()
    paws = [(0, "paw_front_left"), (0, "paw_front_right")]
    off = _refine_lost(true, sim, body, paws, params=RefineParams(reacquire_min_views=0))
    out = _refine_lost(true, sim, body, paws)
    for _, name in paws:
        k = sim.skeleton.index(name)
        assert off.n_views[0, k] == 0
        assert np.linalg.norm(out.points3d[0, k] - true[0, k]) < 0.5


def test_a_dot_two_lost_keypoints_fit_alike_is_left_alone():
    sim, body, true = _frame(n_mice=2)
    tip = sim.skeleton.index("tail_tip")
    lost = [(0, "tail_tip"), (1, "tail_tip")]
    out = _refine_lost(true, sim, body, lost)
    assert np.linalg.norm(out.points3d[0, tip] - true[0, tip]) < 0.5
    # mouse 1 on mouse 0's place with mouse 0's body: nothing says whose tail tip a dot is
    twin = true.copy()
    twin[1] = true[0]
    same = BodyModel(body.mean_dist[[0, 0]], body.side[[0, 0]], body.midline,
                     body.min_dist[[0, 0]], body.max_dist[[0, 0]], body.n_seen[[0, 0]])
    out = _refine_lost(twin, sim, same, lost)
    assert out.n_views[0, tip] == 0 and out.n_views[1, tip] == 0
