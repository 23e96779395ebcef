"""The BehaviorVLM dock: session, skeleton, labeling, run and review in one place.

Thin over the core: every button calls a function a script could call
(:mod:`napari_behaviorvlm.core.labeling`, :mod:`napari_behaviorvlm.core.review`,
``napari_behaviorvlm.video.session_io.load_session``,
``napari_behaviorvlm.pose.pipeline.run_labeling``). Long work (a labeling run) goes to a
``thread_worker``; layers are only touched on the Qt main thread.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QEvent, QObject, Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit,
    QListWidget, QListWidgetItem, QMessageBox, QPlainTextEdit, QProgressBar, QPushButton,
    QSpinBox, QTabWidget, QVBoxLayout, QWidget,
)

from napari_behaviorvlm.core.labeling import (
    ViewerSettings, mark_seed_frame, next_keypoint_to_label, remap_skeleton, seed_frames,
    skeleton_from_text, skeleton_text, unmark_seed_frame, update_frame_geometry,
)
from napari_behaviorvlm.core.pose import Source
from napari_behaviorvlm.core.project import PROJECT_SUFFIX, Project
from napari_behaviorvlm.core.review import (
    accept_labels, next_flagged_frame, review_counts, review_items,
)
from napari_behaviorvlm.core.skeleton import Skeleton, default_qd_mouse_skeleton
from napari_behaviorvlm.napari.keypoint_layers import ROLE_KEY, KeypointLayers, qt_task
from napari_behaviorvlm.napari.project_state import (
    ProjectState, get_project_state, set_project_state,
)

__all__ = ["AUTOSAVE_DELAY_MS", "BehaviorVLMWidget", "SHORTCUTS"]

AUTOSAVE_DELAY_MS = 1500
REFRESH_DURING_RUN_MS = 1000
MAX_REVIEW_ROWS = 500

#: (key, action, method of BehaviorVLMWidget); listed in the dock and in docs/user-guide.md
SHORTCUTS: list[tuple[str, str, str]] = [
    ("N", "next flagged frame", "next_flagged"),
    ("Shift-N", "previous flagged frame", "previous_flagged"),
    ("Enter", "accept every flagged label of the current frame", "accept_frame"),
    ("Shift-S", "mark / unmark the current frame as a seed frame", "toggle_seed"),
    ("K", "next keypoint to label", "next_keypoint"),
    ("Shift-K", "previous keypoint to label", "previous_keypoint"),
    ("Shift-C", "color by confidence / by keypoint", "toggle_color_mode"),
    ("Shift-T", "show / hide keypoint names", "toggle_names"),
    ("Shift-E", "show / hide skeleton edges", "toggle_skeleton"),
]

SKELETON_PRESETS = {"QD mouse (12 keypoints)": default_qd_mouse_skeleton}


def _camera_image_layers(viewer: Any, session) -> list[Any]:
    """Add one image layer per camera (the plugin reader's layers) and return them."""
    from napari_behaviorvlm.napari.reader import session_layer_data

    layers = []
    for layer_data in session_layer_data(session):
        data, kwargs = layer_data[0], dict(layer_data[1] if len(layer_data) > 1 else {})
        layers.append(viewer.add_image(data, **kwargs))
    return layers


class _RunBridge(QObject):
    """Carries a run's callbacks from the worker thread to the Qt main thread (queued)."""

    progress = Signal(int, int)
    frame_done = Signal(int)


class BehaviorVLMWidget(QWidget):
    """The BehaviorVLM dock widget (tabs: Session, Skeleton, Label, Run, Review).

    Public methods mirror the buttons and shortcuts so a script or a test drives the same code:
    :meth:`open_path`, :meth:`set_project`, :meth:`save`, :meth:`toggle_seed`,
    :meth:`start_run`, :meth:`cancel_run`, :meth:`next_flagged`, :meth:`accept_frame`, ...
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.state: ProjectState | None = None
        self.layers: KeypointLayers | None = None
        self.settings = ViewerSettings()
        self.worker = None
        self._save_worker = None
        self._cancel = threading.Event()
        self._pending_frames: set[int] = set()
        self._last_report = None
        self._bridge = _RunBridge()
        self._bridge.progress.connect(self._on_run_progress)
        self._bridge.frame_done.connect(self._on_frame_done)
        self._autosave_timer = QTimer(self)
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.setInterval(AUTOSAVE_DELAY_MS)
        self._autosave_timer.timeout.connect(self.autosave)
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(REFRESH_DURING_RUN_MS)
        self._refresh_timer.timeout.connect(self._flush_run_frames)

        self.tabs = QTabWidget()
        self.tabs.addTab(self._session_tab(), "Session")
        self.tabs.addTab(self._skeleton_tab(), "Skeleton")
        self.tabs.addTab(self._label_tab(), "Label")
        self.tabs.addTab(self._run_tab(), "Run")
        self.tabs.addTab(self._review_tab(), "Review")
        self.message = QLabel("Open a session folder, a session.toml or a .bvlm project.")
        self.message.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(self.message)
        self._bind_keys()
        self._install_close_guard()
        self.viewer.dims.events.current_step.connect(self._on_frame_changed)
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self.viewer.layers.selection.events.active.connect(self._on_active_layer)
        self._update_enabled()
        self.adopt_session_layers()

    # ================================================================= tabs
    def _session_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        row = QHBoxLayout()
        self.open_folder_btn = QPushButton("Open folder…")
        self.open_folder_btn.clicked.connect(self._ask_open_folder)
        self.open_file_btn = QPushButton("Open file…")
        self.open_file_btn.setToolTip("session.toml or a .bvlm project")
        self.open_file_btn.clicked.connect(self._ask_open_file)
        row.addWidget(self.open_folder_btn)
        row.addWidget(self.open_file_btn)
        lay.addLayout(row)
        row = QHBoxLayout()
        self.calib_btn = QPushButton("Attach calibration…")
        self.calib_btn.setToolTip("an anipose calibration.toml with the same camera names")
        self.calib_btn.clicked.connect(self._ask_calibration)
        self.save_btn = QPushButton("Save")
        self.save_btn.clicked.connect(lambda: self.save())
        self.save_as_btn = QPushButton("Save as…")
        self.save_as_btn.clicked.connect(self._ask_save_as)
        self.compute_calib_btn = QPushButton("Compute calibration…")
        self.compute_calib_btn.setToolTip("from a board file and one board video per camera")
        self.compute_calib_btn.clicked.connect(self._ask_compute_calibration)
        row.addWidget(self.calib_btn)
        row.addWidget(self.compute_calib_btn)
        lay.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(self.save_btn)
        row.addWidget(self.save_as_btn)
        lay.addLayout(row)
        self.session_info = QPlainTextEdit()
        self.session_info.setReadOnly(True)
        self.session_info.setPlaceholderText("No session open.")
        lay.addWidget(self.session_info)
        return tab

    def _skeleton_tab(self) -> QWidget:
        tab = QWidget()
        lay = QFormLayout(tab)
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(list(SKELETON_PRESETS))
        self.preset_combo.activated.connect(self._load_preset)
        lay.addRow("Preset", self.preset_combo)
        self.skel_edits = {}
        for key, hint in (("keypoints", "one name per line"),
                          ("regions", "region: keypoint, keypoint"),
                          ("edges", "keypoint - keypoint"),
                          ("symmetry", "left - right")):
            edit = QPlainTextEdit()
            edit.setPlaceholderText(hint)
            edit.setMaximumHeight(90)
            self.skel_edits[key] = edit
            lay.addRow(key.capitalize(), edit)
        self.apply_skel_btn = QPushButton("Apply skeleton")
        self.apply_skel_btn.clicked.connect(self._apply_skeleton_text)
        lay.addRow(self.apply_skel_btn)
        self._show_skeleton_text(default_qd_mouse_skeleton())
        return tab

    def _label_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        seeds = QGroupBox("Seed frames")
        sl = QVBoxLayout(seeds)
        self.seed_btn = QPushButton("Mark current frame as seed (Shift-S)")
        self.seed_btn.clicked.connect(self.toggle_seed)
        self.seed_label = QLabel("none yet: label 3 frames fully and mark them")
        self.seed_label.setWordWrap(True)
        self.import_btn = QPushButton("Import labels (CSV)…")
        self.import_btn.setToolTip("frame,camera,individual,keypoint,x,y[,source] rows; "
                                   "frames become seed frames")
        self.import_btn.clicked.connect(self._ask_import_labels)
        sl.addWidget(self.seed_btn)
        sl.addWidget(self.import_btn)
        sl.addWidget(self.seed_label)
        lay.addWidget(seeds)
        box = QGroupBox("Click to label")
        form = QFormLayout(box)
        self.camera_combo = QComboBox()
        self.camera_combo.activated.connect(lambda _: self.start_labeling())
        form.addRow("Camera", self.camera_combo)
        self.individual_combo = QComboBox()
        self.individual_combo.activated.connect(self._individual_chosen)
        form.addRow("Individual", self.individual_combo)
        self.keypoint_list = QListWidget()
        self.keypoint_list.setMaximumHeight(150)
        self.keypoint_list.currentRowChanged.connect(self._keypoint_chosen)
        form.addRow("Keypoint", self.keypoint_list)
        self.label_btn = QPushButton("Label in this camera (add mode)")
        self.label_btn.clicked.connect(self.start_labeling)
        form.addRow(self.label_btn)
        lay.addWidget(box)
        show = QGroupBox("Display")
        fl = QFormLayout(show)
        self.color_combo = QComboBox()
        self.color_combo.addItems(["confidence", "keypoint"])
        self.color_combo.activated.connect(
            lambda _: self.set_color_mode(self.color_combo.currentText()))
        fl.addRow("Color by", self.color_combo)
        self.names_check = QCheckBox("keypoint names")
        self.names_check.toggled.connect(self._names_toggled)
        self.skeleton_check = QCheckBox("skeleton edges")
        self.skeleton_check.toggled.connect(self._skeleton_toggled)
        self.hints_check = QCheckBox("reprojection hints (+)")
        self.hints_check.setChecked(True)
        self.hints_check.toggled.connect(self._hints_toggled)
        for check in (self.names_check, self.skeleton_check, self.hints_check):
            fl.addRow(check)
        lay.addWidget(show)
        keys = QLabel("<b>Shortcuts</b><br>" + "<br>".join(
            f"<code>{key}</code>: {text}" for key, text, _ in SHORTCUTS))
        keys.setTextFormat(Qt.RichText)
        keys.setWordWrap(True)
        lay.addWidget(keys)
        lay.addStretch(1)
        return tab

    def _run_tab(self) -> QWidget:
        tab = QWidget()
        form = QFormLayout(tab)
        self.backend_combo = QComboBox()
        self.backend_combo.addItems(["local", "vlm", "hybrid"])
        self.backend_combo.setToolTip("local: geometry + seeds, no network; vlm: ask a vision-"
                                      "language model; hybrid: the VLM only where ambiguous")
        self.backend_combo.currentTextChanged.connect(self._backend_changed)
        form.addRow("Backend", self.backend_combo)
        self.base_url_edit = QLineEdit("http://localhost:11434/v1")
        form.addRow("Base URL", self.base_url_edit)
        self.model_edit = QLineEdit("")
        self.model_edit.setPlaceholderText("e.g. gpt-4o-mini, qwen2.5vl:7b")
        form.addRow("Model", self.model_edit)
        self.key_env_edit = QLineEdit("OPENAI_API_KEY")
        self.key_env_edit.setToolTip("NAME of the environment variable holding the API key; "
                                     "the key itself is never stored")
        form.addRow("API key env var", self.key_env_edit)
        row = QHBoxLayout()
        self.start_spin = QSpinBox()
        self.stop_spin = QSpinBox()
        row.addWidget(self.start_spin)
        row.addWidget(QLabel("to"))
        row.addWidget(self.stop_spin)
        form.addRow("Frames", row)
        self.relabel_check = QCheckBox("relabel frames already done (after your corrections)")
        self.relabel_check.setToolTip("Run the range again so your corrections steer the frames "
                                      "around them; seed and human labels are kept")
        form.addRow(self.relabel_check)
        row = QHBoxLayout()
        self.run_btn = QPushButton("Run")
        self.run_btn.clicked.connect(lambda: self.start_run())
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self.cancel_run)
        row.addWidget(self.run_btn)
        row.addWidget(self.cancel_btn)
        form.addRow(row)
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m frames")
        form.addRow(self.progress)
        self.run_status = QLabel("")
        self.run_status.setWordWrap(True)
        form.addRow(self.run_status)
        self._backend_changed("local")
        return tab

    def _review_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        self.review_counts_label = QLabel("nothing flagged")
        lay.addWidget(self.review_counts_label)
        row = QHBoxLayout()
        self.prev_btn = QPushButton("◀ previous (Shift-N)")
        self.prev_btn.clicked.connect(self.previous_flagged)
        self.next_btn = QPushButton("next (N) ▶")
        self.next_btn.clicked.connect(self.next_flagged)
        row.addWidget(self.prev_btn)
        row.addWidget(self.next_btn)
        lay.addLayout(row)
        self.review_list = QListWidget()
        self.review_list.itemActivated.connect(self._review_item_activated)
        self.review_list.itemClicked.connect(self._review_item_activated)
        lay.addWidget(self.review_list)
        row = QHBoxLayout()
        self.accept_btn = QPushButton("Accept selected")
        self.accept_btn.clicked.connect(self.accept_selected)
        self.accept_frame_btn = QPushButton("Accept frame (Enter)")
        self.accept_frame_btn.clicked.connect(self.accept_frame)
        row.addWidget(self.accept_btn)
        row.addWidget(self.accept_frame_btn)
        lay.addLayout(row)
        hint = QLabel("To correct a label, drag it (select mode, key S) or delete it: the label "
                      "becomes human, its 3D and the other cameras update.")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        return tab

    # ================================================================= messages
    def say(self, text: str, error: bool = False) -> None:
        """Show a message under the tabs (red for problems)."""
        self.message.setStyleSheet("color: #ff6b6b;" if error else "")
        self.message.setText(text)

    def _update_enabled(self) -> None:
        has = self.state is not None
        running = self.worker is not None
        for w in (self.calib_btn, self.compute_calib_btn, self.save_btn, self.save_as_btn, self.apply_skel_btn,
                  self.seed_btn, self.label_btn, self.run_btn, self.next_btn, self.prev_btn,
                  self.accept_btn, self.accept_frame_btn):
            w.setEnabled(has and not running)
        self.cancel_btn.setEnabled(running)
        self.open_folder_btn.setEnabled(not running)
        self.open_file_btn.setEnabled(not running)

    # ================================================================= session / project
    def _ask_open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Session folder (one video per camera)")
        if path:
            self.open_path(path)

    def _ask_open_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Session or project", "", f"Session or project (*.toml *{PROJECT_SUFFIX})")
        if path:
            self.open_path(path)

    def _ask_calibration(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "anipose calibration", "", "TOML (*.toml)")
        if path:
            self.attach_calibration(path)

    def _ask_save_as(self) -> None:
        if self.state is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save project", str(self.state.default_path()),
                                              f"Project (*{PROJECT_SUFFIX})")
        if path:
            self.save(path)

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

    def _on_active_layer(self, event=None) -> None:
        layer = self.viewer.layers.selection.active
        if self.layers is not None and layer in self.layers.points.values():
            self.camera_combo.setCurrentText(layer.metadata[ROLE_KEY]["camera"])

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

    def _calibration_quality(self) -> list[str]:
        from napari_behaviorvlm.geometry.validation import calibration_quality

        q = calibration_quality(self.state.project.session.calibration)
        lines = []
        if q.get("baseline_mm"):
            lines.append(f"  camera distances {q['baseline_mm']['min']:.0f}-"
                         f"{q['baseline_mm']['max']:.0f} mm")
        for key, text in (("reprojection_median_px", "median reprojection error"),
                          ("reprojection_error_px", "reprojection error")):
            if key in q:
                lines.append(f"  {text} {q[key]:.2f} px (from the calibration file)")
        lines.append("  calibration checks: " + ("OK" if q["ok"] and not q["warnings"] else
                                                 f"{q['errors']} errors, {q['warnings']} warnings"))
        lines += [f"  {issue}" for issue in q["issues"]]
        return lines

    def _ask_compute_calibration(self) -> None:
        board, _ = QFileDialog.getOpenFileName(self, "Board file (TOML)", "", "TOML (*.toml)")
        if not board:
            return
        folder = QFileDialog.getExistingDirectory(
            self, "Board videos: one per camera, named like the session's cameras")
        if folder:
            self.compute_calibration(board, folder)

    def compute_calibration(self, board_file: str | Path, videos: str | Path):
        """Calibrate from a board filmed by every camera (``geometry.calibrate``, in a worker
        thread), write ``calibration.toml`` beside the session (never over an existing one) and
        attach it. Returns the worker, or None when it could not start."""
        if self.state is None or self.worker is not None:
            return None
        from napari.qt.threading import create_worker

        from napari_behaviorvlm.core.atomic import check_overwrite
        from napari_behaviorvlm.geometry.calibrate import calibrate, load_board
        from napari_behaviorvlm.video.session_io import find_camera_videos

        session = self.state.project.session
        target = (session.root or Path.cwd()) / "calibration.toml"
        try:
            check_overwrite(target, overwrite=False)
            board = load_board(board_file)
            found = find_camera_videos(videos)
            missing = [n for n in session.camera_names if n not in found]
            if missing:
                raise ValueError(f"{videos} has no board video for cameras {missing} "
                                 f"(found {sorted(found)})")
        except (OSError, ValueError) as exc:
            self.say(f"Calibration not computed: {exc}", error=True)
            return None

        def work():
            from napari_behaviorvlm.geometry.camera import save_calibration

            result = calibrate(board, {n: found[n] for n in session.camera_names})
            save_calibration(result.group, target)
            return target

        worker = create_worker(work, _start_thread=False)
        worker.returned.connect(self.attach_calibration)
        worker.errored.connect(lambda exc: self.say(f"Calibration failed: {exc}", error=True))
        worker.finished.connect(self._calibration_finished)
        self.worker = worker
        self._update_enabled()
        self.say(f"Calibrating {len(found)} cameras from {videos}…")
        worker.start()
        return worker

    def _calibration_finished(self) -> None:
        self.worker = None
        self._update_enabled()

    def attach_calibration(self, path: str | Path) -> bool:
        """Load an anipose ``calibration.toml`` into the open session (cameras matched by name)."""
        from napari_behaviorvlm.geometry.camera import load_calibration

        if self.state is None:
            return False
        try:
            group = load_calibration(path)
            names = self.state.project.session.camera_names
            missing = [n for n in names if n not in group.names]
            if missing:
                raise ValueError(f"it has no camera named {missing} (it has {group.names}); "
                                 "rename the [cam_N] name entries to the session's cameras")
            self.state.project.session.calibration = group.subset(names)
        except (OSError, ValueError) as exc:
            self.say(f"Calibration {path} not attached: {exc}", error=True)
            return False
        self.state.mark_dirty("settings")
        self._schedule_autosave()
        self.session_info.setPlainText(self.session_report())
        self.layers.refresh_hints()
        self.say(f"Calibration attached from {path}.")
        return True

    def save(self, path: str | Path | None = None) -> Path | None:
        """Save the project (atomically) with the current viewer settings."""
        if self.state is None:
            return None
        self._store_settings()
        try:
            target = self.state.save(path)
        except (OSError, TypeError, ValueError) as exc:
            self.say(f"Saving failed, your work is still in memory: {exc}", error=True)
            return None
        self.say(f"Saved {target}.")
        return target

    @qt_task
    def autosave(self):
        """Save unsaved changes in a background thread (after edits, debounced, and after
        runs): a copy of the project is written, so editing goes on meanwhile. Returns the
        save worker, or None when there is nothing to save."""
        if (self.state is None or not self.state.dirty or self.worker is not None
                or self._save_worker is not None):
            return None
        from napari.qt.threading import create_worker

        from napari_behaviorvlm.core.project import save_project

        self._store_settings()
        snapshot, edits = self.state.snapshot()
        target = self.state.target_path()
        worker = create_worker(save_project, snapshot, target, _start_thread=False)
        worker.returned.connect(lambda path: self.state.mark_saved(path, edits))
        worker.errored.connect(lambda exc: self.say(
            f"Autosave to {target} failed, your work is still in memory: {exc}", error=True))
        worker.finished.connect(self._on_save_finished)
        self._save_worker = worker
        worker.start()
        return worker

    def _on_save_finished(self) -> None:
        self._save_worker = None
        if self.state is not None and self.state.dirty:
            self._schedule_autosave()

    def _schedule_autosave(self) -> None:
        self._autosave_timer.start()

    def _store_settings(self) -> None:
        self.settings.frame = int(self.viewer.dims.current_step[0])
        self.settings.run = self._run_settings()
        self.settings.store(self.state.project)

    # ================================================================= close guard
    def _install_close_guard(self) -> None:
        window = getattr(getattr(self.viewer, "window", None), "_qt_window", None)
        if window is not None:
            window.installEventFilter(self)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt API)
        # a hidden window (scripts, tests) is closed by code, not by a user who could answer
        if event.type() == QEvent.Close and obj.isVisible() and not self._confirm_discard():
            event.ignore()
            return True
        return False

    def _confirm_discard(self) -> bool:
        """True when there is no unsaved work, or the user saved or chose to discard it."""
        if self.state is None or not self.state.dirty:
            return True
        answer = QMessageBox.question(
            self, "Unsaved labels", "The project has unsaved changes. Save them first?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save)
        if answer == QMessageBox.Save:
            return self.save() is not None
        return answer == QMessageBox.Discard

    # ================================================================= skeleton
    def _show_skeleton_text(self, skeleton: Skeleton) -> None:
        for key, text in skeleton_text(skeleton).items():
            self.skel_edits[key].setPlainText(text)

    def _load_preset(self, _index: int = 0) -> None:
        self._show_skeleton_text(SKELETON_PRESETS[self.preset_combo.currentText()]())

    def _skeleton_from_edits(self) -> Skeleton | None:
        texts = {k: e.toPlainText() for k, e in self.skel_edits.items()}
        try:
            skeleton = skeleton_from_text(**texts)
        except ValueError as exc:
            self.say(f"Skeleton not valid: {exc}", error=True)
            return None
        preset = SKELETON_PRESETS[self.preset_combo.currentText()]()
        return preset if skeleton_text(preset) == skeleton_text(skeleton) else skeleton

    def _apply_skeleton_text(self) -> None:
        skeleton = self._skeleton_from_edits()
        if skeleton is not None:
            self.apply_skeleton(skeleton)

    def apply_skeleton(self, skeleton: Skeleton) -> None:
        """Use ``skeleton`` (labels of keypoints kept by name; others dropped)."""
        if self.state is None:
            return
        if skeleton == self.state.project.skeleton:
            self.say("The skeleton is unchanged.")
            return
        dropped = [k for k in self.state.project.skeleton.keypoints if k not in skeleton.keypoints]
        if dropped and self.state.project.poses.labeled_mask()[..., [
                self.state.project.poses.keypoint_index(k) for k in dropped]].any():
            answer = QMessageBox.question(
                self, "Drop labels?", f"Labels of {', '.join(dropped)} will be removed. Go on?")
            if answer != QMessageBox.Yes:
                return
        self._store_settings()
        project = remap_skeleton(self.state.project, skeleton)
        state = self.state
        state.replace_project(project)
        self.set_project(state, images=self.layers.images)
        self._schedule_autosave()
        self.say(f"Skeleton {skeleton.name!r} with {skeleton.n_keypoints} keypoints in use.")

    # ================================================================= labeling
    def _sync_keypoint_list(self) -> None:
        if self.layers is None:
            return
        names = self.state.project.poses.keypoint_names
        self.keypoint_list.blockSignals(True)
        self.keypoint_list.setCurrentRow(names.index(self.settings.current_keypoint))
        self.keypoint_list.blockSignals(False)

    def _keypoint_chosen(self, row: int) -> None:
        if self.layers is not None and row >= 0:
            self.layers.set_current_keypoint(row)

    def _individual_chosen(self, _index: int) -> None:
        if self.layers is not None:
            self.settings.individual = self.individual_combo.currentText()
            self.layers.set_current_keypoint(self.settings.current_keypoint)

    def start_labeling(self, camera: str | None = None) -> None:
        """Select ``camera``'s keypoint layer in add mode: each click labels the current
        keypoint, then the cursor moves to the next unlabeled one."""
        if self.layers is None:
            return
        camera = camera or self.camera_combo.currentText()
        self.camera_combo.setCurrentText(camera)
        first = next_keypoint_to_label(self.state.project.poses, camera,
                                       int(self.viewer.dims.current_step[0]),
                                       self.settings.individual)
        if first is not None:
            self.layers.set_current_keypoint(first)
            self._sync_keypoint_list()
        self.layers.activate(camera, "add")
        self.say(f"Click {self.settings.current_keypoint} in {camera}; K skips to the next "
                 "keypoint.")

    def next_keypoint(self, step: int = 1) -> None:
        if self.layers is not None:
            name = self.layers.step_keypoint(step)
            self._sync_keypoint_list()
            self.say(f"Next click labels {name}.")

    def previous_keypoint(self) -> None:
        self.next_keypoint(-1)

    def toggle_seed(self) -> None:
        """Mark the current frame as a seed frame (or unmark it when it is one)."""
        if self.state is None:
            return
        frame = int(self.viewer.dims.current_step[0])
        project = self.state.project
        if frame in seed_frames(project):
            unmark_seed_frame(project, frame)
            self.say(f"Frame {frame} is no longer a seed frame.")
        else:
            n = mark_seed_frame(project, frame)
            self.say(f"Frame {frame} is a seed frame ({n} labels).")
        self._on_user_edit([frame])
        self.layers.refresh()

    def _ask_import_labels(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Labels CSV", "", "CSV (*.csv)")
        if path:
            self.import_labels(path)

    def import_labels(self, path: str | Path) -> list[int]:
        """Read seed labels from a labels CSV (``io.labels_csv``); their frames become seed
        frames. Returns the frames read (empty on a problem, shown in the dock)."""
        from napari_behaviorvlm.io.labels_csv import read_labels_csv

        if self.state is None:
            return []
        project = self.state.project
        before = project.poses.source == Source.SEED
        try:
            read_labels_csv(path, project.poses)
        except (OSError, ValueError) as exc:
            self.say(f"Labels not imported: {exc}", error=True)
            return []
        frames = sorted({int(f) for f in np.nonzero((project.poses.source == Source.SEED) & ~before)[1]})
        for frame in frames:
            mark_seed_frame(project, frame)
            update_frame_geometry(project, frame)
        self.layers.refresh()
        self._on_user_edit(frames)
        self.say(f"Imported seed labels of frames {frames} from {path}.")
        return frames

    def _update_seed_label(self) -> None:
        if self.state is None:
            return
        seeds = seed_frames(self.state.project)
        poses = self.state.project.poses
        if not seeds:
            self.seed_label.setText("none yet: label 3 frames fully and mark them")
            return
        parts = []
        for f in seeds:
            done = int(np.isfinite(poses.points2d[:, f, ..., 0]).sum())
            parts.append(f"{f} ({done}/{poses.n_cameras * poses.n_individuals * poses.n_keypoints})")
        self.seed_label.setText("frames " + ", ".join(parts))

    @qt_task
    def _on_user_edit(self, frames: list[int]) -> None:
        """After a click, drag, delete, seed or accept: save soon, update the lists."""
        if self.state is None:
            return
        self.state.mark_dirty("poses", frames)
        self._schedule_autosave()
        self._sync_keypoint_list()
        self._update_seed_label()
        self.refresh_review()

    # ================================================================= display toggles
    def set_color_mode(self, mode: str) -> None:
        if self.layers is not None:
            self.layers.set_color_mode(mode)
            self.color_combo.setCurrentText(mode)

    def toggle_color_mode(self) -> None:
        self.set_color_mode("keypoint" if self.settings.color_mode == "confidence" else "confidence")

    def _names_toggled(self, on: bool) -> None:
        if self.layers is not None:
            self.layers.set_show_names(on)

    def _skeleton_toggled(self, on: bool) -> None:
        if self.layers is not None:
            self.layers.set_show_skeleton(on)

    def _hints_toggled(self, on: bool) -> None:
        if self.layers is not None:
            self.layers.set_show_hints(on)

    def toggle_names(self) -> None:
        self.names_check.setChecked(not self.names_check.isChecked())

    def toggle_skeleton(self) -> None:
        self.skeleton_check.setChecked(not self.skeleton_check.isChecked())

    # ================================================================= run
    def _backend_changed(self, backend: str) -> None:
        for w in (self.base_url_edit, self.model_edit, self.key_env_edit):
            w.setEnabled(backend != "local")

    def _run_settings(self) -> dict[str, Any]:
        return {
            "backend": self.backend_combo.currentText(),
            "base_url": self.base_url_edit.text().strip(),
            "model": self.model_edit.text().strip(),
            "api_key_env": self.key_env_edit.text().strip(),
            "start": int(self.start_spin.value()),
            "stop": int(self.stop_spin.value()),
        }

    def labeling_config(self):
        """The pipeline configuration from the Run tab (the key stays in the environment)."""
        from napari_behaviorvlm.pose.pipeline import LabelingConfig

        run = self._run_settings()
        if run["backend"] == "local":
            return LabelingConfig(backend="local")
        from napari_behaviorvlm.vlm.config import VLMConfig

        vlm = VLMConfig(base_url=run["base_url"], model=run["model"],
                        api_key_env=run["api_key_env"])
        return LabelingConfig(backend=run["backend"], vlm=vlm)

    def start_run(self, frames: list[int] | None = None):
        """Label ``frames`` (default: the Run tab's range) in a worker thread; results show up
        frame by frame; returns the worker (None when the run could not start)."""
        if self.state is None or self.worker is not None:
            return None
        from napari.qt.threading import create_worker

        from napari_behaviorvlm.pose.pipeline import run_labeling

        run = self._run_settings()
        if frames is None:
            if run["stop"] < run["start"]:
                self.say("The frame range is empty: the first frame is after the last.", True)
                return None
            frames = list(range(run["start"], run["stop"] + 1))
        if not seed_frames(self.state.project):
            self.say("Mark at least one labeled frame as a seed frame first (Label tab).", True)
            return None
        try:
            config = self.labeling_config()
        except (ValueError, TypeError) as exc:
            self.say(f"Run settings are not valid: {exc}", error=True)
            return None
        self._store_settings()
        self._cancel.clear()
        self.progress.setRange(0, len(frames))
        self.progress.setValue(0)
        self.layers.set_editable(False)
        self._run_started = time.perf_counter()
        worker = create_worker(
            run_labeling, self.state.project, frames=frames, config=config,
            on_progress=self._bridge.progress.emit, should_stop=self._cancel.is_set,
            on_frame_done=self._bridge.frame_done.emit, relabel=self.relabel_check.isChecked(),
            _start_thread=False,
        )
        worker.returned.connect(self._on_run_returned)
        worker.errored.connect(self._on_run_errored)
        worker.finished.connect(self._on_run_finished)
        self.worker = worker
        self._update_enabled()
        self.run_status.setText(f"Running the {run['backend']} reasoner on {len(frames)} frames…")
        worker.start()
        return worker

    def cancel_run(self) -> None:
        """Ask the run to stop after the frame in progress (finished frames are kept)."""
        if self.worker is not None:
            self._cancel.set()
            self.run_status.setText("Cancelling after the current frame…")

    @qt_task
    def _on_run_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    @qt_task
    def _on_frame_done(self, frame: int) -> None:
        self._pending_frames.add(int(frame))
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    @qt_task
    def _flush_run_frames(self) -> None:
        if self._pending_frames and self.layers is not None:
            frames = sorted(self._pending_frames)
            self._pending_frames.clear()
            self.layers.schedule_refresh()
            self.state.mark_dirty("poses", frames)

    @qt_task
    def _on_run_returned(self, report: Any) -> None:
        self._last_report = report
        secs = time.perf_counter() - self._run_started
        stopped = " (cancelled)" if self._cancel.is_set() else ""
        self.run_status.setText(
            f"Done{stopped} in {secs:.1f} s: {len(report.frames_done)} frames labeled, "
            f"{report.frames_skipped} skipped (seeds or done before), {report.n_revisited} "
            f"doubtful frames labeled again from both sides, {report.n_flagged} labels "
            f"flagged for review, {report.vlm_calls} VLM calls. Human and seed labels were kept."
            + (" Every frame in the range was done already: tick 'relabel' to run it again "
               "with your corrections." if not report.frames_done and report.frames_skipped
               and not self.relabel_check.isChecked() else ""))
        self.say("Run finished: review the flagged labels (Review tab, N / Shift-N).")

    def _on_run_errored(self, exc: BaseException) -> None:
        self.run_status.setText("")
        self.say(f"The run stopped: {exc}. Finished frames are kept.", error=True)

    @qt_task
    def _on_run_finished(self) -> None:
        self.worker = None
        self._refresh_timer.stop()
        self._pending_frames.clear()
        self.layers.set_editable(True)
        self.layers.schedule_refresh()
        self.state.mark_dirty("poses")
        self.refresh_review()
        self._update_enabled()
        self.autosave()

    # ================================================================= review
    @qt_task
    def refresh_review(self) -> None:
        """Update the flagged list (by frame) and the counts left (after edits and runs)."""
        if self.state is None:
            return
        poses = self.state.project.poses
        counts = review_counts(poses)
        self.review_counts_label.setText(
            f"{counts.labels} flagged labels in {counts.frames} frames left to review"
            if counts.labels else "nothing flagged")
        items = review_items(poses)
        self._review_rows = items[:MAX_REVIEW_ROWS]
        self._review_first_row = {}
        for row, item in enumerate(self._review_rows):
            self._review_first_row.setdefault(item.frame, row)
        self.review_list.setUpdatesEnabled(False)
        self.review_list.clear()
        self.review_list.addItems([item.describe() for item in self._review_rows])
        if len(items) > MAX_REVIEW_ROWS:
            self.review_list.addItem(f"… {len(items) - MAX_REVIEW_ROWS} more (N jumps to them)")
        self.review_list.setUpdatesEnabled(True)
        self._scroll_review_to_frame()

    def review_item(self, row: int):
        """The :class:`~napari_behaviorvlm.core.review.ReviewItem` shown in list row ``row``."""
        rows = getattr(self, "_review_rows", [])
        return rows[row] if 0 <= row < len(rows) else None

    def _scroll_review_to_frame(self) -> None:
        row = getattr(self, "_review_first_row", {}).get(int(self.viewer.dims.current_step[0]))
        if row is not None:
            self.review_list.scrollToItem(self.review_list.item(row),
                                          self.review_list.PositionAtTop)

    @qt_task
    def _on_frame_changed(self, event=None) -> None:
        if self.state is not None and self.tabs.currentIndex() == 4:
            self._scroll_review_to_frame()

    def _jump(self, frame: int | None) -> None:
        if frame is None:
            self.say("Nothing flagged is left to review.")
            return
        self.viewer.dims.set_current_step(0, frame)

    def next_flagged(self) -> None:
        if self.state is not None:
            self._jump(next_flagged_frame(self.state.project.poses,
                                          int(self.viewer.dims.current_step[0]), 1))

    def previous_flagged(self) -> None:
        if self.state is not None:
            self._jump(next_flagged_frame(self.state.project.poses,
                                          int(self.viewer.dims.current_step[0]), -1))

    def _review_item_activated(self, row: QListWidgetItem) -> None:
        item = self.review_item(self.review_list.row(row))
        if item is None or self.layers is None:
            return
        self.viewer.dims.set_current_step(0, item.frame)
        layer = self.layers.points[item.camera]
        self.viewer.layers.selection.active = layer
        feats = layer.features
        hit = np.nonzero((layer.data[:, 0] == item.frame)
                         & (feats["keypoint"] == item.keypoint).to_numpy()
                         & (feats["individual"] == item.individual).to_numpy())[0]
        layer.mode = "select"
        layer.selected_data = set(int(i) for i in hit)
        self.say(f"{item.describe()}. Drag the point to correct it, or accept it.")

    def accept_selected(self) -> None:
        """Accept the flagged label selected in the list."""
        item = self.review_item(self.review_list.currentRow())
        if item is None or self.state is None:
            return
        n = accept_labels(self.state.project, item.frame, item.camera, item.individual,
                          item.keypoint)
        self._after_accept(item.frame, n)

    def accept_frame(self) -> None:
        """Accept every flagged label of the current frame."""
        if self.state is None:
            return
        frame = int(self.viewer.dims.current_step[0])
        self._after_accept(frame, accept_labels(self.state.project, frame))

    def _after_accept(self, frame: int, n: int) -> None:
        self.layers.refresh()
        self._on_user_edit([frame])
        self.say(f"Accepted {n} labels in frame {frame}.")

    # ================================================================= keys
    def _bind_keys(self) -> None:
        for key, _text, method in SHORTCUTS:
            func = getattr(self, method)
            self.viewer.bind_key(key, lambda viewer, func=func: func(), overwrite=True)

