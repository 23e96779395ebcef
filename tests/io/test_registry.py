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
