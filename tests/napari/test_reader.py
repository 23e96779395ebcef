"""napari reader contribution: session folder / session.toml -> one lazy Image layer per camera."""

from __future__ import annotations

import numpy as np
import pytest

from napari_behaviorvlm.napari.reader import get_reader, session_layer_data
from napari_behaviorvlm.video.session_io import SessionVideo, load_session
from napari_behaviorvlm.video.writer import pattern_index, write_pattern_video


@pytest.fixture
def session_folder(tmp_path):
    folder = tmp_path / "sess"
    for k, name in enumerate(["cam_b", "cam_a", "cam_c"]):
        write_pattern_video(folder / f"{name}.mp4", 30, gray=(k != 2), gop=10, b_frames=2)
    return folder


def test_get_reader_accepts_sessions_only(session_folder, tmp_path):
    assert callable(get_reader(str(session_folder)))
    assert callable(get_reader([str(session_folder)]))
    (session_folder / "session.toml").write_text('[[cameras]]\nname = "x"\nvideo = "cam_a.mp4"\n')
    assert callable(get_reader(str(session_folder / "session.toml")))
    (tmp_path / "calibration.toml").write_text('[cam_0]\nname = "a"\n')
    assert get_reader(str(tmp_path / "calibration.toml")) is None
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tmp_path / "empty")) is None
    (tmp_path / "image.png").write_bytes(b"\x89PNG")
    assert get_reader(str(tmp_path / "image.png")) is None
    assert get_reader([str(session_folder), str(tmp_path)]) is None


def test_session_layer_data_without_viewer(session_folder):
    session = load_session(session_folder)
    layers = session_layer_data(session)
    assert [kw["name"] for _, kw, _ in layers] == ["cam_a", "cam_b", "cam_c"]
    for data, kw, kind in layers:
        assert kind == "image" and isinstance(data, SessionVideo)
        assert kw["metadata"]["session"] is session and kw["metadata"]["camera"] == kw["name"]
        assert tuple(kw["contrast_limits"]) == (0, 255)
        assert len(data) == session.n_frames == 30
    assert [kw["rgb"] for _, kw, _ in layers] == [False, False, True]


@pytest.mark.viewer
def test_viewer_opens_session_folder(make_napari_viewer, session_folder):
    viewer = make_napari_viewer()
    layers = viewer.open(str(session_folder), plugin="napari-behaviorvlm")
    assert [layer.name for layer in layers] == ["cam_a", "cam_b", "cam_c"]
    assert viewer.grid.enabled
    assert viewer.dims.nsteps[0] == 30
    session = layers[0].metadata["session"]
    assert session.n_frames == 30 and layers[0].metadata["camera"] == "cam_a"
    assert layers[2].rgb and not layers[0].rgb
    viewer.dims.set_current_step(0, 17)
    for layer in layers:
        shown = np.asarray(layer._slice.image.view)
        assert pattern_index(shown) == 17


def test_manifest_claims_folders_and_toml_only(tmp_path):
    """A catch-all `*` pattern would make napari ask which plugin to use for every file."""
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()

    def claims(path):
        return any(r.command.startswith("napari-behaviorvlm.")
                   for r in pm.iter_compatible_readers([str(path)]))

    (tmp_path / "image.png").write_bytes(b"")
    (tmp_path / "session.toml").write_text("")
    assert claims(tmp_path) and claims(tmp_path / "session.toml")
    assert not claims(tmp_path / "image.png") and not claims(tmp_path / "video.mp4")
