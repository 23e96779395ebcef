"""Export widget and keypoint-layer writers (viewer tests run under Xvfb)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("napari")

import sleap_io as sio  # noqa: E402

from napari_behaviorvlm.core.labeling import points_layer_data  # noqa: E402
from napari_behaviorvlm.core.pose import Flag, Source  # noqa: E402
from napari_behaviorvlm.core.project import Project  # noqa: E402
from napari_behaviorvlm.core.segments import Segment  # noqa: E402
from napari_behaviorvlm.core.session import CameraSource, Session  # noqa: E402
from napari_behaviorvlm.core.skeleton import Skeleton  # noqa: E402
from tests.movement_reader import read_with_movement


def _project() -> Project:
    """2 cameras, 6 frames, 2 mice, 3 keypoints: seeds on frame 0, model labels after, 2 flags."""
    skeleton = Skeleton(["nose", "ear_l", "ear_r"], {"head": ["nose", "ear_l", "ear_r"]},
                        edges=[("nose", "ear_l"), ("nose", "ear_r")],
                        symmetry=[("ear_l", "ear_r")])
    session = Session(cameras=[CameraSource("top", "top.mp4"), CameraSource("side", "side.mp4")],
                      fps=20, n_frames=6)
    project = Project.new(session, skeleton, ["m0", "m1"])
    rng = np.random.default_rng(1)
    poses = project.poses
    poses.points2d[:] = rng.uniform(0, 100, size=poses.points2d.shape)
    poses.source[:] = Source.MODEL
    poses.confidence[:] = rng.uniform(0.1, 1, size=poses.confidence.shape)
    poses.source[:, 0] = Source.SEED
    poses.confidence[:, 0] = 1
    poses.set_label("top", 3, "m1", "ear_l", None)
    poses.flags[0, 2, 0, 1] = Flag.JUMP
    poses.flags[1, 4, 1, 0] = Flag.AMBIGUOUS
    project.segments.add(Segment(1, 4, "sniff", subject="m0", target="m1", source="human"))
    project.settings["name"] = "pair"
    return project


def _layer_tuple(project, camera):
    from napari.layers import Points

    table = points_layer_data(project.poses, camera)
    layer = Points(table.data, features=table.features, name=f"{camera} keypoints",
                   metadata={"behaviorvlm": {"camera": camera}, "role": "keypoints"})
    data, attributes, _ = layer.as_layer_data_tuple()
    return data, attributes


def test_points_writers(tmp_path):
    from napari_behaviorvlm.napari.writers import write_points_dlc_csv, write_points_slp

    project = _project()
    poses = project.poses
    data, attributes = _layer_tuple(project, "side")
    slp = write_points_slp(str(tmp_path / "side.slp"), data, attributes)
    labels = sio.load_slp(slp[0], open_videos=False)
    assert [t.name for t in labels.tracks] == ["m0", "m1"]
    kinds = {(lf.frame_idx, type(i).__name__) for lf in labels.labeled_frames for i in lf.instances}
    assert (0, "Instance") in kinds and (2, "PredictedInstance") in kinds
    assert (0, "PredictedInstance") not in kinds
    pred = [i for lf in labels.labeled_frames if lf.frame_idx == 5 for i in lf.instances
            if i.track.name == "m1"][0]
    np.testing.assert_allclose(pred.numpy(scores=True)[:, 2], poses.confidence[1, 5, 1], rtol=1e-6)

    csv = write_points_dlc_csv(str(tmp_path / "side.csv"), data, attributes)
    ds = read_with_movement(csv[0], source_software="DeepLabCut")
    assert list(ds.individuals.values) == ["m0", "m1"]
    np.testing.assert_allclose(ds.position.values.transpose(0, 3, 2, 1), poses.points2d[1])
    conf = np.where(poses.human_mask()[1], 1.0, poses.confidence[1])
    np.testing.assert_allclose(ds.confidence.values.transpose(0, 2, 1), conf, rtol=1e-6)


@pytest.mark.viewer
def test_layers_save_uses_the_plugin_writer(make_napari_viewer, tmp_path):
    project = _project()
    viewer = make_napari_viewer()
    table = points_layer_data(project.poses, "top")
    viewer.add_points(table.data, features=table.features, name="top keypoints",
                      metadata={"behaviorvlm": {"camera": "top"}})
    written = viewer.layers.save(str(tmp_path / "top.csv"), selected=True,
                                 plugin="napari-behaviorvlm")
    assert written == [str(tmp_path / "top.csv")]
    df = pd.read_csv(written[0], header=[0, 1, 2, 3], index_col=0)
    assert len(df) == 6 and df.shape[1] == 2 * 3 * 3


@pytest.mark.viewer
def test_export_widget(make_napari_viewer, qtbot, tmp_path):
    from napari_behaviorvlm.napari.export_widget import ExportWidget
    from napari_behaviorvlm.napari.project_state import ProjectState, set_project_state

    viewer = make_napari_viewer()
    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.export_button.click()  # nothing open yet: a message, no crash
    assert "open a project" in widget.message.text()
    set_project_state(viewer, ProjectState(_project()))
    widget.set_format("segments")
    widget.out_edit.setText(str(tmp_path / "out"))
    widget.export_button.click()
    qtbot.waitUntil(lambda: widget.export_button.isEnabled() and widget.last_report is not None,
                    timeout=20000)
    assert (tmp_path / "out" / "pair.segments.csv").exists()
    assert "2 labels are still flagged" in widget.message.text()
    widget.export_button.click()  # again: refuses to overwrite, says how to proceed
    qtbot.waitUntil(lambda: "failed" in widget.message.text(), timeout=20000)
    assert "already exists" in widget.message.text()
    qtbot.waitUntil(widget.export_button.isEnabled, timeout=20000)
    widget.overwrite_box.setChecked(True)
    widget.set_format("slp")
    report = widget.run_export()
    assert (tmp_path / "out" / "pair.slp") in report.files
