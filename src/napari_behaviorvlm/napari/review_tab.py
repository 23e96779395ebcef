"""The labeling dock's Review tab: the flagged labels by frame, jumps between flagged frames,
and accepting labels (the N / Shift-N / Enter shortcuts call these methods)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtWidgets import (
    QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget,
)

from napari_behaviorvlm.core.review import (
    accept_labels, next_flagged_frame, review_counts, review_items,
)
from napari_behaviorvlm.napari.buttons import button, button_row
from napari_behaviorvlm.napari.keypoint_layers import qt_task

if TYPE_CHECKING:
    from napari_behaviorvlm.core.review import ReviewItem

__all__ = ["MAX_REVIEW_ROWS", "ReviewTab"]

MAX_REVIEW_ROWS = 500


class ReviewTab:
    """Reviewing flagged labels; a part of
    :class:`~napari_behaviorvlm.napari.widgets.BehaviorVLMWidget`."""

    def _review_tab(self) -> QWidget:
        tab = QWidget()
        lay = QVBoxLayout(tab)
        self.review_counts_label = QLabel("nothing flagged")
        lay.addWidget(self.review_counts_label)
        self.prev_btn = button("◀ previous (Shift-N)", self.previous_flagged)
        self.next_btn = button("next (N) ▶", self.next_flagged)
        lay.addLayout(button_row(self.prev_btn, self.next_btn))
        self.review_list = QListWidget()
        self.review_list.itemActivated.connect(self._review_item_activated)
        self.review_list.itemClicked.connect(self._review_item_activated)
        lay.addWidget(self.review_list)
        self.accept_btn = button("Accept selected", self.accept_selected)
        self.accept_frame_btn = button("Accept frame (Enter)", self.accept_frame)
        lay.addLayout(button_row(self.accept_btn, self.accept_frame_btn))
        hint = QLabel("To correct a label, drag it (select mode, key S) or delete it: the label "
                      "becomes human, its 3D and the other cameras update.")
        hint.setWordWrap(True)
        lay.addWidget(hint)
        return tab

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

    def review_item(self, row: int) -> ReviewItem | None:
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
