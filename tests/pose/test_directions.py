"""Both directions through a gap between seed frames (``pose/directions.py`` and the
``both_directions`` labeling run)."""

from __future__ import annotations

import numpy as np

from napari_behaviorvlm.pose.directions import choose_backward, disagreement_runs
from napari_behaviorvlm.pose.pipeline import (SETTINGS_KEY, LabelingConfig,
                                              _pick_without_new_sharers, run_labeling)
from napari_behaviorvlm.pose.refine import BodyModel, FrameResult
from tests.pose.pose_fixtures import new_project, small_sim


def test_disagreement_runs_are_the_stretches_where_two_labelings_part():
    sim, _, _ = small_sim()
    forward = sim.points3d[:10].astype(float)
    backward = forward.copy()
    backward[3:6, 0, 5] += [15.0, 0.0, 0.0]  # a paw on another dot for 3 frames
    backward[8, 0, 2] = np.nan  # one labeling lost a keypoint
    forward[1, 0, 4] = backward[1, 0, 4] = np.nan  # both lost it: they agree
    backward[7, 0, 6] += [1.5, 0.0, 0.0]  # within the tolerance
    assert disagreement_runs(forward, backward) == [(0, 2, 8, 8), (0, 5, 3, 5)]
    assert disagreement_runs(forward, forward) == []


def _gap_with_a_wrong_track(n_frames=14, first=5, last=8):
    """True poses of two mice over ``n_frames`` and a copy where mouse 0's front left paw sits
    on mouse 1's tail tip over ``first..last``; the body model of the seeds."""
    sim, seeds, _ = small_sim(4, 40, 2, 0)
    body = BodyModel.from_seeds(sim.skeleton, [sim.points3d[s] for s in seeds])
    truth = sim.points3d[10:10 + n_frames].astype(float)
    wrong = truth.copy()
    paw, tip = sim.skeleton.index("paw_front_left"), sim.skeleton.index("tail_tip")
    wrong[first:last + 1, 0, paw] = truth[first:last + 1, 1, tip]
    return truth, wrong, body, (0, paw), slice(first, last + 1)


def test_the_track_that_left_its_dot_loses_whichever_seed_is_nearer():
    truth, wrong, body, (m, k), run = _gap_with_a_wrong_track()
    none = np.zeros(truth.shape[:3], bool)
    n = len(truth)
    for nearer_backward in (np.zeros(n, bool), np.ones(n, bool), np.arange(n) > n // 2):
        # forward wrong: the run takes the backward labels; everything else keeps the nearer
        take = choose_backward(wrong, truth, none, none, body, nearer_backward)
        assert take[run, m, k].all()
        outside = np.ones(truth.shape[:3], bool)
        outside[run, m, k] = False
        expected = np.broadcast_to(nearer_backward[:, None, None], take.shape)
        np.testing.assert_array_equal(take[outside], expected[outside])
        # backward wrong: the run keeps the forward labels
        take = choose_backward(truth, wrong, none, none, body, nearer_backward)
        assert not take[run, m, k].any()


def test_a_track_doubted_over_the_run_loses_to_one_without_doubt():
    truth, _, body, (m, k), run = _gap_with_a_wrong_track()
    # the two labelings differ by 3 mm (both near the body's place, no jump to speak of);
    # the forward one is flagged over the run, the backward one is not
    other = truth.copy()
    other[run, m, k] += [3.0, 0.0, 0.0]
    flagged = np.zeros(truth.shape[:3], bool)
    flagged[run, m, k] = True
    none = np.zeros_like(flagged)
    nearer = np.zeros(len(truth), bool)
    assert choose_backward(other, truth, flagged, none, body, nearer)[run, m, k].all()
    assert not choose_backward(truth, other, none, flagged, body, nearer)[run, m, k].any()


def test_a_both_directions_run_merges_each_gap_once_and_resumes_after_a_stop():
    sim, seeds, source = small_sim(4, 40, 2, 0)
    first, last = min(seeds), max(seeds)
    assert first >= 2 and last <= sim.n_frames - 3  # frames before and after the seeds
    # the gaps between seeds, and the frames before the first seed and after the last, from
    # the session's first and last frames
    gaps = sorted([[a, b] for a, b in zip(sorted(seeds)[:-1], sorted(seeds)[1:])]
                  + [[0, first], [last, sim.n_frames - 1]])
    nearer = new_project(sim, seeds)
    nearer_report = run_labeling(nearer, frame_source=source)
    both = new_project(sim, seeds)
    config = LabelingConfig(both_directions=True)
    report = run_labeling(both, frame_source=source, config=config)
    assert both.settings[SETTINGS_KEY]["both_directions"] == gaps
    # each frame is reported once, but the gaps' frames were labeled twice
    assert sorted(report.frames_done) == sorted(nearer_report.frames_done)
    n_gap = sum(b - a - 1 for a, b in gaps)
    assert report.view_frames == nearer_report.view_frames + n_gap * both.poses.n_cameras
    # the merge changed exactly the keypoints it says it took from the other direction, all
    # inside the stretches (not their ends), and no seed label
    moved = ~np.isclose(both.poses.points3d, nearer.poses.points3d, equal_nan=True).all(axis=-1)
    assert report.n_other_direction > 0
    assert moved.sum() == report.n_other_direction
    inside = np.zeros(sim.n_frames, bool)
    for a, b in gaps:
        inside[a + 1:b] = True
    assert not moved[~inside].any()
    np.testing.assert_array_equal(both.poses.points2d[:, seeds], nearer.poses.points2d[:, seeds])
    # a rerun has nothing left to do
    again = run_labeling(both, frame_source=source, config=config)
    assert again.view_frames == 0 and again.n_other_direction == 0
    # stopped while labeling the farther halves: the table keeps its nearer-seed labels
    # and a rerun ends where the whole run did
    part = new_project(sim, seeds)
    calls = {"n": 0}
    n_main = len(nearer_report.frames_done)

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > n_main + n_gap // 2

    stopped = run_labeling(part, frame_source=source, config=config, should_stop=stop)
    assert stopped.cancelled and "both_directions" not in part.settings[SETTINGS_KEY]
    assert part.poses.equals(nearer.poses)
    resumed = run_labeling(part, frame_source=source, config=config)
    assert not resumed.cancelled and resumed.frames_done == []
    assert resumed.n_other_direction == report.n_other_direction
    assert part.poses.equals(both.poses)
    assert part.settings[SETTINGS_KEY]["both_directions"] == gaps


def _frame_result(points2d):
    """A stage-4 result whose 2D labels are ``points2d`` ``(C, M, K, 2)``."""
    shape = points2d.shape[:3]
    return FrameResult(points2d, np.ones(shape), np.zeros(shape), np.zeros(shape, np.uint16),
                       np.zeros(shape[1:] + (3,)), np.full(shape[1:], shape[0]))


def test_a_keypoint_taken_from_the_other_direction_onto_a_named_dot_keeps_its_default():
    default = np.arange(2 * 2 * 3 * 2, dtype=float).reshape(2, 2, 3, 2)  # all apart
    default[1, 1, 0] = default[1, 1, 1]  # two default labels at one position (two humans)
    other = default + 100.0
    other[0, 0, 2] = default[0, 1, 2]  # mouse 0 keypoint 2 onto mouse 1 keypoint 2's dot
    take = np.zeros((2, 3), bool)
    take[0, 1] = take[0, 2] = True
    merged, taken = _pick_without_new_sharers(_frame_result(default), _frame_result(other), take)
    # the taken keypoint on a named dot went back, the other stayed taken; the two default
    # labels together stay (and do not stop the merge)
    assert taken.tolist() == [[False, True, False], [False, False, False]]
    assert np.array_equal(merged.points2d[:, 0, 1], other[:, 0, 1])
    assert np.array_equal(merged.points2d[:, 0, 2], default[:, 0, 2])
    assert np.array_equal(merged.points2d[1, 1, 0], merged.points2d[1, 1, 1])
    assert take[0, 2]  # the caller's mask is not changed
