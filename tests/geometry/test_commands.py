"""Geometry CLI: bench triangulate (tiny sizes)."""

from __future__ import annotations

import json

from napari_behaviorvlm.cli import main


def test_bench_triangulate_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "triangulate", "--points", "300", "--cameras", "4", "--repeats", "1",
               "--baseline-points", "50", "--no-aniposelib", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["points"] == 300 and data["cameras"] == 4
    assert data["per_point_baseline"]["extrapolated"] is True
    assert data["per_point_baseline"]["max_diff_mm"] < 0.05  # same solution as the loop
    assert data["vectorized"]["median_error_to_truth_mm"] < 1.0
    assert "speed-up vs per-point loop" in capsys.readouterr().out
    # an existing output is not replaced silently
    assert main(["bench", "triangulate", "--points", "10", "--json", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def _write_video(path, n_frames: int, fps: int = 25, size=(64, 48)) -> None:
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(n_frames):
            image = np.full((size[1], size[0], 3), (i * 9) % 255, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_info_on_a_generated_session(tmp_path, capsys):
    from napari_behaviorvlm.geometry.camera import camera_ring, save_calibration

    _write_video(tmp_path / "cam0.mp4", 12)
    _write_video(tmp_path / "cam1.mp4", 10)
    group = camera_ring(2, size=(64, 48), focal=60.0)
    save_calibration(group, tmp_path / "calibration.toml")
    out = tmp_path / "info.json"
    assert main(["info", str(tmp_path), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "session: 10 frames at 25 fps" in text and "trimmed to 10 frames" in text
    data = json.loads(out.read_text())
    assert data["cameras"]["cam0"]["frames"] == 12 and data["cameras"]["cam1"]["frames"] == 10
    assert data["cameras"]["cam1"]["size"] == [64, 48]
    assert data["calibration"]["ok"] and data["calibration"]["n_cameras"] == 2


def test_info_reports_the_duplicated_camera(shared_datasets, capsys):
    root = shared_datasets / "sleap-anipose-minimal-session"
    assert main(["info", str(root)]) == 0
    text = capsys.readouterr().out
    assert "session: 120 frames at 30 fps" in text
    assert "error: side, top: camera top is identical to camera side" in text
    assert main(["info", str(root / "calibration.toml")]) == 0
    assert "1 error(s)" in capsys.readouterr().out
