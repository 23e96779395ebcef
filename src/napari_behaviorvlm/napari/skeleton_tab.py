"""The labeling dock's Skeleton tab: edit the keypoints, regions, edges and symmetry as text
(or pick a preset) and apply them, keeping the labels of keypoints by name."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QFormLayout, QMessageBox, QPlainTextEdit, QPushButton, QWidget

from napari_behaviorvlm.core.labeling import remap_skeleton, skeleton_from_text, skeleton_text
from napari_behaviorvlm.core.skeleton import Skeleton, default_qd_mouse_skeleton

__all__ = ["SKELETON_PRESETS", "SkeletonTab"]

SKELETON_PRESETS = {"QD mouse (12 keypoints)": default_qd_mouse_skeleton}


class SkeletonTab:
    """The project's skeleton as editable text; a part of
    :class:`~napari_behaviorvlm.napari.widgets.BehaviorVLMWidget`."""

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
