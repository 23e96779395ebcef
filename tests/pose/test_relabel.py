"""A run after human corrections: relabel redoes finished frames and keeps the corrections."""

from __future__ import annotations

import numpy as np

from napari_behaviorvlm.core.pose import Source
from napari_behaviorvlm.pose.pipeline import done_frames, retriangulate_frame, run_labeling
from tests.pose.pose_fixtures import new_project, small_sim


def test_relabel_redoes_finished_frames_and_keeps_human_corrections():
    sim, seeds, source = small_sim()
    project = new_project(sim, seeds)
    frames = list(range(0, 20))
    first = run_labeling(project, frames=frames, frame_source=source)
    assert first.frames_done and done_frames(project) >= set(first.frames_done)

    # a human corrects one label to the true position, at a frame the run labeled
    frame = first.frames_done[len(first.frames_done) // 2]
    c, k = 0, project.skeleton.index("paw_front_left")
    true_xy = sim.points2d[c, frame, 0, k]
    project.poses.set_label(c, frame, 0, k, true_xy, Source.HUMAN)
    retriangulate_frame(project, frame)

    again = run_labeling(project, frames=frames, frame_source=source)
    assert again.frames_done == []  # everything was done: a plain rerun changes nothing

    before = project.poses.copy()
    redo = run_labeling(project, frames=frames, frame_source=source, relabel=True)
    assert sorted(redo.frames_done) == sorted(first.frames_done)
    assert project.poses.source[c, frame, 0, k] == Source.HUMAN
    assert np.array_equal(project.poses.points2d[c, frame, 0, k], true_xy)
    assert project.poses.confidence[c, frame, 0, k] == 1.0
    seed_mask = project.poses.source == Source.SEED
    assert np.array_equal(project.poses.points2d[seed_mask], before.points2d[seed_mask])
    assert done_frames(project) >= set(frames) - set(seeds)


def test_cancelled_relabel_resumes_with_the_frames_it_had_not_reached():
    sim, seeds, source = small_sim()
    project = new_project(sim, seeds)
    frames = list(range(0, 20))
    run_labeling(project, frames=frames, frame_source=source)
    calls = {"n": 0}

    def stop_after_three() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    partial = run_labeling(project, frames=frames, frame_source=source, relabel=True,
                           should_stop=stop_after_three)
    assert partial.cancelled and len(partial.frames_done) == 3
    rest = run_labeling(project, frames=frames, frame_source=source)
    expected = (set(frames) - set(seeds)) - set(partial.frames_done)
    assert set(rest.frames_done) == expected
