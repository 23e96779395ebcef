import json
import os
import zipfile

import numpy as np
import pytest

from napari_behaviorvlm.core import (
    CameraSource, Flag, Project, ProjectFileError, Segment, Session, Source,
    default_qd_mouse_skeleton, load_project, save_project,
)
from napari_behaviorvlm.geometry.camera import Camera, CameraGroup


def make_project() -> Project:
    cams = CameraGroup([
        Camera(f"cam{i}", (64, 48), [[50, 0, 32], [0, 50, 24], [0, 0, 1]], [0.01, 0, 0, 0, 0],
               [0.1 * i, 0, 0], [0, 0, 500]) for i in range(2)
    ])
    session = Session([CameraSource(f"cam{i}", f"cam{i}.mp4", i) for i in range(2)], 30.0, 7, cams,
                      root="/data/s1", notes=["trimmed cam1 by 2 frames"])
    project = Project.new(session, default_qd_mouse_skeleton(), ["mouse0", "mouse1"])
    rng = np.random.default_rng(0)
    p = project.poses
    p.points2d[:] = rng.normal(size=p.points2d.shape)
    p.points2d[0, 3] = np.nan
    p.source[:] = Source.MODEL
    p.confidence[:] = rng.random(p.confidence.shape)
    p.flags[1, 2, 0, 5] = Flag.SWAP | Flag.JUMP
    p.points3d[:] = rng.normal(size=p.points3d.shape)
    p.set_label(0, 1, 1, "ear_left", (3.0, 4.0), Source.SEED)
    project.segments.add(Segment(0, 3, "walk", "mouse0", caption="walks left", score=0.9))
    project.segments.add(Segment(2, 6, "sniff", "mouse1", "mouse0", source="human"))
    project.settings = {"backend": "local", "api_key_env": "OPENAI_API_KEY", "labeled": [1, 2]}
    return project


def test_project_round_trip_is_exact(tmp_path):
    project = make_project()
    path = save_project(project, tmp_path / "p.bvlm")
    again = load_project(path)
    assert again.equals(project)
    assert again.poses.flags[1, 2, 0, 5] == Flag.SWAP | Flag.JUMP
    assert again.session.calibration.cameras[1].rvec.tolist() == [0.1, 0, 0]
    # a changed value is noticed
    again.poses.confidence[0, 0, 0, 0] += 1e-3
    assert not again.equals(project)


def test_corrupt_and_foreign_files_get_clear_errors(tmp_path):
    bad = tmp_path / "bad.bvlm"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(ProjectFileError, match="corrupt"):
        load_project(bad)
    foreign = tmp_path / "foreign.bvlm"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("project.json", json.dumps({"format": "something-else"}))
    with pytest.raises(ProjectFileError, match="not a napari-behaviorvlm project"):
        load_project(foreign)
    truncated = tmp_path / "trunc.bvlm"
    data = save_project(make_project(), tmp_path / "ok.bvlm").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProjectFileError):
        load_project(truncated)
    with pytest.raises(FileNotFoundError):
        load_project(tmp_path / "missing.bvlm")


def test_newer_version_is_refused(tmp_path):
    path = tmp_path / "new.bvlm"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("project.json", json.dumps({"format": "napari-behaviorvlm-project", "version": 99}))
    with pytest.raises(ProjectFileError, match="upgrade"):
        load_project(path)


def test_previous_file_survives_a_crash_during_save(tmp_path, monkeypatch):
    project = make_project()
    path = save_project(project, tmp_path / "p.bvlm")
    good = path.read_bytes()
    project.poses.points2d[:] = 0.0

    def crash(*args, **kwargs):
        raise RuntimeError("disk pulled out")

    monkeypatch.setattr(np, "save", crash)
    with pytest.raises(RuntimeError):
        save_project(project, path)
    assert path.read_bytes() == good
    assert [f for f in os.listdir(tmp_path) if f != "p.bvlm"] == []  # no temp file left
    assert load_project(path).poses.points2d[0, 0, 0, 0, 0] != 0.0


def test_settings_must_be_json(tmp_path):
    project = make_project()
    project.settings["bad"] = object()
    with pytest.raises(TypeError):
        save_project(project, tmp_path / "p.bvlm")
    assert not (tmp_path / "p.bvlm").exists()
