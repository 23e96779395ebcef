"""The behavior timeline: a dock with its own small napari canvas showing the segment table.

One rectangle per segment in a Shapes layer (x = frames, one row per label, or per animal),
colored by label with a legend; a playhead line follows ``viewer.dims.current_step[0]``; a
click jumps the viewer to the clicked frame and selects the segment under it; the canvas zooms
and pans like any napari canvas. The buttons edit the table in place through
:mod:`napari_behaviorvlm.behavior.editing` (rename, move a boundary to the playhead, split at
the playhead, merge with next, delete, add) and every edit calls the save callback.
``.`` / ``,`` (and the ◀ ▶ buttons) go to the next / previous segment.

Thin: the segment table (:class:`~napari_behaviorvlm.core.segments.SegmentTable`) is the source
of truth and every edit is a core function a script could call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import napari
import numpy as np
from napari.components import ViewerModel
from napari.qt import QtViewer
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QShortcut,
    QVBoxLayout,
    QWidget,
)
from qtpy.QtGui import QKeySequence

from napari_behaviorvlm.behavior import editing
from napari_behaviorvlm.behavior.captions import DEFAULT_LABELS
from napari_behaviorvlm.behavior.pipeline import (
    SegmentationCancelled,
    SegmentationConfig,
    apply_to_project,
    inputs_from_project,
    segment_inputs,
)
from napari_behaviorvlm.core.segments import Segment, SegmentTable
from napari_behaviorvlm.napari.project_state import (
    get_project_state, project_state_listeners,
)

__all__ = ["PALETTE", "TimelineWidget", "add_timeline_dock", "label_colors", "make_timeline_widget"]

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
           "#ff9da7", "#9c755f", "#bab0ac", "#86bcb6", "#d37295"]
ROW_HEIGHT_FRACTION = 0.8
NEXT_KEY, PREVIOUS_KEY = ".", ","


def label_colors(labels: list[str]) -> dict[str, str]:
    """A stable color per label: the default vocabulary first, then others in order."""
    order = [lab for lab in DEFAULT_LABELS] + sorted(set(labels) - set(DEFAULT_LABELS))
    return {lab: PALETTE[i % len(PALETTE)] for i, lab in enumerate(order) if lab in labels}


class TimelineWidget(QWidget):
    """The timeline dock (see the module docstring).

    The "segment behavior" button runs the local pipeline on the open project in a worker
    thread with a progress bar and a cancel button; the result replaces the project's model
    segments (human segments stay) and is saved like an edit.

    Args:
        viewer: the main napari viewer (its dims drive the playhead; clicks move them).
        table: the segment table to show and edit; default: the open project's
            (``get_project_state(viewer).project.segments``), else an empty table.
        n_frames: length of the time axis; default: the project's session, else the viewer's
            first dims range, else the last segment end.
        on_save: called after every edit; default: mark the project state dirty and save it
            when it has a file.
        rows: ``"label"`` (one row per label) or ``"animal"`` (one row per subject).
    """

    progress_changed = Signal(float, str)

    def __init__(self, viewer: Any, table: SegmentTable | None = None, n_frames: int | None = None,
                 on_save: Callable[[], None] | None = None, rows: str = "label") -> None:
        super().__init__()
        if rows not in ("label", "animal"):
            raise ValueError(f"rows must be 'label' or 'animal', not {rows!r}")
        self.viewer = viewer
        self._table = table
        self._scratch: SegmentTable | None = None
        self._n_frames = n_frames
        self._on_save = on_save
        self.rows = rows
        self.selected: Segment | None = None
        self._shown: list[Segment] = []
        self._row_keys: list[str] = []

        self.model = ViewerModel(title="behavior timeline")
        self.canvas = QtViewer(self.model, show_welcome_screen=False)
        self.canvas.setMinimumHeight(140)
        self.shapes = self.model.add_shapes(name="segments", edge_width=0, opacity=0.85)
        self.shapes.editable = False
        self.playhead = self.model.add_shapes(name="playhead", edge_color="white", edge_width=2)
        self.model.mouse_drag_callbacks.append(self._mouse_press)

        self.legend = QLabel()
        self.legend.setTextFormat(Qt.RichText)
        self.legend.setWordWrap(True)
        self.info = QLabel("no segment selected")
        self.info.setWordWrap(True)
        self.label_box = QComboBox()
        self.label_box.setEditable(True)
        self.label_box.addItems(list(DEFAULT_LABELS))

        buttons = QGridLayout()
        self.buttons: dict[str, QPushButton] = {}
        specs = [
            ("◀ previous", self.previous_segment), ("next ▶", self.next_segment),
            ("rename", self.rename_selected),
            ("start ← playhead", lambda: self.move_selected("start")),
            ("end ← playhead", lambda: self.move_selected("end")),
            ("split at playhead", self.split_selected),
            ("merge with next", self.merge_selected), ("delete", self.delete_selected),
            ("add at playhead", self.add_at_playhead), ("fit", self.fit),
        ]
        for i, (text, slot) in enumerate(specs):
            button = QPushButton(text)
            button.clicked.connect(lambda _=False, s=slot: self._guarded(s))
            buttons.addWidget(button, i // 5, i % 5)
            self.buttons[text] = button

        self.segment_button = QPushButton("segment behavior (local)")
        self.segment_button.setToolTip("over-segment, caption and merge the open project's poses "
                                       "(or video); human segments are kept")
        self.segment_button.clicked.connect(lambda: self._guarded(self.run_segmentation))
        self.cancel_button = QPushButton("cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.worker: Any = None
        self._stop_requested = False
        self.progress_changed.connect(self._show_progress)

        layout = QVBoxLayout(self)
        run_row = QHBoxLayout()
        run_row.addWidget(self.segment_button)
        run_row.addWidget(self.progress, stretch=1)
        run_row.addWidget(self.cancel_button)
        layout.addLayout(run_row)
        layout.addWidget(self.canvas, stretch=1)
        layout.addWidget(self.legend)
        row = QHBoxLayout()
        row.addWidget(QLabel("label"))
        row.addWidget(self.label_box, stretch=1)
        layout.addLayout(row)
        layout.addLayout(buttons)
        layout.addWidget(self.info)
        for key, slot in ((NEXT_KEY, self.next_segment), (PREVIOUS_KEY, self.previous_segment)):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)

        viewer.dims.events.current_step.connect(self._update_playhead)
        self._state = get_project_state(viewer)
        if self._state is not None:
            self._state.segments_changed.connect(self.refresh)
        project_state_listeners(viewer).connect(self._follow_project)
        self.refresh()
        self.fit()

    def teardown(self) -> None:
        """Disconnect from the viewer and project state and close the timeline canvas."""
        self._stop_requested = True
        try:
            self.viewer.dims.events.current_step.disconnect(self._update_playhead)
        except (TypeError, ValueError, RuntimeError):
            pass
        project_state_listeners(self.viewer).disconnect(self._follow_project)
        if self._state is not None:
            self._state.segments_changed.disconnect(self.refresh)
        if self.canvas is not None:
            self.canvas.close()
            self.canvas.deleteLater()
            self.canvas = None

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        self.teardown()
        super().closeEvent(event)

    # ------------------------------------------------------------------ data
    def _follow_project(self, state: Any) -> None:
        """The viewer's project changed (e.g. the labeling dock opened one): show its table."""
        if self._state is not None:
            self._state.segments_changed.disconnect(self.refresh)
        self._state = state
        if state is not None:
            state.segments_changed.connect(self.refresh)
        self.selected = None
        self.refresh()
        self.fit()

    @property
    def table(self) -> SegmentTable:
        """The table shown: the one given, else the open project's, else a scratch table."""
        if self._table is not None:
            return self._table
        state = get_project_state(self.viewer)
        if state is not None:
            return state.project.segments
        if self._scratch is None:
            self._scratch = SegmentTable()
        return self._scratch

    @property
    def n_frames(self) -> int:
        if self._n_frames is not None:
            return int(self._n_frames)
        state = get_project_state(self.viewer)
        if state is not None:
            return int(state.project.session.n_frames)
        nsteps = self.viewer.dims.nsteps
        if nsteps and self.viewer.layers:
            return int(nsteps[0])
        return max([s.end + 1 for s in self.table] + [1])

    @property
    def current_frame(self) -> int:
        return int(self.viewer.dims.current_step[0])

    def _row_key(self, seg: Segment) -> str:
        if self.rows == "animal":
            return seg.subject
        subjects = self.table.subjects()
        return seg.label if len(subjects) <= 1 else f"{seg.subject}: {seg.label}"

    @property
    def row_height(self) -> float:
        """Height of one row in canvas units (frames), so rows stay readable when zoomed out."""
        return max(self.n_frames / 40.0, 2.0)

    def rectangles(self) -> list[np.ndarray]:
        """Canvas rectangles ``(4, 2)`` as (y, x) corners, x in frames (a segment covers
        ``start - 0.5 .. end + 0.5``), one per shown segment."""
        h = self.row_height
        out = []
        for seg in self._shown:
            r = self._row_keys.index(self._row_key(seg))
            y0, y1 = r * h, r * h + ROW_HEIGHT_FRACTION * h
            x0, x1 = seg.start - 0.5, seg.end + 0.5
            out.append(np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float))
        return out

    # ------------------------------------------------------------------ drawing
    def refresh(self) -> None:
        """Redraw every rectangle, the legend and the playhead from the table."""
        table = self.table
        self._shown = list(table)
        if self.selected is not None and not any(s is self.selected for s in self._shown):
            self.selected = None
        self._row_keys = sorted({self._row_key(s) for s in self._shown},
                                key=lambda k: (k.split(": ")[0], k))
        colors = label_colors(table.labels())
        self.shapes.data = []
        if self._shown:
            faces = [colors[s.label] for s in self._shown]
            edges = ["white" if s is self.selected else "black" for s in self._shown]
            widths = [max(self.row_height * 0.08, 0.5) if s is self.selected else 0
                      for s in self._shown]
            self.shapes.add_rectangles(self.rectangles(), face_color=faces, edge_color=edges,
                                       edge_width=widths)
        self.legend.setText("  ".join(
            f'<span style="color:{c}">&#9632;</span> {lab}' for lab, c in colors.items())
            + ("" if self.rows == "animal" else "<br>rows (top to bottom): " + ", ".join(self._row_keys)))
        known = {self.label_box.itemText(i) for i in range(self.label_box.count())}
        for lab in table.labels():
            if lab not in known:
                self.label_box.addItem(lab)
        self._update_playhead()

    def _update_playhead(self, event: Any = None) -> None:
        f = float(self.current_frame)
        top = -0.2 * self.row_height
        bottom = max(len(self._row_keys), 1) * self.row_height
        self.playhead.data = []
        self.playhead.add_lines([np.array([[top, f], [bottom, f]])], edge_color="white",
                                edge_width=max(self.n_frames / 250.0, 1.0))

    def fit(self) -> None:
        """Show the whole time axis."""
        self.model.reset_view()

    def showEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        super().showEvent(event)
        self.fit()  # the canvas has its real size only now

    # ------------------------------------------------------------------ navigation
    def segment_at(self, y: float, x: float) -> Segment | None:
        """The segment drawn at canvas position (y, x), if any."""
        row = int(np.floor(y / self.row_height))
        frame = int(round(x))
        for seg in self._shown:
            if 0 <= row < len(self._row_keys) and self._row_keys[row] == self._row_key(seg) \
                    and seg.start <= frame <= seg.end:
                return seg
        return None

    def click(self, y: float, x: float) -> None:
        """What a click at canvas position (y, x) does: jump the viewer to frame ``x`` and
        select the segment under the cursor."""
        frame = int(np.clip(round(x), 0, max(self.n_frames - 1, 0)))
        self.select(self.segment_at(y, x))
        self.viewer.dims.set_current_step(0, frame)

    def _mouse_press(self, model: Any, event: Any) -> None:
        if event.type == "mouse_press" and event.button == 1:
            y, x = event.position[-2], event.position[-1]
            self.click(float(y), float(x))

    def select(self, seg: Segment | None) -> None:
        self.selected = seg
        if seg is None:
            self.info.setText("no segment selected")
        else:
            self.info.setText(
                f"{seg.subject} <b>{seg.label}</b> frames {seg.start}-{seg.end} ({seg.source}"
                + (f", score {seg.score:.2f}" if np.isfinite(seg.score) else "") + ")"
                + (f"<br>{seg.caption}" if seg.caption else ""))
            self.label_box.setCurrentText(seg.label)
        self.refresh()

    def _step(self, step: int) -> None:
        ordered = sorted(self.table, key=lambda s: (s.start, s.subject))
        if not ordered:
            return
        if self.selected is not None:
            ordered = [s for s in ordered if s.subject == self.selected.subject]
            i = next(k for k, s in enumerate(ordered) if s is self.selected)
            j = min(max(i + step, 0), len(ordered) - 1)
        else:
            f = self.current_frame
            later = [k for k, s in enumerate(ordered) if s.start > f]
            earlier = [k for k, s in enumerate(ordered) if s.start < f]
            if step > 0 and later:
                j = later[0]
            elif step < 0 and earlier:
                j = earlier[-1]
            else:
                return
        self.select(ordered[j])
        self.viewer.dims.set_current_step(0, ordered[j].start)

    def next_segment(self) -> None:
        """Select the next segment (of the selected animal) and jump to its start."""
        self._step(1)

    def previous_segment(self) -> None:
        """Select the previous segment and jump to its start."""
        self._step(-1)

    # ------------------------------------------------------------------ segmentation run
    def run_segmentation(self, config: SegmentationConfig | None = None) -> Any:
        """Segment the open project in a worker thread (progress bar, cancel); the result is
        applied to the project and saved on the main thread. Returns the worker."""
        state = get_project_state(self.viewer)
        if state is None:
            raise ValueError("open or create a project first (BehaviorVLM labeling dock)")
        if self.worker is not None:
            raise ValueError("a segmentation run is already going")
        from napari.qt.threading import thread_worker

        config = config or SegmentationConfig()
        project = state.project
        inputs = inputs_from_project(project)  # read on the main thread
        self._stop_requested = False

        @thread_worker
        def work():
            # the signal crosses threads: the progress bar is updated on the main thread
            try:
                return segment_inputs(inputs, config, on_progress=self.progress_changed.emit,
                                      should_stop=lambda: self._stop_requested)
            except SegmentationCancelled:
                return None
            except (ValueError, OSError) as exc:  # a user-fixable problem: shown in the dock
                return ("error", str(exc))  # (superqt re-raises a returned exception)

        worker = work()
        worker.returned.connect(lambda result: self._finish(project, result, config))
        worker.errored.connect(self._failed)
        worker.finished.connect(self._worker_done)
        self.worker = worker
        self.segment_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        worker.start()
        return worker

    def _show_progress(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(round(100 * fraction)))
        self.progress.setFormat(f"%p% {message}")

    def _finish(self, project: Any, result: Any, config: SegmentationConfig) -> None:
        if result is None:
            self.info.setText("segmentation cancelled; nothing changed")
            return
        if isinstance(result, tuple):
            self._failed(result[1])
            return
        apply_to_project(project, result, config)
        self.progress.setValue(100)
        self.info.setText(f"{result.stats['n_clips']} clips -> {result.stats['n_segments']} segments")
        self._edited(None)

    def _failed(self, exc: BaseException | str) -> None:
        self.info.setText(f"<span style='color:#e15759'>segmentation failed: {exc}</span>")

    def _worker_done(self) -> None:
        self.worker = None
        self.segment_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def cancel(self) -> None:
        """Ask the running segmentation to stop (it stops between steps; nothing is written)."""
        self._stop_requested = True

    # ------------------------------------------------------------------ edits
    def _guarded(self, action: Callable[[], None]) -> None:
        try:
            action()
        except ValueError as exc:
            self.info.setText(f"<span style='color:#e15759'>{exc}</span>")

    def _need_selection(self) -> Segment:
        if self.selected is None:
            raise ValueError("select a segment first (click it)")
        return self.selected

    def _edited(self, selected: Segment | None) -> None:
        self.selected = selected
        if self._on_save is not None:
            self._on_save()
        else:
            state = get_project_state(self.viewer)
            if state is not None:
                state.mark_dirty("segments")  # listeners (this widget too) redraw
                if state.path is not None:
                    state.save()
        self.select(selected)

    def rename_selected(self, label: str | None = None) -> None:
        label = self.label_box.currentText() if label is None else label
        self._edited(editing.rename_segment(self.table, self._need_selection(), label))

    def move_selected(self, side: str, frame: int | None = None) -> None:
        frame = self.current_frame if frame is None else frame
        self._edited(editing.move_boundary(self.table, self._need_selection(), side, frame))

    def split_selected(self, frame: int | None = None) -> None:
        frame = self.current_frame if frame is None else frame
        _left, right = editing.split_segment(self.table, self._need_selection(), frame)
        self._edited(right)

    def merge_selected(self) -> None:
        self._edited(editing.merge_with_next(self.table, self._need_selection()))

    def delete_selected(self) -> None:
        editing.delete_segment(self.table, self._need_selection())
        self._edited(None)

    def add_at_playhead(self, label: str | None = None, n_frames: int | None = None) -> None:
        """Add a human segment from the playhead, one second long by default (the session's
        fps when a project is open, else 25 frames), for the selected animal (or the first)."""
        label = self.label_box.currentText() if label is None else label
        if n_frames is None:
            state = get_project_state(self.viewer)
            n_frames = int(round(state.project.session.fps)) if state is not None else 25
        start = self.current_frame
        end = min(start + n_frames - 1, max(self.n_frames - 1, start))
        subject = (self.selected.subject if self.selected is not None
                   else (self.table.subjects() or ["mouse0"])[0])
        self._edited(editing.add_segment(self.table, start, end, label, subject=subject))


def make_timeline_widget(napari_viewer: napari.viewer.Viewer) -> TimelineWidget:
    """npe2 widget factory: the timeline of the viewer's open project."""
    return TimelineWidget(napari_viewer)


def add_timeline_dock(viewer: napari.viewer.Viewer, table: SegmentTable | None = None,
                      **kwargs: Any) -> TimelineWidget:
    """Dock a :class:`TimelineWidget` at the bottom of ``viewer`` and return it (for the demo
    and the sample data; ``kwargs`` go to the widget)."""
    widget = TimelineWidget(viewer, table=table, **kwargs)
    viewer.window.add_dock_widget(widget, area="bottom", name="Behavior timeline")
    return widget
