"""napari sample data: a small synthetic quantum-dot (QD) mouse session, 6 cameras.

The session is generated once (a few seconds) into the user cache folder
(``$BEHAVIORVLM_CACHE_DIR``, else ``$XDG_CACHE_HOME`` or ``~/.cache``, then
``napari-behaviorvlm/sample-qd-session-v1``) and reused afterwards. It opens like a user's own
recording: one Image layer per camera in grid mode, with the session and its calibration in the
layer metadata and no ground truth shown (the truth stays on disk under ``truth/``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from napari_behaviorvlm.core.tomlfile import read_toml
from napari_behaviorvlm.napari.reader import session_layer_data
from napari_behaviorvlm.synth import SynthConfig, simulate, write_synthetic_session
from napari_behaviorvlm.synth.writer import TRUTH_DIR
from napari_behaviorvlm.video.reader import default_cache_dir
from napari_behaviorvlm.video.session_io import load_session

__all__ = ["SAMPLE_CONFIG", "make_sample_session", "sample_session_folder"]

SAMPLE_NAME = "sample-qd-session-v1"
#: The sample session: 6 cameras, 90 frames (3 s) at 320x240, one mouse, default difficulty.
SAMPLE_CONFIG = SynthConfig.preset("default", n_cameras=6, n_frames=90, n_mice=1, seed=0,
                                   width=320, height=240)


def sample_session_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """The sample session's folder, generated on first use (atomically: a crash leaves no
    half-written session) and reused when already complete.

    Args:
        cache_dir: Parent folder; default: the package's user cache folder.
    """
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir().parent
    folder = base / SAMPLE_NAME
    if _complete(folder):
        return folder
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{SAMPLE_NAME}.", dir=base))
    try:
        write_synthetic_session(simulate(SAMPLE_CONFIG), tmp / "session")
        if folder.exists():  # incomplete leftover of an older run
            shutil.rmtree(folder)
        os.replace(tmp / "session", folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _complete(folder: Path) -> bool:
    names = [f"cam{i}.mp4" for i in range(SAMPLE_CONFIG.n_cameras)]
    needed = [*names, "calibration.toml", f"{TRUTH_DIR}/config.toml"]
    if not all((folder / name).is_file() for name in needed):
        return False
    try:
        saved = read_toml(folder / TRUTH_DIR / "config.toml", "simulator settings")
        return SynthConfig.from_dict(saved) == SAMPLE_CONFIG
    except (ValueError, OSError, TypeError):
        return False


def make_sample_session() -> list[tuple[Any, dict[str, Any], str]]:
    """npe2 sample-data command: one Image layer per camera (named ``cam0``..``cam5``), lazy and
    frame-exact, ``metadata`` holding ``session``, ``camera`` and ``calibration``; switches the
    current viewer to grid mode and, in a viewer with a window, opens the sample's project with
    the BehaviorVLM labeling dock and the behavior timeline."""
    session = load_session(sample_session_folder())
    layers = session_layer_data(session)
    for _, kwargs, _ in layers:
        kwargs["metadata"]["calibration"] = session.calibration
    _open_docks(session)
    return layers


def _open_docks(session: Any) -> None:
    """Open (or create) ``project.bvlm`` in the sample folder as the viewer's project, and dock
    the timeline and the labeling widget on it (the widget adopts the camera layers once napari
    has added them)."""
    import napari

    from napari_behaviorvlm.core.project import PROJECT_SUFFIX, Project
    from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton
    from napari_behaviorvlm.napari.project_state import (
        ProjectState, get_project_state, set_project_state,
    )
    from napari_behaviorvlm.napari.timeline import add_timeline_dock

    viewer = napari.current_viewer()
    if viewer is None or getattr(viewer, "window", None) is None:
        return
    if get_project_state(viewer) is None:
        path = Path(session.root) / f"project{PROJECT_SUFFIX}"
        state = (ProjectState.open(path) if path.exists() else
                 ProjectState(Project.new(session, default_qd_mouse_skeleton()), path=path))
        set_project_state(viewer, state)
    docked = getattr(viewer.window, "dock_widgets", {})
    if "Behavior timeline" not in docked:
        add_timeline_dock(viewer)
    viewer.window.add_plugin_dock_widget("napari-behaviorvlm", "BehaviorVLM labeling")
