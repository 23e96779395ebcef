"""The labeling dock's Session tab: open a session or project, adopt one opened elsewhere, and
show it (camera images, keypoint layers, the dock's fields, a per-camera report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QFileDialog, QPlainTextEdit, QVBoxLayout, QWidget,
)

from napari_behaviorvlm.core.labeling import ViewerSettings
from napari_behaviorvlm.core.project import PROJECT_SUFFIX, Project
from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton
from napari_behaviorvlm.napari.buttons import button, button_row
from napari_behaviorvlm.napari.keypoint_layers import KeypointLayers
from napari_behaviorvlm.napari.project_state import (
    ProjectState, get_project_state, set_project_state,
)

__all__ = ["SessionTab"]


def _camera_image_layers(viewer: Any, session) -> list[Any]:
    """Add one image layer per camera (the plugin reader's layers) and return them."""
    from napari_behaviorvlm.napari.reader import session_layer_data

    layers = []
    for layer_data in session_layer_data(session):
        data, kwargs = layer_data[0], dict(layer_data[1] if len(layer_data) > 1 else {})
        layers.append(viewer.add_image(data, **kwargs))
    return layers


class SessionTab:
    """Opening and showing a project; a part of
    :class:`~napari_behaviorvlm.napari.widgets.BehaviorVLMWidget` (it sets the dock's ``state``,
    ``layers`` and ``settings``, and fills the other tabs' fields from the project)."""

    def _session_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        self.open_folder_btn = button("Open folder…", self._ask_open_folder)
        self.open_file_btn = button("Open file…", self._ask_open_file,
                                    "session.toml or a .bvlm project")
        lay.addLayout(button_row(self.open_folder_btn, self.open_file_btn))
        self.calib_btn = button("Attach calibration…", self._ask_calibration,
                                "an anipose calibration.toml with the same camera names")
        self.compute_calib_btn = button("Compute calibration…", self._ask_compute_calibration,
                                        "from a board file and one board video per camera")
        lay.addLayout(button_row(self.calib_btn, self.compute_calib_btn))
        self.save_btn = button("Save", self.save)
        self.save_as_btn = button("Save as…", self._ask_save_as)
        lay.addLayout(button_row(self.save_btn, self.save_as_btn))
        self.session_info = QPlainTextEdit()
        self.session_info.setReadOnly(True)
        self.session_info.setPlaceholderText("No session open.")
        lay.addWidget(self.session_info)
        return tab

    def _ask_open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Session folder (one video per camera)")
        if path:
            self.open_path(path)

    def _ask_open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Session or project", "", f"Session or project (*.toml *{PROJECT_SUFFIX})")
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path) -> ProjectState | None:
        """Open a ``.bvlm`` project, a ``session.toml`` or a session folder.

        A folder (or a session file's folder) holding ``project.bvlm`` reopens that project, so
        coming back to a session restores the labels, seeds, flags and settings. Problems are
        shown in the dock (and returned as None), never raised to the user.
        """
        if not self._confirm_discard():
            return None
        path = Path(path)
        try:
            if path.suffix == PROJECT_SUFFIX:
                state = ProjectState.open(path)
            else:
                from napari_behaviorvlm.video.session_io import load_session

                session = load_session(path)
                existing = (path if path.is_dir() else path.parent) / f"project{PROJECT_SUFFIX}"
                if existing.exists():
                    state = ProjectState.open(existing)
                else:
                    skeleton = self._skeleton_from_edits() or default_qd_mouse_skeleton()
                    state = ProjectState(Project.new(session, skeleton), path=existing)
        except (OSError, ValueError) as exc:
            self.say(f"Could not open {path}: {exc}", error=True)
            return None
        self.set_project(state)
        return state

    def _on_layer_inserted(self, event=None) -> None:
        layer = getattr(event, "value", None)
        if self.state is None and "session" in getattr(layer, "metadata", {}):
            QTimer.singleShot(0, self.adopt_session_layers)  # after all cameras are added

    def adopt_session_layers(self) -> ProjectState | None:
        """Work on a session opened outside the dock (File > Open with the plugin's reader, or
        the sample data): its camera image layers are kept, and the session folder's
        ``project.bvlm`` is reopened when there is one. Does nothing while a project is open."""
        if self.state is not None:
            return None
        images = [layer for layer in self.viewer.layers
                  if "session" in layer.metadata and "camera" in layer.metadata]
        if not images:
            return None
        session = images[0].metadata["session"]
        names = session.camera_names
        by_camera = {layer.metadata["camera"]: layer for layer in images
                     if layer.metadata["session"] is session}
        if sorted(by_camera) != sorted(names):
            return None
        existing = (Path(session.root) if session.root else Path.cwd()) / f"project{PROJECT_SUFFIX}"
        shared = get_project_state(self.viewer)
        if shared is not None and shared.project.session.camera_names == names and (
            shared.project.session.root == session.root
        ):
            self.set_project(shared, images=[by_camera[n] for n in names])
            return shared
        try:
            state = (ProjectState.open(existing) if existing.exists() else
                     ProjectState(Project.new(session, self._skeleton_from_edits()
                                              or default_qd_mouse_skeleton()), path=existing))
        except (OSError, ValueError) as exc:
            self.say(f"Could not reopen {existing}: {exc}", error=True)
            return None
        self.set_project(state, images=[by_camera[n] for n in names])
        return state

    def set_project(self, state: ProjectState, images: list[Any] | None = None) -> None:
        """Show ``state``'s project: camera images (``images``, one per camera in session order,
        or opened from the session's videos), keypoint layers, and saved settings."""
        if self.layers is not None:
            self.layers.remove()
            for layer in list(self.layers.images):
                if layer in self.viewer.layers and layer not in (images or []):
                    self.viewer.layers.remove(layer)
        self.state = state
        set_project_state(self.viewer, state)
        self.settings = ViewerSettings.from_project(state.project)
        problems: list[str] = []
        if images is None:
            images = []
            try:
                images = _camera_image_layers(self.viewer, state.project.session)
            except (OSError, ValueError, ImportError) as exc:
                problems.append(f"videos could not be shown: {exc}")
        self.layers = KeypointLayers(self.viewer, state, self.settings, images,
                                     on_edit=self._on_user_edit)
        self._fill_from_project()
        self.viewer.dims.axis_labels = ("frame", "y", "x")
        frame = min(max(int(self.settings.frame), 0), state.project.poses.n_frames - 1)
        self.viewer.dims.set_current_step(0, frame)
        self.viewer.reset_view()
        self.refresh_review()
        self._update_enabled()
        where = state.path if state.path and state.path.exists() else "a new project"
        self.say("; ".join(problems) if problems else f"Opened {where}.", error=bool(problems))

    def _fill_from_project(self) -> None:
        project = self.state.project
        poses = project.poses
        self._show_skeleton_text(project.skeleton)
        self.camera_combo.clear()
        self.camera_combo.addItems(poses.camera_names)
        self.individual_combo.clear()
        self.individual_combo.addItems(poses.individual_names)
        self.individual_combo.setCurrentText(self.settings.individual or "")
        self.keypoint_list.blockSignals(True)
        self.keypoint_list.clear()
        self.keypoint_list.addItems(poses.keypoint_names)
        self.keypoint_list.blockSignals(False)
        self._sync_keypoint_list()
        self.color_combo.setCurrentText(self.settings.color_mode)
        for check, value in ((self.names_check, self.settings.show_names),
                             (self.skeleton_check, self.settings.show_skeleton),
                             (self.hints_check, self.settings.show_hints)):
            check.blockSignals(True)
            check.setChecked(bool(value))
            check.blockSignals(False)
        last = max(poses.n_frames - 1, 0)
        run = self.settings.run
        for spin, value in ((self.start_spin, run.get("start", 0)),
                            (self.stop_spin, run.get("stop", last))):
            spin.setRange(0, last)
            spin.setValue(min(int(value), last))
        self.backend_combo.setCurrentText(run.get("backend", "local"))
        self.base_url_edit.setText(run.get("base_url", self.base_url_edit.text()))
        self.model_edit.setText(run.get("model", ""))
        self.key_env_edit.setText(run.get("api_key_env", "OPENAI_API_KEY"))
        self._update_seed_label()
        self.session_info.setPlainText(self.session_report())

    def session_report(self) -> str:
        """Per-camera frame counts, fps, calibration and its quality, and any notes."""
        if self.state is None:
            return ""
        session = self.state.project.session
        lines = [f"{len(session.cameras)} cameras, {session.n_frames} frames at "
                 f"{session.fps:g} fps ({session.n_frames / max(session.fps, 1e-9):.1f} s)"]
        for cam, layer in zip(session.cameras, self.layers.images if self.layers else []):
            shape = getattr(layer.data, "shape", ())
            size = f"{shape[2]}x{shape[1]} px" if len(shape) >= 3 else ""
            # the video's own length (the session may be trimmed to the shortest camera)
            frames = getattr(getattr(layer.data, "reader", None), "n_frames", None)
            frames = frames if frames is not None else (shape[0] if shape else "?")
            lines.append(f"  {cam.name}: {frames} frames in the video, {size}"
                         f"{f', offset {cam.frame_offset}' if cam.frame_offset else ''}")
        if session.calibration is None:
            lines.append("No calibration: 2D labeling works, but no 3D, reprojection hints or "
                         "cross-view checks. Attach an anipose calibration.toml.")
        else:
            lines.append(f"Calibration: {len(session.calibration)} cameras "
                         f"({', '.join(session.calibration.names)})")
            lines += self._calibration_quality()
        lines += [f"Note: {n}" for n in session.notes]
        if self.state.path is not None:
            lines.append(f"Project file: {self.state.path}")
        return "\n".join(lines)
