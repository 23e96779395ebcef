"""The labeling dock's Label tab: seed frames (marked or imported), click labeling one
keypoint after the other, the display toggles, and the list of shortcuts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox, QComboBox, QFileDialog, QFormLayout, QGroupBox, QLabel, QListWidget, QPushButton,
    QVBoxLayout, QWidget,
)

from napari_behaviorvlm.core.labeling import (
    mark_seed_frame, next_keypoint_to_label, seed_frames, unmark_seed_frame,
    update_frame_geometry,
)
from napari_behaviorvlm.core.pose import Source
from napari_behaviorvlm.napari.keypoint_layers import ROLE_KEY, qt_task
from napari_behaviorvlm.napari.labeling_shortcuts import SHORTCUTS

__all__ = ["LabelTab"]


class LabelTab:
    """Human labels and how they are shown; a part of
    :class:`~napari_behaviorvlm.napari.widgets.BehaviorVLMWidget` (every user edit goes through
    :meth:`_on_user_edit`)."""

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

    def _on_active_layer(self, event=None) -> None:
        layer = self.viewer.layers.selection.active
        if self.layers is not None and layer in self.layers.points.values():
            self.camera_combo.setCurrentText(layer.metadata[ROLE_KEY]["camera"])

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
