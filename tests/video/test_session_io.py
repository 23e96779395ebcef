"""Session loading: folder layouts, calibration matching, trims/offsets, errors, session.toml."""

from __future__ import annotations

import numpy as np
import pytest

from napari_behaviorvlm.geometry.camera import Camera, CameraGroup, save_calibration
from napari_behaviorvlm.video.reader import VideoError
from napari_behaviorvlm.video.session_io import (
    SessionError, load_session, open_session_videos, save_session_file,
)
from napari_behaviorvlm.video.writer import pattern_index


def _calibration(names, size=(64, 48)):
    return CameraGroup([Camera(n, size, np.diag([50.0, 50.0, 1.0]), tvec=[i, 0, 100])
                        for i, n in enumerate(names)])


def test_folder_of_videos(make_video, tmp_path):
    for name in ["top", "back", "side"]:
        make_video(f"sess/{name}.mp4")
    session = load_session(tmp_path / "sess")
    assert session.camera_names == ["back", "side", "top"]
    assert session.n_frames == 40 and session.fps == pytest.approx(30.0)
    assert session.calibration is None and session.notes == []
    videos = open_session_videos(session)
    assert [v.name for v in videos] == ["back", "side", "top"]
    assert all(len(v) == 40 and v.shape == (40, 48, 64, 3) for v in videos)
    assert pattern_index(videos[2][17]) == 17


def test_subfolder_layout_and_calibration_reordered(make_video, tmp_path):
    for name in ["b", "a"]:
        make_video(f"sess/{name}/recording_{name}.mp4", gray=True)
    (tmp_path / "sess" / "a" / "calibration_images").mkdir()
    save_calibration(_calibration(["b", "a"]), tmp_path / "sess" / "calibration.toml")
    session = load_session(tmp_path / "sess")
    assert session.camera_names == ["a", "b"]
    assert session.calibration.names == ["a", "b"]
    assert session.calibration["a"].tvec[0] == 1  # the calibration's own camera, reordered
    assert open_session_videos(session)[0].shape == (40, 48, 64)


def test_calibration_camera_mismatch_is_an_error(make_video, tmp_path):
    for name in ["a", "b"]:
        make_video(f"sess/{name}.mp4")
    save_calibration(_calibration(["a", "c"]), tmp_path / "sess" / "calibration.toml")
    with pytest.raises(SessionError, match=r"without calibration: \['b'\].*without video: \['c'\]"):
        load_session(tmp_path / "sess")
    save_calibration(_calibration(["a", "b"], size=(640, 480)), tmp_path / "sess" / "calibration.toml")
    with pytest.raises(SessionError, match="'a' is calibrated for 640x480 px but its video is 64x48"):
        load_session(tmp_path / "sess")


def test_unequal_frame_counts_trim_visibly(make_video, tmp_path, caplog):
    make_video("sess/a.mp4", n_frames=40)
    make_video("sess/b.mp4", n_frames=31)
    with caplog.at_level("WARNING"):
        session = load_session(tmp_path / "sess")
    assert session.n_frames == 31
    assert any("trimmed to 31" in n and "a 40" in n and "b 31" in n for n in session.notes)
    assert "trimmed to 31" in caplog.text
    assert all(len(v) == 31 for v in open_session_videos(session))
    # strict = true refuses
    (tmp_path / "sess" / "session.toml").write_text(
        'strict = true\n[[cameras]]\nname = "a"\nvideo = "a.mp4"\n'
        '[[cameras]]\nname = "b"\nvideo = "b.mp4"\n')
    with pytest.raises(SessionError, match=r"different frame counts \(a 40, b 31\).*strict"):
        load_session(tmp_path / "sess")


def test_unequal_fps_is_an_error(make_video, tmp_path):
    make_video("sess/a.mp4", fps=30)
    make_video("sess/b.mp4", fps=25)
    with pytest.raises(SessionError, match=r"a.mp4: 30 fps, b.mp4: 25 fps"):
        load_session(tmp_path / "sess")


def test_session_file_offsets_and_n_frames(make_video, tmp_path):
    make_video("v/left.mp4", n_frames=40)
    make_video("v/right.mp4", n_frames=40)
    toml = tmp_path / "session.toml"
    toml.write_text('[[cameras]]\nname = "left"\nvideo = "v/left.mp4"\n'
                    '[[cameras]]\nname = "right"\nvideo = "v/right.mp4"\nframe_offset = 5\n')
    session = load_session(toml)
    assert session.n_frames == 35
    assert any("frame_offset 5" in n for n in session.notes)
    assert any("trimmed to 35" in n for n in session.notes)
    left, right = open_session_videos(session)
    assert len(left) == len(right) == 35
    assert pattern_index(left[10]) == 10 and pattern_index(right[10]) == 15
    assert pattern_index(right[-1]) == 39
    with pytest.raises(IndexError):
        right[35]
    toml.write_text(toml.read_text().replace("[[cameras]]", "n_frames = 20\n[[cameras]]", 1))
    assert load_session(toml).n_frames == 20
    toml.write_text(toml.read_text().replace("n_frames = 20", "n_frames = 36"))
    with pytest.raises(SessionError, match="n_frames = 36 but camera 'right' has only 35") as err:
        load_session(toml)
    assert "set n_frames = 35" in str(err.value)  # says what to do


def test_session_file_roundtrip(make_video, tmp_path):
    for name in ["a", "b"]:
        make_video(f"sess/{name}.mp4")
    save_calibration(_calibration(["a", "b"]), tmp_path / "sess" / "calibration.toml")
    session = load_session(tmp_path / "sess")
    session.cameras[1].frame_offset = 2
    session.n_frames = 30
    path = save_session_file(session, tmp_path / "sess" / "session.toml")
    text = path.read_text()
    assert 'video = "a.mp4"' in text and "n_frames = 30" in text and "[calibration.cam_0]" in text
    with pytest.raises(FileExistsError):
        save_session_file(session, path)
    again = load_session(tmp_path / "sess")  # the folder's session.toml takes precedence
    assert again.camera_names == ["a", "b"] and again.n_frames == 30
    assert [c.frame_offset for c in again.cameras] == [0, 2]
    np.testing.assert_allclose(again.calibration["b"].tvec, session.calibration["b"].tvec)


def test_session_file_errors(make_video, tmp_path):
    make_video("a.mp4")
    bad = tmp_path / "s.toml"
    bad.write_text('fsp = 30\n[[cameras]]\nname = "a"\nvideo = "a.mp4"\n')
    with pytest.raises(SessionError, match=r"unknown keys \['fsp'\]"):
        load_session(bad)
    bad.write_text('[[cameras]]\nname = "a"\nvideo = "a.mp4"\nframe_offset = -1\n')
    with pytest.raises(SessionError, match="frame_offset must be an integer >= 0"):
        load_session(bad)
    bad.write_text('[[cameras]]\nname = "a"\nvideo = "a.mp4"\nframe_offset = 40\n')
    with pytest.raises(SessionError, match="frame_offset 40 is past the end"):
        load_session(bad)
    bad.write_text('[[cameras]]\nname = "a"\nvideo = "nothere.mp4"\n')
    with pytest.raises(FileNotFoundError, match="nothere.mp4"):
        load_session(bad)
    save_calibration(_calibration(["a"]), tmp_path / "calibration.toml")
    with pytest.raises(SessionError, match="cameras"):
        load_session(tmp_path / "calibration.toml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SessionError, match="no videos found"):
        load_session(tmp_path / "empty")


def test_corrupt_video_in_folder_names_it(make_video, tmp_path):
    make_video("sess/a.mp4")
    (tmp_path / "sess" / "b.mp4").write_bytes(b"\x00\x01garbage" * 500)
    with pytest.raises(VideoError, match="b.mp4"):
        load_session(tmp_path / "sess")


def test_shared_sleap_anipose_session(shared_datasets, tmp_path):
    folder = shared_datasets / "sleap-anipose-minimal-session"
    if not folder.is_dir():
        pytest.skip("sleap-anipose-minimal-session not in the shared datasets")
    before = sorted(p.name for p in folder.rglob("*"))
    session = load_session(folder, cache_dir=tmp_path)
    assert session.camera_names == ["back", "mid", "side", "top"]
    assert session.calibration.names == session.camera_names
    assert session.n_frames == 120 and session.fps == pytest.approx(30.0)
    videos = open_session_videos(session, cache_dir=tmp_path)
    assert videos[0].shape == (120, 1024, 1280)  # grey video read as 2D frames
    seq = [videos[3][i] for i in range(60)]
    rnd = open_session_videos(session, cache_dir=tmp_path, cache_frames=0)[3]
    for i in [59, 7, 33]:
        np.testing.assert_array_equal(rnd[i], seq[i])
    assert sorted(p.name for p in folder.rglob("*")) == before  # read-only data left alone
    assert len(list(tmp_path.glob("*.bvlm-index"))) == 4
