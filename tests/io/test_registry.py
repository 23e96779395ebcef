"""export_project and the `behaviorvlm export` command."""

from __future__ import annotations

import pytest
import sleap_io as sio

from napari_behaviorvlm.cli import main
from napari_behaviorvlm.io.registry import FORMATS, export_project


def test_export_all_reports_files_and_flags(small_project, tmp_path):
    report = export_project(small_project, "all", tmp_path / "out", images=False)
    assert report.formats == list(FORMATS)
    assert all(p.exists() for p in report.files)
    for name in FORMATS:
        assert any((tmp_path / "out" / name) in p.parents for p in report.files)
    assert report.unreviewed_flags == 3
    assert any("3 labels are still flagged" in w for w in report.warnings)
    assert "3 labels are still flagged" in report.summary()
    with pytest.raises(FileExistsError):
        export_project(small_project, "segments", tmp_path / "out" / "segments")


def test_export_all_without_calibration_skips_anipose(small_project, tmp_path):
    small_project.session.calibration = None
    report = export_project(small_project, "all", tmp_path / "out", images=False)
    assert "anipose" not in report.formats
    assert any("anipose skipped" in w for w in report.warnings)
    with pytest.raises(ValueError, match="calibrated"):
        export_project(small_project, "anipose", tmp_path / "a")
    with pytest.raises(ValueError, match="unknown export format"):
        export_project(small_project, "nwb", tmp_path / "b")


def test_cli_export(small_project, tmp_path, capsys):
    project_file = small_project.save(tmp_path / "p.bvlm")
    out = tmp_path / "slp"
    assert main(["export", str(project_file), "--to", "slp", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "tiny.slp" in printed and "flagged for review" in printed
    labels = sio.load_slp(str(out / "tiny.slp"), open_videos=False)
    assert len(labels.videos) == 3
    # existing output: a clear error, exit status 2, no traceback
    assert main(["export", str(project_file), "--to", "slp", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(project_file), "--to", "slp", str(out), "--overwrite"]) == 0


def test_import_labels_cli(small_project, tmp_path, capsys):
    """DLC truth labels of one project come into a copy without labels, via the CLI."""
    import numpy as np

    from napari_behaviorvlm.core.pose import PoseTable, Source
    from napari_behaviorvlm.core.project import load_project

    export_project(small_project, "dlc", tmp_path / "dlc", images=False)
    human = small_project.poses.human_mask()
    expected = small_project.poses.points2d.copy()
    p = small_project.poses
    small_project.poses = PoseTable.empty(p.camera_names, p.n_frames, p.individual_names,
                                          p.keypoint_names)
    project_file = small_project.save(tmp_path / "empty.bvlm")
    assert main(["import-labels", str(project_file), str(tmp_path / "dlc")]) == 2
    assert "--in-place" in capsys.readouterr().err
    out = tmp_path / "with_truth.bvlm"
    assert main(["import-labels", str(project_file), str(tmp_path / "dlc"), "--as", "human",
                 "--out", str(out)]) == 0
    assert f"imported {int(human.sum())} labels" in capsys.readouterr().out
    back = load_project(out).poses
    np.testing.assert_array_equal(back.labeled_mask(), human)
    np.testing.assert_array_equal(back.points2d[human], expected[human])
    assert (back.source[human] == Source.HUMAN).all()
    assert not load_project(project_file).poses.labeled_mask().any()  # input untouched
    assert main(["import-labels", str(project_file), str(tmp_path / "x.txt"), "--in-place"]) == 2


def test_a_flag_on_a_missing_label_is_not_counted_as_unreviewed(small_project, tmp_path):
    import numpy as np

    from napari_behaviorvlm.core.pose import Flag

    poses = small_project.poses
    missing = np.argwhere(~poses.labeled_mask())
    c, f, m, k = missing[0]
    poses.flags[c, f, m, k] = Flag.FEW_VIEWS  # a keypoint not found in this view
    report = export_project(small_project, "segments", tmp_path / "out", images=False)
    assert report.unreviewed_flags == 3
