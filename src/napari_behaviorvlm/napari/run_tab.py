"""The labeling dock's Run tab: the reasoner's settings, and a labeling run in a worker thread
whose labeled frames show up as they finish, with a summary at the end."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox, QComboBox, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
    QSpinBox, QWidget,
)

from napari_behaviorvlm.core.labeling import seed_frames
from napari_behaviorvlm.napari.buttons import button, button_row
from napari_behaviorvlm.napari.keypoint_layers import qt_task

if TYPE_CHECKING:
    from napari.qt.threading import FunctionWorker

    from napari_behaviorvlm.pose.pipeline import LabelingConfig

__all__ = ["REFRESH_DURING_RUN_MS", "RunTab"]

REFRESH_DURING_RUN_MS = 1000


class _RunBridge(QObject):
    """Carries a run's callbacks from the worker thread to the Qt main thread (queued)."""

    progress = Signal(int, int)
    frame_done = Signal(int)


class RunTab:
    """A labeling run; a part of :class:`~napari_behaviorvlm.napari.widgets.BehaviorVLMWidget`
    (the run holds the dock's ``worker``; the layers are locked while it runs)."""

    def _init_run(self) -> None:
        self._cancel = threading.Event()
        self._pending_frames: set[int] = set()
        self._last_report = None
        self._bridge = _RunBridge()
        self._bridge.progress.connect(self._on_run_progress)
        self._bridge.frame_done.connect(self._on_frame_done)
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(REFRESH_DURING_RUN_MS)
        self._refresh_timer.timeout.connect(self._flush_run_frames)

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
        self.both_check = QCheckBox("label every frame in both directions (slower)")
        self.both_check.setToolTip("Local backend: label each stretch between seeds, and before "
                                   "the first and after the last, forward and backward; where "
                                   "the two disagree on a keypoint, keep the track that fits "
                                   "better (fewer swaps with two mice, about 2.2x the time)")
        form.addRow(self.both_check)
        self.run_btn = button("Run", self.start_run)
        self.cancel_btn = button("Cancel", self.cancel_run)
        form.addRow(button_row(self.run_btn, self.cancel_btn))
        self.progress = QProgressBar()
        self.progress.setFormat("%v / %m frames")
        form.addRow(self.progress)
        self.run_status = QLabel("")
        self.run_status.setWordWrap(True)
        form.addRow(self.run_status)
        self._backend_changed("local")
        return tab

    def _backend_changed(self, backend: str) -> None:
        for w in (self.base_url_edit, self.model_edit, self.key_env_edit):
            w.setEnabled(backend != "local")
        self.both_check.setEnabled(backend == "local")

    def _run_settings(self) -> dict[str, Any]:
        return {
            "backend": self.backend_combo.currentText(),
            "base_url": self.base_url_edit.text().strip(),
            "model": self.model_edit.text().strip(),
            "api_key_env": self.key_env_edit.text().strip(),
            "start": int(self.start_spin.value()),
            "stop": int(self.stop_spin.value()),
        }

    def labeling_config(self) -> LabelingConfig:
        """The pipeline configuration from the Run tab (the key stays in the environment)."""
        from napari_behaviorvlm.pose.pipeline import LabelingConfig

        run = self._run_settings()
        if run["backend"] == "local":
            return LabelingConfig(backend="local", both_directions=self.both_check.isChecked())
        from napari_behaviorvlm.vlm.config import VLMConfig

        vlm = VLMConfig(base_url=run["base_url"], model=run["model"],
                        api_key_env=run["api_key_env"])
        return LabelingConfig(backend=run["backend"], vlm=vlm)

    def start_run(self, frames: list[int] | None = None) -> FunctionWorker | None:
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
            f"doubtful frames labeled again from both sides and {report.n_final_pass} a last "
            f"time, "
            + (f"{report.n_other_direction} keypoints taken from the labeling in the other "
               "direction, " if report.n_other_direction else "")
            + f"{report.n_flagged} labels "
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
