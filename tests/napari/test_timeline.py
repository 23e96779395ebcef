"""Timeline dock (viewer tests: run under ``xvfb-run -a``)."""

import numpy as np
import pytest

from napari_behaviorvlm.core.segments import Segment, SegmentTable

pytestmark = pytest.mark.viewer


@pytest.fixture
def timeline(make_napari_viewer):
    from napari_behaviorvlm.napari.timeline import TimelineWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((200, 8, 8), dtype=np.uint8))
    table = SegmentTable([Segment(0, 49, "walk", caption="walks"), Segment(50, 79, "rear"),
                          Segment(80, 199, "walk")])
    saves = []
    widget = TimelineWidget(viewer, table=table, on_save=lambda: saves.append(1))
    yield viewer, widget, table, saves
    _close(widget)


def _close(widget):
    """Close the timeline's own canvas so napari's leak check sees no QtViewer left."""
    import gc

    from qtpy.QtWidgets import QApplication

    widget.close()
    widget.deleteLater()
    QApplication.processEvents()
    gc.collect()


def test_segments_drawn_as_rectangles_with_rows_per_label(timeline):
    viewer, widget, table, _ = timeline
    assert widget.n_frames == 200
    assert len(widget.shapes.data) == 3
    assert set(widget.shapes.shape_type) == {"rectangle"}
    rect = widget.shapes.data[1]  # rear: frames 50..79
    assert rect[:, 1].min() == pytest.approx(49.5) and rect[:, 1].max() == pytest.approx(79.5)
    # walk segments share a row, rear is on another
    rows = [np.floor(r[:, 0].min() / widget.row_height) for r in widget.shapes.data]
    assert rows[0] == rows[2] != rows[1]
    faces = widget.shapes.face_color
    assert np.allclose(faces[0], faces[2]) and not np.allclose(faces[0], faces[1])
    assert "walk" in widget.legend.text() and "rear" in widget.legend.text()


def test_playhead_follows_dims_and_click_jumps(timeline):
    viewer, widget, _, _ = timeline
    viewer.dims.set_current_step(0, 120)
    line = widget.playhead.data[0]
    assert np.allclose(line[:, 1], 120)
    rear_row_y = widget.shapes.data[1][:, 0].mean()
    widget.click(rear_row_y, 60.2)
    assert viewer.dims.current_step[0] == 60
    assert widget.selected.label == "rear"
    assert np.allclose(widget.playhead.data[0][:, 1], 60)


def test_edits_write_the_table_and_save(timeline):
    viewer, widget, table, saves = timeline
    widget.click(widget.shapes.data[1][:, 0].mean(), 60)  # select rear, playhead 60
    widget.rename_selected("groom")
    assert [s.label for s in table] == ["walk", "groom", "walk"]
    assert table[1].source == "human" and len(saves) == 1
    viewer.dims.set_current_step(0, 70)
    widget.split_selected()
    assert [(s.start, s.end) for s in table] == [(0, 49), (50, 69), (70, 79), (80, 199)]
    viewer.dims.set_current_step(0, 90)
    widget.move_selected("end")  # the right half (70..79) now ends at 90, trimming the walk
    assert [(s.start, s.end) for s in table][-2:] == [(70, 90), (91, 199)]
    widget.merge_selected()
    assert table[-1].start == 70 and table[-1].end == 199 and table[-1].label == "groom"
    widget.delete_selected()
    assert len(table) == 2 and widget.selected is None
    viewer.dims.set_current_step(0, 150)
    widget.add_at_playhead("sniff", n_frames=10)
    assert any(s.label == "sniff" and (s.start, s.end) == (150, 159) for s in table)
    assert len(saves) == 6
    assert len(widget.shapes.data) == len(table)
    widget.select(None)
    widget._guarded(widget.delete_selected)  # no selection: a message, no crash
    assert "select a segment" in widget.info.text()


def test_next_previous_segment(timeline):
    viewer, widget, table, _ = timeline
    viewer.dims.set_current_step(0, 10)
    widget.next_segment()
    assert widget.selected is table[1] and viewer.dims.current_step[0] == 50
    widget.next_segment()
    assert viewer.dims.current_step[0] == 80
    widget.previous_segment()
    assert widget.selected is table[1]


def test_project_state_table_and_autosave(make_napari_viewer, tmp_path):
    from napari_behaviorvlm.core.project import Project
    from napari_behaviorvlm.core.session import Session
    from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton
    from napari_behaviorvlm.core.project import load_project
    from napari_behaviorvlm.napari.project_state import ProjectState, set_project_state
    from napari_behaviorvlm.napari.timeline import make_timeline_widget

    viewer = make_napari_viewer()
    project = Project.new(Session(cameras=[], fps=25, n_frames=100), default_qd_mouse_skeleton())
    project.segments.add(Segment(0, 99, "rest"))
    state = ProjectState(project=project, path=tmp_path / "p.bvlm")
    set_project_state(viewer, state)
    widget = make_timeline_widget(viewer)
    assert widget.n_frames == 100 and len(widget.shapes.data) == 1
    widget.select(project.segments[0])
    widget.rename_selected("groom")
    assert load_project(tmp_path / "p.bvlm").segments[0].label == "groom"
    # another widget changing the segments redraws the timeline
    project.segments.add(Segment(0, 10, "walk", subject="mouse1"))
    state.mark_dirty("segments")
    assert len(widget.shapes.data) == 2
    _close(widget)


def test_add_timeline_dock(make_napari_viewer):
    from napari_behaviorvlm.napari.timeline import add_timeline_dock

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((50, 4, 4), dtype=np.uint8))
    widget = add_timeline_dock(viewer, SegmentTable([Segment(0, 20, "rest")]))
    assert "Behavior timeline" in viewer.window._dock_widgets
    assert len(widget.shapes.data) == 1
    viewer.window.remove_dock_widget(viewer.window._dock_widgets["Behavior timeline"])
    _close(widget)


def test_segment_button_runs_in_a_worker(make_napari_viewer, qtbot, tmp_path):
    from napari_behaviorvlm.core.project import Project
    from napari_behaviorvlm.core.session import Session
    from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton
    from napari_behaviorvlm.napari.project_state import ProjectState, set_project_state
    from napari_behaviorvlm.napari.timeline import TimelineWidget
    from napari_behaviorvlm.synth.config import SynthConfig
    from napari_behaviorvlm.synth.simulate import simulate

    sim = simulate(SynthConfig(n_frames=300, seed=0))
    viewer = make_napari_viewer()
    project = Project.new(Session(cameras=[], fps=30, n_frames=300), default_qd_mouse_skeleton())
    project.poses.points3d[:] = sim.points3d
    project.segments.add(Segment(0, 29, "groom", source="human"))
    state = ProjectState(project=project, path=tmp_path / "p.bvlm")
    set_project_state(viewer, state)
    widget = TimelineWidget(viewer)
    widget.run_segmentation()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    assert widget.progress.value() == 100
    assert any(s.source == "model" for s in project.segments)
    assert any(s.source == "human" and s.label == "groom" for s in project.segments)
    assert len(widget.shapes.data) == len(project.segments)
    assert (tmp_path / "p.bvlm").is_file()  # saved
    # cancel: nothing changes
    before = [s.to_dict() for s in project.segments]
    widget.run_segmentation()
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)
    after = [s.to_dict() for s in project.segments]
    assert len(after) == len(before)
    _close(widget)


def test_segment_button_reports_errors(make_napari_viewer, qtbot):
    """No poses and no video: the dock says so (no traceback)."""
    from napari_behaviorvlm.core.project import Project
    from napari_behaviorvlm.core.session import Session
    from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton
    from napari_behaviorvlm.napari.project_state import ProjectState, set_project_state
    from napari_behaviorvlm.napari.timeline import TimelineWidget
    viewer = make_napari_viewer()
    project = Project.new(Session(cameras=[], fps=30, n_frames=30), default_qd_mouse_skeleton())
    set_project_state(viewer, ProjectState(project=project))
    w = TimelineWidget(viewer)
    w.run_segmentation()
    qtbot.waitUntil(lambda: w.worker is None, timeout=60000)
    assert "failed" in w.info.text()
    _close(w)


def test_timeline_opened_before_the_project_follows_it(make_napari_viewer, tmp_path):
    from napari_behaviorvlm.core.project import Project
    from napari_behaviorvlm.core.session import Session
    from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton
    from napari_behaviorvlm.napari.project_state import ProjectState, set_project_state
    from napari_behaviorvlm.napari.timeline import TimelineWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((100, 4, 4), dtype=np.uint8))
    widget = TimelineWidget(viewer)
    assert len(widget.shapes.data) == 0
    project = Project.new(Session(cameras=[], fps=30, n_frames=100), default_qd_mouse_skeleton())
    project.segments.extend([Segment(0, 9, "rest"), Segment(10, 40, "walk")])
    state = ProjectState(project=project, path=tmp_path / "p.bvlm")
    set_project_state(viewer, state)
    assert widget.table is project.segments
    assert len(widget.shapes.data) == 2
    project.segments.add(Segment(41, 60, "rear"))
    state.segments_changed.emit()
    assert len(widget.shapes.data) == 3
    set_project_state(viewer, None)
    assert len(widget.shapes.data) == 0
    _close(widget)
