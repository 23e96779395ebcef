"""Saving the labeling dock's project: Save / Save as, the debounced autosave in a worker
thread, and the guard that asks before unsaved work is dropped."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtCore import QEvent, QObject, QTimer
from qtpy.QtWidgets import QFileDialog, QMessageBox

from napari_behaviorvlm.core.project import PROJECT_SUFFIX
from napari_behaviorvlm.napari.keypoint_layers import qt_task

if TYPE_CHECKING:
    from napari.qt.threading import FunctionWorker

__all__ = ["AUTOSAVE_DELAY_MS", "ProjectSaving"]

AUTOSAVE_DELAY_MS = 1500


class ProjectSaving:
    """Saving the project; a part of :class:`~napari_behaviorvlm.napari.widgets.BehaviorVLMWidget`
    (its close guard filters the viewer window's events)."""

    def _init_autosave(self) -> None:
        self._save_worker = None
        self._autosave_timer = QTimer(self)
        self._autosave_timer.setSingleShot(True)
        self._autosave_timer.setInterval(AUTOSAVE_DELAY_MS)
        self._autosave_timer.timeout.connect(self.autosave)

    def _ask_save_as(self) -> None:
        if self.state is None:
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save project", str(self.state.default_path()),
                                              f"Project (*{PROJECT_SUFFIX})")
        if path:
            self.save(path)

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
    def autosave(self) -> FunctionWorker | None:
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
