import json

import numpy as np

from napari_behaviorvlm.cli import main
from napari_behaviorvlm.core.project import Project, load_project
from napari_behaviorvlm.core.segments import Segment
from napari_behaviorvlm.core.session import Session
from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton


def test_segment_command_on_project(scripted, tmp_path, capsys):
    pts, truth, _ = scripted
    project = Project.new(Session(cameras=[], fps=25.0, n_frames=len(pts)), default_qd_mouse_skeleton())
    project.poses.points3d[:] = pts
    project.segments.add(Segment(0, 10, "groom", source="human"))
    src = project.save(tmp_path / "in.bvlm")
    out = tmp_path / "out.bvlm"
    assert main(["segment", str(src), "--out", str(out)]) == 0
    text = capsys.readouterr()
    assert "model segments" in text.out and "100.0%" in text.err
    seg = load_project(out).segments
    assert any(s.source == "human" and s.label == "groom" for s in seg)
    labels = seg.frame_labels(len(truth), "mouse0")
    assert np.mean(labels[20:] == truth[20:]) > 0.8
    # an existing output is not overwritten silently
    assert main(["segment", str(src), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["segment", str(src), "--out", str(out), "--backend", "vlm"]) == 2


def test_bench_synthetic_writes_json(tmp_path, capsys):
    path = tmp_path / "b.json"
    assert main(["bench", "behavior", "--synthetic", "--frames", "600", "--sessions", "1",
                 "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["segments_per_minute"]["merged"] < data["segments_per_minute"]["overseg"]
    assert 0.0 <= data["boundary_recall"]["merged"] <= 1.0
    assert "frame F1" in capsys.readouterr().out


def test_bench_oft_command(shared_datasets, tmp_path):
    path = tmp_path / "oft.json"
    assert main(["bench", "behavior", "--dataset", "oft-rearing-grooming",
                 str(shared_datasets / "oft-rearing-grooming"), "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert {v["role"] for v in data["videos"]} == {"tuning session", "held out"}


def test_segment_command_on_a_video_session(tmp_path, capsys):
    """A session folder without poses: a new project, segmented from video features."""
    from napari_behaviorvlm.synth.config import SynthConfig
    from napari_behaviorvlm.synth.simulate import simulate
    from napari_behaviorvlm.synth.writer import write_synthetic_session

    sim = simulate(SynthConfig(n_cameras=2, n_frames=90, width=160, height=120, seed=2))
    write_synthetic_session(sim, tmp_path / "session", workers=1)
    out = tmp_path / "video.bvlm"
    assert main(["segment", str(tmp_path / "session"), "--out", str(out)]) == 0
    project = load_project(out)
    assert project.session.n_frames == 90
    table = project.segments
    assert len(table) >= 1 and {s.label for s in table} <= {"active", "rest"}
    assert table[0].start == 0 and max(s.end for s in table) == 89
    assert "motion" in project.settings["behavior"]["stats"]["features"]
