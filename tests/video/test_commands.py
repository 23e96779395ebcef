"""CLI: ``behaviorvlm bench video`` and ``behaviorvlm make-session``."""

from __future__ import annotations

import json

import pytest

from napari_behaviorvlm.cli import main
from napari_behaviorvlm.video.session_io import load_session


def test_bench_video_json(make_video, tmp_path, capsys):
    path = make_video("a.mp4", n_frames=30)
    out = tmp_path / "bench.json"
    assert main(["bench", "video", str(path), "--samples", "0", "--repeats", "1",
                 "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "mismatches random" in table and "ours sequential" in table
    result = json.loads(out.read_text())
    assert result["n_frames"] == result["reference_frames"] == 30
    assert result["mismatches_sequential"] == 0 and result["mismatches_random"] == 0
    assert result["frames_checked_random"] == 30
    assert result["gop_max"] == 12
    assert 1 <= result["decoded_per_random_access"] <= result["gop_max"] + 3
    assert result["ours_sequential_fps"] > 0 and result["raw_decode_cpu_fps"] > 0
    assert result["ratio_cpu_sequential_vs_raw_same_arrays"] > 0
    # existing output is not replaced silently
    assert main(["bench", "video", str(path), "--repeats", "1", "--json", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_bench_video_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"nope" * 100)
    assert main(["bench", "video", str(bad), "--repeats", "1"]) == 2
    assert "bad.mp4" in capsys.readouterr().err


def test_make_session(make_video, tmp_path, capsys):
    make_video("sess/a.mp4", n_frames=40)
    make_video("sess/b.mp4", n_frames=35)
    assert main(["make-session", str(tmp_path / "sess")]) == 0
    printed = capsys.readouterr().out
    assert "2 cameras" in printed and "note: trimmed to 35" in printed
    session = load_session(tmp_path / "sess" / "session.toml")
    assert session.n_frames == 35 and session.camera_names == ["a", "b"]
    assert main(["make-session", str(tmp_path / "sess")]) == 2


@pytest.mark.parametrize("argv", [["bench", "video", "--help"], ["make-session", "--help"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out
