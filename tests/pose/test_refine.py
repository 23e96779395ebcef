"""Flag rules of stage 4 (``pose/refine.py``) on the simulator's true poses."""

from __future__ import annotations

import attrs
import numpy as np

from napari_behaviorvlm.core.pose import Flag
from napari_behaviorvlm.pose.refine import BodyModel, RefineParams, score_frame
from tests.pose.pose_fixtures import small_sim


def _score(sim, body, x3, params):
    """Flags of one frame whose labels are the exact projections of ``x3`` ``(M, K, 3)`` mm."""
    obs = sim.calibration.project(x3)  # (C, M, K, 2)
    n_cam, n_ind, n_kp = obs.shape[:3]
    shape = (n_cam, n_ind, n_kp)
    n_views = np.full((n_ind, n_kp), n_cam)
    return score_frame(sim.calibration, sim.skeleton, obs, np.zeros(shape, bool), x3, n_views,
                       np.full(shape, 0.9), np.full(shape, 1.0), np.zeros(shape, np.uint16),
                       np.full((n_ind, n_kp, 3), np.nan), np.full((n_ind, n_kp), 10.0), params,
                       body)


def test_range_residual_flags_a_consistent_wrong_track():
    sim, seeds, _ = small_sim()
    body = BodyModel.from_seeds(sim.skeleton, [sim.points3d[f] for f in seeds])
    # no rigid links: the older rigid-link rule cannot see anything, only the seed-range rule
    body = attrs.evolve(body, rigid=np.zeros_like(body.rigid))
    params = RefineParams()
    frame = next(f for f in range(sim.n_frames) if f not in seeds)
    true = sim.points3d[frame].astype(float)
    # the true pose is inside the seeds' ranges (up to the body's motion): no flag
    resid = body.range_residual(true, params.range_spread_factor)
    assert np.nanmax(resid) < params.range_tolerance_mm
    assert not (_score(sim, body, true, params).flags & int(Flag.AMBIGUOUS)).any()
    # a paw tracked on a dot 40 mm above it, seen consistently by every view (reprojection
    # error 0, same side of the body)
    paw = sim.skeleton.index("paw_front_left")
    wrong = true.copy()
    wrong[0, paw] += np.array([0.0, 0.0, 40.0])
    disabled = attrs.evolve(params, range_tolerance_mm=np.inf)
    assert not _score(sim, body, wrong, disabled).flags.any()
    resid = body.range_residual(wrong, params.range_spread_factor)
    assert resid[0, paw] > params.range_tolerance_mm
    out = _score(sim, body, wrong, params)
    assert (out.flags[:, 0, paw] & int(Flag.AMBIGUOUS)).all()
    assert not (out.flags[:, 0, paw] & int(Flag.HIGH_REPROJ_ERROR)).any()
    # the keypoints that stayed in place are not blamed for the wrong one
    others = [k for k in range(sim.skeleton.n_keypoints) if k != paw]
    assert not (out.flags[:, 0, others] & int(Flag.AMBIGUOUS)).any()
