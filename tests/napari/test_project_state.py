"""ProjectState: the project shared by the widgets of a viewer (no display needed)."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

from napari_behaviorvlm.core.pose import Source
from napari_behaviorvlm.core.project import Project, load_project
from napari_behaviorvlm.core.session import CameraSource, Session
from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton
from napari_behaviorvlm.napari.project_state import (
    ProjectState, get_project_state, set_project_state,
)


def _state(tmp_path) -> ProjectState:
    session = Session([CameraSource("a", "a.mp4"), CameraSource("b", "b.mp4")], fps=30,
                      n_frames=4, root=tmp_path)
    return ProjectState(Project.new(session, default_qd_mouse_skeleton()))


def test_edits_notify_and_autosave_to_the_session_folder(tmp_path):
    state = _state(tmp_path)
    seen = []
    state.poses_changed.connect(seen.append)
    state.segments_changed.connect(lambda: seen.append("segments"))
    assert state.autosave() is None  # nothing to save
    state.project.poses.set_label("a", 2, 0, 0, (1.0, 2.0))
    state.mark_dirty("poses", [2, 2])
    state.mark_dirty("segments")
    assert seen == [[2], "segments"] and state.dirty
    with pytest.raises(ValueError, match="poses, segments or settings"):
        state.mark_dirty("colors")
    path = state.autosave()
    assert path == tmp_path / "project.bvlm" and not state.dirty
    assert load_project(path).poses.equals(state.project.poses)


def test_snapshot_is_independent_and_saved_marks_clean_only_if_unchanged(tmp_path):
    state = _state(tmp_path)
    state.project.settings["napari"] = {"color_mode": "keypoint"}
    state.mark_dirty("settings")
    copy, edits = state.snapshot()
    state.project.poses.set_label("b", 1, 0, 3, (5.0, 6.0))
    state.project.settings["napari"]["color_mode"] = "confidence"
    assert np.isnan(copy.poses.points2d[1, 1, 0, 3]).all()
    assert copy.settings["napari"]["color_mode"] == "keypoint"
    state.mark_dirty("poses", [1])  # edited while the snapshot was being written
    state.mark_saved(tmp_path / "p.bvlm", edits)
    assert state.dirty and state.path == tmp_path / "p.bvlm"
    copy2, edits2 = state.snapshot()
    state.mark_saved(tmp_path / "p.bvlm", edits2)
    assert not state.dirty
    assert copy2.poses.source[1, 1, 0, 3] == Source.HUMAN


def test_state_is_found_from_the_viewer_and_does_not_keep_it_alive(tmp_path):
    class FakeViewer:  # only identity and weak references matter here
        pass

    viewer = FakeViewer()
    assert get_project_state(viewer) is None
    state = _state(tmp_path)
    set_project_state(viewer, state)
    assert get_project_state(viewer) is state
    set_project_state(viewer, None)
    assert get_project_state(viewer) is None
    set_project_state(viewer, state)
    alive = weakref.ref(viewer)
    del viewer
    gc.collect()
    from napari_behaviorvlm.napari import project_state

    assert alive() is None
    assert all(s is not state for s in project_state._STATES.values())
