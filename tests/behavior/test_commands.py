import json

import numpy as np
import pytest

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


def test_an_interrupted_segment_run_says_what_it_kept(scripted, tmp_path, capsys, monkeypatch):
    from napari_behaviorvlm.behavior import pipeline

    def stop(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_segmentation", stop)
    pts, _, _ = scripted
    project = Project.new(Session(cameras=[], fps=25.0, n_frames=len(pts)), default_qd_mouse_skeleton())
    project.poses.points3d[:] = pts
    src = project.save(tmp_path / "in.bvlm")
    out = tmp_path / "out.bvlm"
    assert main(["segment", str(src), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"interrupted: {out} was not written" in err and "cached" not in err
    assert not out.exists()


def test_bench_synthetic_writes_json(tmp_path, capsys):
    path = tmp_path / "b.json"
    assert main(["bench", "behavior", "--synthetic", "--frames", "600", "--sessions", "1",
                 "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert data["segments_per_minute"]["merged"] < data["segments_per_minute"]["overseg"]
    assert 0.0 <= data["boundary_recall"]["merged"] <= 1.0
    assert "frame F1" in capsys.readouterr().out
    for bad in (["--sessions", "0"], ["--mice", "0"]):
        assert main(["bench", "behavior", "--synthetic", "--frames", "100", *bad]) == 2
        assert "must be at least 1" in capsys.readouterr().err


def test_bench_oft_command(shared_datasets, tmp_path):
    path = tmp_path / "oft.json"
    assert main(["bench", "behavior", "--dataset", "oft-rearing-grooming",
                 str(shared_datasets / "oft-rearing-grooming"), "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert {v["role"] for v in data["videos"]} == {"tuning session", "held out"}


@pytest.fixture(scope="module")
def video_session(tmp_path_factory):
    """A small synthetic session folder (2 cameras, 90 frames) and its simulation."""
    from napari_behaviorvlm.synth.config import SynthConfig
    from napari_behaviorvlm.synth.simulate import simulate
    from napari_behaviorvlm.synth.writer import write_synthetic_session

    folder = tmp_path_factory.mktemp("behavior") / "session"
    sim = simulate(SynthConfig(n_cameras=2, n_frames=90, width=160, height=120, seed=2))
    write_synthetic_session(sim, folder, workers=1)
    return folder, sim


def test_segment_command_on_a_video_session(video_session, tmp_path):
    """A session folder without poses: a new project, segmented from video features."""
    folder, _ = video_session
    out = tmp_path / "video.bvlm"
    assert main(["segment", str(folder), "--out", str(out)]) == 0
    project = load_project(out)
    assert project.session.n_frames == 90
    table = project.segments
    assert len(table) >= 1 and {s.label for s in table} <= {"active", "rest"}
    assert table[0].start == 0 and max(s.end for s in table) == 89
    assert "motion" in project.settings["behavior"]["stats"]["features"]


def test_segment_command_vlm_backend_over_http(video_session, tmp_path, capsys, monkeypatch,
                                               make_test_double_responder):
    """``--backend vlm`` end to end against a TEST DOUBLE server: real video frames are sent;
    a rerun is answered from the cache."""
    from napari_behaviorvlm.vlm.testing import TestDoubleChatServer, request_images

    folder, sim = video_session
    monkeypatch.setenv("BVLM_CLI_TEST_DOUBLE_KEY", "x")
    responder = make_test_double_responder(np.asarray(sim.behavior[:, 0], dtype=object))
    out = tmp_path / "vlm.bvlm"
    with TestDoubleChatServer(responder) as server:
        args = ["segment", str(folder), "--out", str(out), "--backend", "vlm",
                "--base-url", server.base_url, "--model", "test-double-model",
                "--api-key-env", "BVLM_CLI_TEST_DOUBLE_KEY", "--cameras", "0,1"]
        assert main(args) == 0
        first = server.request_count
        assert first >= 2
        images = request_images(server.requests[0])
        assert images and images[0].shape[1] <= 320 and len(images) % 2 == 0
        assert main(args + ["--overwrite"]) == 0
        assert server.request_count == first  # cached: no new call
    assert "0 calls" in capsys.readouterr().out
    labels = {s.label for s in load_project(out).segments}
    assert labels <= set(sim.behavior[:, 0])
