"""Sample data: a synthetic 6-camera QD session, generated once into the cache and reused."""

from __future__ import annotations

import numpy as np
import pytest

from napari_behaviorvlm.napari.sample_data import (
    SAMPLE_CONFIG, _complete, make_sample_session, sample_session_folder,
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache folder for the module, so the sample is generated once."""
    path = tmp_path_factory.mktemp("sample") / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BEHAVIORVLM_CACHE_DIR", str(path))
        yield path


def test_sample_session_is_generated_once_and_reused(cache):
    layers = make_sample_session()
    folder = cache / "sample-qd-session-v1"
    assert sample_session_folder() == folder
    assert [kw["name"] for _, kw, _ in layers] == [f"cam{i}" for i in range(6)]
    for data, kw, kind in layers:
        assert kind == "image" and not kw["rgb"]
        assert len(data) == SAMPLE_CONFIG.n_frames
        assert np.asarray(data[5]).shape == (240, 320)
        calib = kw["metadata"]["calibration"]
        assert calib.names == [f"cam{i}" for i in range(6)]
        assert calib[kw["name"]].size == (320, 240)
        assert not any("truth" in key for key in kw["metadata"])  # the user sees no truth
    stamp = (folder / "cam0.mp4").stat().st_mtime_ns
    make_sample_session()
    assert (folder / "cam0.mp4").stat().st_mtime_ns == stamp  # reused, not regenerated
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_incomplete_or_other_sample_is_not_reused(cache, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(sample_session_folder(), folder)
    assert _complete(folder)
    config = folder / "truth" / "config.toml"
    config.write_text(config.read_text().replace("seed = 0", "seed = 1"))
    assert not _complete(folder)  # made by other settings
    shutil.copytree(sample_session_folder(), folder, dirs_exist_ok=True)
    (folder / "cam3.mp4").unlink()
    assert not _complete(folder)


@pytest.mark.viewer
def test_sample_opens_in_viewer_grid(make_napari_viewer, cache):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-behaviorvlm", "qd_session")
    assert [layer.name for layer in layers] == [f"cam{i}" for i in range(6)]
    assert viewer.grid.enabled
    assert viewer.dims.nsteps[0] == SAMPLE_CONFIG.n_frames
    viewer.dims.set_current_step(0, 40)
    shown = np.asarray(layers[2]._slice.image.view)
    assert shown.shape == (240, 320) and shown.max() > 100  # QD glows are bright
    _close_timeline(viewer)


def _close_timeline(viewer):
    """Close the timeline's own canvas so napari's leak check sees no QtViewer left."""
    import gc

    from qtpy.QtWidgets import QApplication

    widget = viewer.window.dock_widgets["Behavior timeline"]
    viewer.window.remove_dock_widget(widget.parent())
    widget.close()
    widget.deleteLater()
    QApplication.processEvents()
    gc.collect()


@pytest.mark.viewer
def test_sample_opens_with_timeline_and_labeling_dock_on_one_project(make_napari_viewer, cache,
                                                                     qtbot):
    from napari_behaviorvlm.napari.project_state import get_project_state
    from napari_behaviorvlm.napari.timeline import TimelineWidget
    from napari_behaviorvlm.napari.widgets import BehaviorVLMWidget

    viewer = make_napari_viewer()
    viewer.open_sample("napari-behaviorvlm", "qd_session")
    docks = viewer.window.dock_widgets
    timeline = docks["Behavior timeline"]
    assert isinstance(timeline, TimelineWidget)
    labeling = [w for w in docks.values() if isinstance(w, BehaviorVLMWidget)]
    assert len(labeling) == 1
    qtbot.waitUntil(lambda: labeling[0].state is not None, timeout=5000)
    state = get_project_state(viewer)
    assert labeling[0].state is state  # the dock adopted the sample's project
    assert timeline.table is state.project.segments
    assert timeline.n_frames == SAMPLE_CONFIG.n_frames
    # the camera layers were kept, not opened twice
    assert sum(layer.name.startswith("cam") and layer._type_string == "image"
               for layer in viewer.layers) == 6
    _close_timeline(viewer)
