"""The local pipeline end to end on a small simulated session (4 cameras, 40 frames)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_behaviorvlm.core.pose import Flag, Source
from napari_behaviorvlm.pose.metrics import evaluate_poses
from napari_behaviorvlm.pose.pipeline import (
    SETTINGS_KEY,
    LabelingConfig,
    done_frames,
    labeling_order,
    retriangulate_frame,
    run_labeling,
)
from tests.pose.pose_fixtures import new_project, small_sim


@pytest.fixture(scope="module")
def labeled():
    sim, seeds, source = small_sim()
    project = new_project(sim, seeds)
    report = run_labeling(project, frame_source=source)
    return sim, seeds, source, project, report


def test_local_pipeline_reaches_a_sensible_error(labeled):
    sim, seeds, _, project, report = labeled
    assert sorted(report.frames_done) == [f for f in range(sim.n_frames) if f not in seeds]
    frames = [f for f in range(sim.n_frames) if f not in seeds]
    m = evaluate_poses(project.poses, sim.skeleton, sim.points3d, sim.points2d, sim.visible, frames)
    assert m["coverage"] > 0.9
    assert m["median_3d_error_mm"] < 1.0
    assert m["mean_3d_error_mm"] < 4.0
    assert m["pck_5px"] > 0.8
    # seed labels untouched, model labels marked as such
    seed_mask = project.poses.source == Source.SEED
    assert set(np.nonzero(seed_mask)[1]) == set(seeds)
    model = project.poses.source == Source.MODEL
    assert model.any() and np.isfinite(project.poses.confidence[model]).all()
    assert done_frames(project) == set(frames)


def test_order_runs_outward_from_the_seeds():
    runs = labeling_order(20, [5, 15])
    assert runs == [(-1, [4, 3, 2, 1, 0]), (1, [6, 7, 8, 9, 10]), (-1, [14, 13, 12, 11]),
                    (1, [16, 17, 18, 19])]
    with pytest.raises(ValueError, match="no seed frames"):
        labeling_order(10, [])


def test_human_labels_survive_reruns_and_enter_the_window(labeled):
    sim, seeds, source, project, _ = labeled
    frame = 10
    xy = sim.points2d[1, frame, 0, 3] + np.array([0.7, -0.4])  # a human's slightly off click
    project.poses.set_label(1, frame, 0, 3, xy, source=Source.HUMAN)
    retriangulate_frame(project, frame)
    assert project.poses.flags[1, frame, 0, 3] == 0
    # forget the frames after it and relabel: the human label stays exactly where it is
    entry = project.settings["pose_labeling"]
    entry["done"] = [[0, 9]]
    run_labeling(project, frame_source=source)
    assert np.array_equal(project.poses.points2d[1, frame, 0, 3], xy)
    assert project.poses.source[1, frame, 0, 3] == Source.HUMAN
    assert project.poses.confidence[1, frame, 0, 3] == 1.0


@pytest.mark.parametrize("stop_after", [9, 15])
def test_cancel_and_resume_gives_the_same_result(stop_after):
    sim, seeds, source = small_sim()
    full = new_project(sim, seeds)
    run_labeling(full, frame_source=source)
    part = new_project(sim, seeds)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > stop_after

    first = run_labeling(part, frame_source=source, should_stop=stop)
    assert first.cancelled and len(first.frames_done) == stop_after
    # the last frames labeled wait for their two-sided revisit, the ones before them for
    # their final pass; the resumed run does both
    waiting = part.settings[SETTINGS_KEY]["revisit"]
    assert any(doubtful for _, doubtful in waiting)
    final = part.settings[SETTINGS_KEY]["final_pass"]
    assert final and not set(final) & set(dict(waiting))
    waiting_frames = set(dict(waiting)) | set(final)
    kept = {f: part.poses.points3d[f].copy() for f in first.frames_done if f not in waiting_frames}
    second = run_labeling(part, frame_source=source)
    assert not set(second.frames_done) & set(first.frames_done)
    for f, x in kept.items():
        assert np.array_equal(part.poses.points3d[f], x, equal_nan=True)
    assert part.poses.equals(full.poses)
    assert part.settings[SETTINGS_KEY]["revisit"] == []
    assert part.settings[SETTINGS_KEY]["final_pass"] == []


def test_injected_swap_is_flagged(labeled):
    sim, seeds, _, project, _ = labeled
    poses = project.poses
    left, right = sim.skeleton.index("ear_left"), sim.skeleton.index("ear_right")
    both = np.isfinite(poses.points2d[:, :, 0, [left, right], 0]).all(axis=-1)  # (C, F)
    both[:, seeds] = False
    frame = int(np.flatnonzero(both.sum(axis=0) >= 3)[0])
    views = list(np.flatnonzero(both[:, frame]))
    c = views[0]
    a, b = poses.points2d[c, frame, 0, left].copy(), poses.points2d[c, frame, 0, right].copy()
    poses.set_label(c, frame, 0, left, b, source=Source.MODEL, confidence=0.9)
    poses.set_label(c, frame, 0, right, a, source=Source.MODEL, confidence=0.9)
    retriangulate_frame(project, frame)
    assert poses.flags[c, frame, 0, left] & int(Flag.HIGH_REPROJ_ERROR)
    assert poses.flags[c, frame, 0, right] & int(Flag.HIGH_REPROJ_ERROR)
    assert poses.confidence[c, frame, 0, left] <= 0.5


def test_two_mice_keep_their_identities():
    sim, seeds, source = small_sim(4, 30, 2, 1)
    project = new_project(sim, seeds)
    run_labeling(project, frame_source=source)
    frames = [f for f in range(sim.n_frames) if f not in seeds]
    m = evaluate_poses(project.poses, sim.skeleton, sim.points3d, sim.points2d, sim.visible, frames)
    assert m["individual_exchange_frames"] == 0
    assert m["median_3d_error_mm"] < 1.0


def test_config_validation():
    with pytest.raises(ValueError, match="backend"):
        LabelingConfig(backend="magic")
    sim, seeds, source = small_sim()
    project = new_project(sim, seeds)
    with pytest.raises(ValueError, match="model endpoint"):
        run_labeling(project, config=LabelingConfig(backend="vlm"), frame_source=source)


def test_refine_settings_are_typed():
    from napari_behaviorvlm.pose.refine import RefineParams

    params = RefineParams(threshold_px=3, jump_max_views=4.0, identity_residual=float("inf"))
    assert type(params.threshold_px) is float and params.jump_max_views == 4
    assert type(params.jump_max_views) is int
    for bad in ({"threshold_px": "3"}, {"jump_max_views": 2.5}, {"drop_swap_ambiguous": "no"},
                {"claim_margin_mm": True}):
        with pytest.raises(ValueError, match=f"RefineParams.{next(iter(bad))} must be"):
            RefineParams(**bad)


def test_refine_settings_of_an_older_version_keep_what_still_exists(labeled):
    """A project saved by a version with a setting that no longer exists keeps its other
    refine settings (the stored threshold is used) instead of falling back to all defaults."""
    from napari_behaviorvlm.pose.pipeline import SETTINGS_KEY, _stored_refine_params

    _, _, _, project, _ = labeled
    saved = project.settings[SETTINGS_KEY]["config"]["refine"]
    try:
        project.settings[SETTINGS_KEY]["config"]["refine"] = {
            **saved, "threshold_px": 2.5, "shape_tolerance_mm": 3.0}
        params = _stored_refine_params(project)
        assert params.threshold_px == 2.5
        assert not hasattr(params, "shape_tolerance_mm")
        project.settings[SETTINGS_KEY]["config"]["refine"] = {"threshold_px": "not a number"}
        assert _stored_refine_params(project).threshold_px == 4.0  # a bad value: the defaults
    finally:
        project.settings[SETTINGS_KEY]["config"]["refine"] = saved


def test_finished_frames_are_recorded_as_the_same_ranges_in_any_order():
    from napari_behaviorvlm.pose.pipeline import _add_to_ranges, _ranges

    rng = np.random.default_rng(1)
    frames = rng.choice(200, size=120, replace=False)
    ranges: list[list[int]] = []
    for i, f in enumerate(frames):
        _add_to_ranges(ranges, int(f))
        if i % 17 == 0:
            _add_to_ranges(ranges, int(frames[0]))  # a frame already recorded changes nothing
        assert ranges == _ranges(frames[: i + 1])


def test_bad_revisit_settings_are_refused_or_skipped():
    with pytest.raises(ValueError, match="two_sided_reach"):
        LabelingConfig(two_sided_reach=-1)
    with pytest.raises(ValueError, match="final_pass_reach"):
        LabelingConfig(final_pass_reach=-1)
    sim, seeds, source = small_sim()
    full = new_project(sim, seeds)
    run_labeling(full, frame_source=source)
    # a hand-edited project with broken waiting lists: the run warns and completes
    part = new_project(sim, seeds)
    part.settings[SETTINGS_KEY] = {"done": [], "revisit": [["x", True], 5, [3]],
                                   "final_pass": ["y", None]}
    with pytest.warns(UserWarning, match="malformed entry") as caught:
        report = run_labeling(part, frame_source=source)
    assert {"'revisit'", "'final_pass'"} <= {w for r in caught for w in ("'revisit'", "'final_pass'")
                                              if w in str(r.message)}
    assert not report.cancelled and part.poses.equals(full.poses)
