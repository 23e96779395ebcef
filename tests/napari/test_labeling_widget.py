"""The whole labeling flow in a real napari viewer (run under Xvfb: ``xvfb-run -a pytest tests/napari``).

Open a small synthetic session, label seed frames by clicking, run the local reasoner in its
worker thread, check that colors follow confidence, drag a point like the mouse does, let the
autosave write the project, reopen it in a new viewer and compare everything.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_behaviorvlm.core.labeling import confidence_colors, seed_frames  # noqa: E402
from napari_behaviorvlm.core.pose import Source  # noqa: E402
from napari_behaviorvlm.core.project import load_project  # noqa: E402
from napari_behaviorvlm.napari.keypoint_layers import grid_cell, grid_shape  # noqa: E402

pytestmark = pytest.mark.viewer

SEEDS = (0, 14, 29)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A 3-camera, 30-frame, 160x120 synthetic session on disk and its ground truth."""
    from napari_behaviorvlm.synth.simulate import SynthConfig, simulate
    from napari_behaviorvlm.synth.writer import write_synthetic_session

    config = SynthConfig.preset("easy", n_cameras=3, n_frames=30, n_mice=1, seed=3, width=160,
                                height=120)
    sim = simulate(config)
    folder = tmp_path_factory.mktemp("session") / "qd"
    write_synthetic_session(sim, folder)
    return folder, sim


def _fresh_copy(folder, tmp_path):
    import shutil

    target = tmp_path / "qd"
    shutil.copytree(folder, target)
    return target


def _open(make_napari_viewer, folder):
    from napari_behaviorvlm.napari.widgets import BehaviorVLMWidget

    viewer = make_napari_viewer()
    widget = BehaviorVLMWidget(viewer)
    viewer.window.add_dock_widget(widget)
    state = widget.open_path(folder)
    assert state is not None, widget.message.text()
    return viewer, widget


def _label_seeds(qtbot, widget, sim):
    """Label the visible keypoints of the seed frames; camera 0 of the first seed by clicks."""
    from napari_behaviorvlm.core.labeling import apply_human_label

    project = widget.state.project
    viewer = widget.viewer
    for frame in SEEDS:
        viewer.dims.set_current_step(0, frame)
        for c, cam in enumerate(project.poses.camera_names):
            visible = np.nonzero(sim.visible[c, frame, 0])[0]
            if frame == SEEDS[0] and c == 0:
                widget.start_labeling(cam)
                layer = widget.layers.points[cam]
                assert layer.mode == "add"
                for k in range(project.poses.n_keypoints):
                    assert widget.settings.current_keypoint == project.poses.keypoint_names[k]
                    if k in visible:
                        x, y = sim.points2d[c, frame, 0, k]
                        layer.add([frame, y, x])  # what a click in add mode does
                        qtbot.wait(1)
                    else:
                        widget.next_keypoint()  # K: skip a keypoint hidden in this view
            else:
                for k in visible:
                    apply_human_label(project, cam, frame, 0, int(k), sim.points2d[c, frame, 0, k])
        widget.toggle_seed()
    qtbot.wait(20)


def test_grid_keeps_each_camera_with_its_points(make_napari_viewer, synthetic, tmp_path):
    folder = _fresh_copy(synthetic[0], tmp_path)
    viewer, widget = _open(make_napari_viewer, folder)
    cams = widget.state.project.poses.camera_names
    widget.skeleton_check.setChecked(True)  # newer napari: a hidden layer has no cell
    layers = list(viewer.layers)
    assert viewer.grid.enabled and viewer.grid.stride == 4
    cells = {}
    for cam in cams:
        image = next(layer for layer in layers if layer.name == cam)
        group = [image, widget.layers.points[cam], widget.layers.hints[cam],
                 widget.layers.skeleton[cam]]
        positions = {grid_cell(viewer, layer) for layer in group}
        assert len(positions) == 1, f"{cam}: its layers are spread over grid cells {positions}"
        cells[cam] = positions.pop()
    assert len(set(cells.values())) == len(cams)

    report = widget.session_info.toPlainText()
    assert "3 cameras, 30 frames at" in report and "cam2: 30 frames in the video, 160x120 px" in report
    assert "calibration checks: OK" in report

    # problems are explained in the dock, never raised
    bad = tmp_path / "bad_calibration.toml"
    bad.write_text('[cam_0]\nname = "other"\nsize = [160, 120]\n'
                   'matrix = [[100, 0, 80], [0, 100, 60], [0, 0, 1]]\n')
    assert widget.attach_calibration(bad) is False
    assert "no camera named" in widget.message.text()
    assert widget.open_path(tmp_path / "nowhere") is None
    assert "Could not open" in widget.message.text()
    assert widget.compute_calibration(tmp_path / "no_board.toml", folder) is None
    assert "Calibration not computed" in widget.message.text()


def test_label_run_drag_save_reopen(make_napari_viewer, synthetic, tmp_path, qtbot, monkeypatch):
    folder = _fresh_copy(synthetic[0], tmp_path)
    sim = synthetic[1]
    viewer, widget = _open(make_napari_viewer, folder)
    project = widget.state.project
    poses = project.poses

    _label_seeds(qtbot, widget, sim)
    assert seed_frames(project) == list(SEEDS)
    assert poses.source[0, 0, 0, sim.visible[0, 0, 0]].tolist() == [Source.SEED] * int(
        sim.visible[0, 0, 0].sum())
    np.testing.assert_allclose(poses.points2d[0, 0, 0][sim.visible[0, 0, 0]],
                               sim.points2d[0, 0, 0][sim.visible[0, 0, 0]])

    # a click lands in the camera under the mouse even when another camera's layer is active
    cams = poses.camera_names
    widget.start_labeling(cams[2])
    cell0 = grid_cell(viewer, widget.layers.points[cams[0]])
    viewer.cursor.viewbox = cell0  # napari sets this on every mouse event over the canvas
    viewer.dims.set_current_step(0, 7)
    widget.settings.current_keypoint = poses.keypoint_names[5]
    widget.layers.points[cams[2]].add([7, 33.0, 44.0])
    viewer.cursor.viewbox = None
    assert poses.points2d[0, 7, 0, 5].tolist() == [44.0, 33.0]
    assert np.isnan(poses.points2d[2, 7, 0, 5]).all()
    qtbot.waitUntil(lambda: viewer.layers.selection.active is widget.layers.points[cams[0]])
    assert widget.camera_combo.currentText() == cams[0]
    qtbot.waitUntil(lambda: not widget.layers.refresh_pending)
    assert 7 not in widget.layers.points[cams[2]].data[:, 0]
    from napari_behaviorvlm.core.labeling import clear_label

    clear_label(widget.state.project, cams[0], 7, 0, 5)

    # reprojection hint: a keypoint labeled in 2 views shows where it should be in the third
    viewer.dims.set_current_step(0, 5)
    from napari_behaviorvlm.core.labeling import apply_human_label

    k = 3
    for c in (0, 1):
        apply_human_label(project, c, 5, 0, k, sim.points2d[c, 5, 0, k])
    widget.layers.refresh()
    hint = widget.layers.hints[poses.camera_names[2]]
    row = list(hint.features["keypoint"]).index(poses.keypoint_names[k])
    np.testing.assert_allclose(hint.data[row, [2, 1]], sim.points2d[2, 5, 0, k], atol=0.5)

    # run the local reasoner in its worker; the Qt loop keeps turning while it works
    gaps = []
    last = [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    from qtpy.QtCore import QTimer

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(5)
    widget.backend_combo.setCurrentText("local")
    worker = widget.start_run()
    assert worker is not None, widget.message.text()
    assert not widget.layers.points[poses.camera_names[0]].editable  # locked during the run
    qtbot.waitUntil(lambda: widget.worker is None and not widget.layers.refresh_pending,
                    timeout=120_000)
    timer.stop()
    assert widget._last_report is not None, widget.message.text()
    assert max(gaps) < 1.0, f"the Qt loop froze for {max(gaps):.2f} s during the run"
    model = poses.source == Source.MODEL
    assert model.sum() > 100, "the run labeled (almost) nothing"
    assert (poses.source[:, list(SEEDS)] != Source.MODEL).all(), "a seed label was overwritten"

    # colors follow confidence, flagged points have a red border
    cam = poses.camera_names[1]
    layer = widget.layers.points[cam]
    conf = layer.features["confidence"].to_numpy()
    np.testing.assert_allclose(layer.face_color, confidence_colors(conf), atol=1e-6)
    low, high = np.argmin(conf), np.argmax(conf)
    assert conf[low] < conf[high]
    assert layer.face_color[low, 0] - layer.face_color[low, 1] > (
        layer.face_color[high, 0] - layer.face_color[high, 1])
    flagged = layer.features["flagged"].to_numpy()
    if flagged.any():
        assert np.allclose(layer.border_color[flagged], [1, 0, 0, 1])
    widget.set_color_mode("keypoint")
    assert not np.allclose(layer.face_color, confidence_colors(conf))

    # drag a model point as the mouse does in select mode
    # (a model point whose keypoint is seen by >= 3 cameras, so it has a 3D position)
    views = poses.labeled_mask().sum(axis=0)  # (F, M, K)
    ok = [r for r in np.nonzero(layer.features["source"].to_numpy() == "model")[0]
          if views[int(layer.data[r, 0]), 0,
                   poses.keypoint_index(layer.features["keypoint"][r])] >= 3]
    assert ok, "no model label seen by 3 cameras to drag"
    i = int(ok[len(ok) // 2])
    frame, y, x = layer.data[i]
    frame = int(frame)
    kp = layer.features["keypoint"][i]
    ind = layer.features["individual"][i]
    c, k = poses.camera_index(cam), poses.keypoint_index(kp)
    other_err_before = poses.reproj_error[:, frame, 0, k].copy()
    xyz_before = poses.points3d[frame, 0, k].copy()
    assert np.isfinite(xyz_before).all()
    viewer.dims.set_current_step(0, frame)
    layer.mode = "select"
    layer.selected_data = {i}
    from napari.layers.base._base_constants import ActionType

    layer._set_drag_start({i}, [frame, y, x])
    layer.events.data(value=layer.data, action=ActionType.CHANGING, data_indices=(i,),
                      vertex_indices=((),))
    with layer.events.data.blocker():
        layer._move({i}, [frame, y + 2.0, x + 1.0])
    layer._move({i}, [frame, y + 4.0, x + 2.5])  # the release emits CHANGED
    qtbot.waitUntil(lambda: not widget.layers.refresh_pending)
    assert poses.source[c, frame, 0, k] == Source.HUMAN
    assert poses.confidence[c, frame, 0, k] == 1.0
    np.testing.assert_allclose(poses.points2d[c, frame, 0, k], [x + 2.5, y + 4.0])
    assert poses.flags[c, frame, 0, k] == 0
    assert not np.array_equal(poses.reproj_error[:, frame, 0, k], other_err_before,
                              equal_nan=True), "the reprojection errors were not updated"
    assert not np.allclose(poses.points3d[frame, 0, k], xyz_before), "the 3D was not updated"
    assert ind == poses.individual_names[0]
    row = np.nonzero((layer.data[:, 0] == frame) & (layer.features["keypoint"] == kp).to_numpy())[0]
    assert layer.features["source"][row[0]] == "human"

    # autosave (debounced) writes the project; reopening restores it exactly
    widget.names_check.setChecked(True)
    widget.state.mark_dirty("settings")
    widget._schedule_autosave()
    qtbot.waitUntil(lambda: not widget.state.dirty, timeout=10_000)
    saved = load_project(folder / "project.bvlm")
    assert saved.poses.equals(poses)
    assert saved.settings["napari"]["color_mode"] == "keypoint"

    viewer2, widget2 = _open(make_napari_viewer, folder)
    assert widget2.state.project.equals(saved)
    assert widget2.settings.show_names and widget2.settings.color_mode == "keypoint"
    assert int(viewer2.dims.current_step[0]) == frame
    assert seed_frames(widget2.state.project) == list(SEEDS)
    for name in poses.camera_names:
        a, b = widget.layers.points[name], widget2.layers.points[name]
        np.testing.assert_array_equal(a.data, b.data)
        assert a.features.equals(b.features)
        np.testing.assert_allclose(a.face_color, b.face_color)

    # unsaved work asks before it is dropped
    from qtpy.QtWidgets import QMessageBox

    widget2.toggle_seed()
    assert widget2.state.dirty
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **kw: QMessageBox.Cancel)
    assert widget2._confirm_discard() is False
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **kw: QMessageBox.Discard)
    assert widget2._confirm_discard() is True


def test_review_jumps_and_accepts(make_napari_viewer, synthetic, tmp_path, qtbot):
    from napari_behaviorvlm.core.pose import Flag
    from napari_behaviorvlm.core.review import review_counts

    folder = _fresh_copy(synthetic[0], tmp_path)
    sim = synthetic[1]
    viewer, widget = _open(make_napari_viewer, folder)
    poses = widget.state.project.poses
    for f in (4, 9):
        poses.set_label(1, f, 0, 2, sim.points2d[1, f, 0, 2], source=Source.MODEL, confidence=0.2)
        poses.flags[1, f, 0, 2] = Flag.SWAP
    widget.layers.refresh()
    widget.refresh_review()
    assert "2 flagged labels in 2 frames" in widget.review_counts_label.text()
    viewer.dims.set_current_step(0, 0)
    from napari.utils.key_bindings import coerce_keybinding

    from napari_behaviorvlm.napari.widgets import SHORTCUTS

    def press(key):  # what napari calls when the key is pressed over the canvas
        viewer.keymap[coerce_keybinding(key)](viewer)

    for key, _, _ in SHORTCUTS:
        assert coerce_keybinding(key) in viewer.keymap, f"{key} is not bound"
    press("N")
    assert viewer.dims.current_step[0] == 4
    press("N")
    assert viewer.dims.current_step[0] == 9
    press("Shift-N")
    assert viewer.dims.current_step[0] == 4
    press("Shift-C")
    assert widget.settings.color_mode == "keypoint"
    before = widget.settings.current_keypoint
    press("K")
    assert widget.settings.current_keypoint != before
    item = widget.review_item(0)
    assert item.frame == 4 and "swap" in item.describe()
    widget._review_item_activated(widget.review_list.item(0))
    layer = widget.layers.points[poses.camera_names[1]]
    assert viewer.layers.selection.active is layer and len(layer.selected_data) == 1
    widget.accept_frame()
    assert poses.source[1, 4, 0, 2] == Source.HUMAN and poses.flags[1, 4, 0, 2] == 0
    assert review_counts(poses).labels == 1
    assert "1 flagged labels in 1 frames" in widget.review_counts_label.text()
    assert widget.state.dirty


def test_adopts_a_session_opened_with_the_reader(make_napari_viewer, synthetic, tmp_path, qtbot):
    """File > Open (the plugin's reader) or the sample data, then the dock: no second copy."""
    from napari_behaviorvlm.napari.reader import session_layer_data
    from napari_behaviorvlm.napari.widgets import BehaviorVLMWidget
    from napari_behaviorvlm.video.session_io import load_session

    folder = _fresh_copy(synthetic[0], tmp_path)
    viewer = make_napari_viewer()
    widget = BehaviorVLMWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.state is None
    for data, kwargs, _ in session_layer_data(load_session(folder)):
        viewer.add_image(data, **kwargs)
    qtbot.waitUntil(lambda: widget.state is not None, timeout=5000)
    images = [layer for layer in viewer.layers if layer.name in ("cam0", "cam1", "cam2")]
    assert len(images) == 3 and widget.layers.images == [viewer.layers[n] for n in
                                                         ("cam0", "cam1", "cam2")]
    assert widget.state.path == folder / "project.bvlm"
    assert len(viewer.layers) == 3 * 4


def test_cancel_keeps_finished_frames_and_delete_clears(make_napari_viewer, synthetic, tmp_path,
                                                        qtbot):
    folder = _fresh_copy(synthetic[0], tmp_path)
    viewer, widget = _open(make_napari_viewer, folder)
    poses = widget.state.project.poses
    seeds = widget.import_labels(folder / "seeds.csv")
    assert seeds and seed_frames(widget.state.project) == seeds

    done = []
    widget._bridge.frame_done.connect(lambda f: (done.append(f), widget.cancel_run()))
    assert widget.start_run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    report = widget._last_report
    assert report.cancelled and 1 <= len(report.frames_done) < report.n_todo
    model_frames = sorted(set(np.nonzero(poses.source == Source.MODEL)[1].tolist()))
    assert model_frames == sorted(report.frames_done)  # finished frames kept, nothing else
    assert widget.layers.points[poses.camera_names[0]].editable  # unlocked again

    # deleting a point (Delete key in select mode) clears that label
    qtbot.waitUntil(lambda: not widget.layers.refresh_pending)
    cam = poses.camera_names[0]
    layer = widget.layers.points[cam]
    i = 0
    frame = int(layer.data[i, 0])
    k = poses.keypoint_index(layer.features["keypoint"][i])
    assert np.isfinite(poses.points2d[0, frame, 0, k]).all()
    layer.selected_data = {i}
    layer.remove_selected()
    assert np.isnan(poses.points2d[0, frame, 0, k]).all()
    assert poses.source[0, frame, 0, k] == Source.NONE
    assert widget.state.dirty


def test_real_mouse_click_labels_the_camera_under_it(monkeypatch, make_napari_viewer, synthetic,
                                                      tmp_path, qtbot):
    """A real click (Qt mouse events through vispy and napari) in camera 0's grid cell while
    camera 2's layer is active labels camera 0 at the clicked image position."""
    from qtpy.QtCore import QPoint, Qt
    from qtpy.QtTest import QTest

    from qtpy.QtWidgets import QMessageBox

    from napari_behaviorvlm.napari.widgets import BehaviorVLMWidget

    # the window is shown, so closing it with unsaved labels would ask: answer for the test
    # (monkeypatch is set up before the viewer fixture, so it is undone after the viewer closes)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **kw: QMessageBox.Discard)
    folder = _fresh_copy(synthetic[0], tmp_path)
    viewer = make_napari_viewer(show=True)
    widget = BehaviorVLMWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.open_path(folder)
    poses = widget.state.project.poses
    widget.start_labeling("cam2")
    qtbot.wait(100)
    native = viewer.window._qt_viewer.canvas._scene_canvas.native
    rows, cols = grid_shape(viewer)
    point = QPoint(native.width() // cols // 2, native.height() // rows // 2)  # cell (0, 0)
    QTest.mouseMove(native, point)
    QTest.mousePress(native, Qt.LeftButton, Qt.NoModifier, point)
    QTest.mouseRelease(native, Qt.LeftButton, Qt.NoModifier, point)
    qtbot.waitUntil(lambda: np.isfinite(poses.points2d[0, ..., 0]).any(), timeout=5000)
    assert viewer.cursor.viewbox == (0, 0)
    labeled = np.isfinite(poses.points2d[..., 0]).sum(axis=(1, 2, 3))
    assert labeled.tolist() == [1, 0, 0]
    x, y = poses.points2d[0, 0, 0, 0]
    _, cy, cx = viewer.cursor.position
    assert (x, y) == pytest.approx((cx, cy))
    assert 0 <= x < 160 and 0 <= y < 120
    qtbot.waitUntil(lambda: viewer.layers.selection.active is widget.layers.points["cam0"])


def test_skeleton_edit_keeps_labels_by_name(make_napari_viewer, synthetic, tmp_path, qtbot,
                                            monkeypatch):
    from qtpy.QtWidgets import QMessageBox

    folder = _fresh_copy(synthetic[0], tmp_path)
    viewer, widget = _open(make_napari_viewer, folder)
    widget.import_labels(folder / "seeds.csv")
    poses = widget.state.project.poses
    images = list(widget.layers.images)
    tail_tip = poses.points2d[:, :, :, poses.keypoint_index("tail_tip")].copy()
    # drop ear_left (and the lines naming it), as a user would in the Skeleton tab
    edits = widget.skel_edits
    for key in ("keypoints", "regions", "edges", "symmetry"):
        text = edits[key].toPlainText()
        if key == "keypoints":
            text = "\n".join(k for k in text.splitlines() if k != "ear_left")
        elif key == "regions":
            text = text.replace("ear_left, ", "")
        else:
            text = "\n".join(line for line in text.splitlines() if "ear_left" not in line)
        edits[key].setPlainText(text)
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **kw: asked.append(a) or QMessageBox.Yes)
    widget._apply_skeleton_text()
    project = widget.state.project
    assert asked, "dropping labeled keypoints must ask first"
    assert "ear_left" not in project.skeleton.keypoints and project.poses.n_keypoints == 11
    np.testing.assert_array_equal(
        project.poses.points2d[:, :, :, project.poses.keypoint_index("tail_tip")], tail_tip)
    assert widget.layers.images == images  # the videos were not reopened
    assert "ear_left" not in set(widget.layers.points["cam0"].features["keypoint"])
    assert widget.keypoint_list.count() == 11 and widget.state.dirty

    edits["edges"].setPlainText("tail_tip - nowhere")
    widget._apply_skeleton_text()
    assert "Skeleton not valid" in widget.message.text() and "nowhere" in widget.message.text()


@pytest.mark.viewer
def test_the_run_tab_offers_both_directions_for_the_local_backend(make_napari_viewer, synthetic,
                                                                tmp_path):
    folder = _fresh_copy(synthetic[0], tmp_path)
    viewer, widget = _open(make_napari_viewer, folder)
    widget.backend_combo.setCurrentText("local")
    assert widget.both_check.isEnabled() and not widget.labeling_config().both_directions
    widget.both_check.setChecked(True)
    assert widget.labeling_config().both_directions
    widget.backend_combo.setCurrentText("hybrid")  # a model is not asked twice about a frame
    widget.model_edit.setText("some-model")
    assert not widget.both_check.isEnabled()
    assert not widget.labeling_config().both_directions


def test_rerun_after_corrections_needs_relabel_and_keeps_them(make_napari_viewer, synthetic,
                                                              tmp_path, qtbot):
    folder = _fresh_copy(synthetic[0], tmp_path)
    viewer, widget = _open(make_napari_viewer, folder)
    poses = widget.state.project.poses
    widget.import_labels(folder / "seeds.csv")
    frames = list(range(0, 12))
    widget.start_run(frames)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    first = widget._last_report
    assert first.frames_done
    assert f"{first.n_revisited} doubtful frames labeled again" in widget.run_status.text()
    assert f"and {first.n_final_pass} a last time" in widget.run_status.text()
    frame = first.frames_done[0]
    poses.set_label(0, frame, 0, 0, (12.5, 7.25), Source.HUMAN)

    widget.start_run(frames)  # plain rerun: nothing to do, and the dock says how to redo
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert widget._last_report.frames_done == []
    assert "relabel" in widget.run_status.text()

    widget.relabel_check.setChecked(True)
    widget.start_run(frames)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert sorted(widget._last_report.frames_done) == sorted(first.frames_done)
    assert poses.source[0, frame, 0, 0] == Source.HUMAN
    assert poses.points2d[0, frame, 0, 0].tolist() == [12.5, 7.25]
    qtbot.waitUntil(lambda: not widget.layers.refresh_pending)
