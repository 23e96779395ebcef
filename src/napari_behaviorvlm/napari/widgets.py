"""The BehaviorVLM dock: session, skeleton, labeling, run and review in one place.

Thin over the core: every button calls a function a script could call
(:mod:`napari_behaviorvlm.core.labeling`, :mod:`napari_behaviorvlm.core.review`,
``napari_behaviorvlm.video.session_io.load_session``,
``napari_behaviorvlm.pose.pipeline.run_labeling``). Long work (a labeling run) goes to a
``thread_worker``; layers are only touched on the Qt main thread.

The dock is one widget made of one mixin per tab or concern, each in its module:
:mod:`~napari_behaviorvlm.napari.session_tab` (open, adopt and show a project),
:mod:`~napari_behaviorvlm.napari.session_calibration` (attach or compute a calibration),
:mod:`~napari_behaviorvlm.napari.skeleton_tab`, :mod:`~napari_behaviorvlm.napari.label_tab`
(seed frames, click labeling, display), :mod:`~napari_behaviorvlm.napari.run_tab` (the
labeling run in its worker), :mod:`~napari_behaviorvlm.napari.review_tab` (flagged labels),
:mod:`~napari_behaviorvlm.napari.project_saving` (save, autosave, close guard) and
:mod:`~napari_behaviorvlm.napari.labeling_shortcuts`. They share what this module sets up:
``viewer``, ``state`` (the open project), ``layers`` (its keypoint layers), ``settings``,
``worker`` (the run or calibration in progress), :meth:`~BehaviorVLMWidget.say` and
:meth:`~BehaviorVLMWidget._update_enabled`.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtWidgets import QLabel, QTabWidget, QVBoxLayout, QWidget

from napari_behaviorvlm.core.labeling import ViewerSettings
from napari_behaviorvlm.napari.keypoint_layers import KeypointLayers
from napari_behaviorvlm.napari.label_tab import LabelTab
from napari_behaviorvlm.napari.labeling_shortcuts import SHORTCUTS, bind_shortcuts
from napari_behaviorvlm.napari.project_saving import AUTOSAVE_DELAY_MS, ProjectSaving
from napari_behaviorvlm.napari.project_state import ProjectState
from napari_behaviorvlm.napari.review_tab import ReviewTab
from napari_behaviorvlm.napari.run_tab import RunTab
from napari_behaviorvlm.napari.session_calibration import SessionCalibration
from napari_behaviorvlm.napari.session_tab import SessionTab
from napari_behaviorvlm.napari.skeleton_tab import SkeletonTab

__all__ = ["AUTOSAVE_DELAY_MS", "BehaviorVLMWidget", "SHORTCUTS"]


class BehaviorVLMWidget(SessionTab, SessionCalibration, SkeletonTab, LabelTab, RunTab, ReviewTab,
                        ProjectSaving, QWidget):
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
        self._init_autosave()
        self._init_run()

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
        bind_shortcuts(self.viewer, self)
        self._install_close_guard()
        self.viewer.dims.events.current_step.connect(self._on_frame_changed)
        self.viewer.layers.events.inserted.connect(self._on_layer_inserted)
        self.viewer.layers.selection.events.active.connect(self._on_active_layer)
        self._update_enabled()
        self.adopt_session_layers()

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

