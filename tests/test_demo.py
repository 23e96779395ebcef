"""``behaviorvlm demo`` runs the whole product and a rerun resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_behaviorvlm.cli import main
from napari_behaviorvlm.core.project import load_project
from napari_behaviorvlm.demo import PROJECT_NAME
from napari_behaviorvlm.pose.pipeline import done_frames


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    manifest_path = tmp_path / "manifest.json"
    code = main(["demo", "--out", str(out), "--cameras", "3", "--frames", "40", "--quiet",
                 "--json", str(manifest_path)])
    assert code == 0
    manifest = json.loads(manifest_path.read_text())
    outputs, figures = manifest["outputs"], manifest["figures"]
    assert len(outputs["videos"]) == 3
    for key in ("calibration", "seeds", "project"):
        assert Path(outputs[key]).is_file(), key
    assert set(outputs["exports"]) >= {"slp", "dlc", "anipose", "segments"}
    for files in outputs["exports"].values():
        assert all(Path(f).is_file() for f in files)
    project = load_project(outputs["project"])
    assert len(project.poses.seed_frames()) == 3
    assert figures["labeling"]["frames_done"] == 40 - 3
    assert figures["pose"]["mean_3d_error_mm"] < 10.0
    assert len(project.segments) >= 1
    assert figures["behavior"]["mouse0"]["frame_accuracy"] > 0.0

    # a rerun reuses the session and the project: nothing left to label
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--cameras", "3", "--frames", "40", "--quiet",
                 "--json", str(manifest_path)]) == 0
    printed = capsys.readouterr().out
    assert "reusing" in printed and "resuming" in printed
    again = json.loads(manifest_path.read_text())
    assert again["figures"]["labeling"]["frames_done"] == 0
    assert again["figures"]["pose"]["mean_3d_error_mm"] == pytest.approx(
        figures["pose"]["mean_3d_error_mm"])


def test_demo_refuses_a_session_of_another_size(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--cameras", "2", "--frames", "12", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["demo", "--out", str(out), "--cameras", "3", "--frames", "12", "--quiet"]) == 2
    assert "another size" in capsys.readouterr().err


def test_an_interrupted_demo_keeps_its_frames_and_resumes(tmp_path, capsys, interrupt_labeling):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--cameras", "2", "--frames", "12", "--quiet"]
    with interrupt_labeling(after=2):
        assert main(args) == 130
    assert "interrupted: the finished frames are saved; rerun the same command to resume" \
        in capsys.readouterr().err
    project = next(out.rglob(PROJECT_NAME))
    kept = done_frames(load_project(project))
    assert kept  # saved on the interrupt (the demo's own saves come every 50 frames)
    assert main(args + ["--json", str(tmp_path / "m.json")]) == 0
    figures = json.loads((tmp_path / "m.json").read_text())["figures"]
    assert figures["labeling"]["frames_done"] == 12 - 3 - len(kept)
