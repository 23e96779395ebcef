"""Keypoint layers: one Points layer per camera, kept in step with the project's pose table.

Thin over :mod:`napari_behaviorvlm.core.labeling`: the layers show what the pose table holds and
turn the user's clicks, drags and deletions into :func:`apply_human_label` /
:func:`clear_label` calls. Per camera, four layers share one grid cell (``viewer.grid.stride``):

``<cam>`` image, ``<cam> skeleton`` (Vectors), ``<cam> hints`` (reprojection hints),
``<cam> keypoints`` (Points: data ``[frame, y, x]``; features keypoint, individual, confidence,
source, reprojection_error, flagged, reasons).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from napari.layers import Points, Vectors
from napari.utils.events import Event

from napari_behaviorvlm.core.labeling import (
    ViewerSettings, apply_human_label, clear_label, confidence_colors, hints_layer_data,
    keypoint_colors, next_keypoint_to_label, points_layer_data, reprojection_hints,
    skeleton_vectors,
)
from napari_behaviorvlm.napari.project_state import ProjectState

__all__ = ["KeypointLayers", "LAYERS_PER_CAMERA", "QT_TASK_MS", "grid_cell", "grid_shape",
           "qt_task"]

#: Longest duration (ms) and count of each BehaviorVLM task run on the Qt thread, by name
#: (filled by :func:`qt_task`; the scrub benchmark reports the worst).
QT_TASK_MS: dict[str, list[float]] = {}


def qt_task(func: Callable) -> Callable:
    """Record how long ``func`` (a Qt-thread handler) takes, in :data:`QT_TASK_MS`."""
    import functools
    import time

    name = func.__qualname__

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            ms = (time.perf_counter() - start) * 1000
            stat = QT_TASK_MS.setdefault(name, [0.0, 0])
            stat[0] = max(stat[0], ms)
            stat[1] += 1

    return wrapper

LAYERS_PER_CAMERA = 4
FLAG_BORDER = np.array([1.0, 0.0, 0.0, 1.0])
PLAIN_BORDER = np.array([0.05, 0.05, 0.05, 1.0])
ROLE_KEY = "behaviorvlm"


def _set_quietly(layer: Any, **values: Any) -> None:
    """Set layer attributes with its events and redraws held back (see :func:`_redraw`)."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(layer._block_refresh())
        stack.enter_context(layer.events.blocker_all())
        for manager in ("_face", "_border"):  # Points color managers redraw on their own
            if hasattr(layer, manager):
                stack.enter_context(getattr(layer, manager).events.blocker_all())
        for name, value in values.items():
            setattr(layer, name, value)


def _redraw(layer: Any) -> None:
    """One redraw (slice and extent; the layer-list thumbnail is left alone, it costs a
    repaint of the whole list) after :func:`_set_quietly`. Listeners learn of pose changes
    from ``ProjectState.poses_changed``, not from these layers' events."""
    layer.refresh(thumbnail=False)


def _action_name(event: Event) -> str:
    action = getattr(event, "action", None)
    return str(getattr(action, "value", action))


def _grid_layers(viewer: Any) -> Any:
    """What the viewer's grid methods take to place the layers: the layer list (newer napari,
    where a hidden layer takes no cell) or their number (napari 0.7 and older; 0.7 is the
    newest napari for Python 3.10)."""
    layers = list(viewer.layers)
    takes_list = "layers" in inspect.signature(viewer.grid.position).parameters
    return layers if takes_list else len(layers)


def grid_cell(viewer: Any, layer: Any) -> tuple[int, int]:
    """``(row, column)`` of the grid cell that shows ``layer`` (a layer of ``viewer``);
    ``(-1, -1)`` for a hidden layer on newer napari, ``(0, 0)`` without a grid."""
    index = list(viewer.layers).index(layer)
    return tuple(int(v) for v in viewer.grid.position(index, _grid_layers(viewer)))


def grid_shape(viewer: Any) -> tuple[int, int]:
    """``(rows, columns)`` of the viewer's grid; ``(1, 1)`` without a grid."""
    return tuple(int(v) for v in viewer.grid.actual_shape(_grid_layers(viewer)))


class KeypointLayers:
    """The keypoint, hint and skeleton layers of every camera of ``state.project``.

    Args:
        viewer: The napari viewer.
        state: The open project.
        settings: What to show (color mode, names, skeleton, hints, current keypoint).
        image_layers: The camera image layers, in the session's camera order (they are placed
            in the grid with their camera's layers); None when there are no images.
        on_edit: Called with the frames a user edit changed (after the pose table is updated).
    """

    def __init__(self, viewer: Any, state: ProjectState, settings: ViewerSettings,
                 image_layers: Sequence[Any] | None = None,
                 on_edit: Callable[[list[int]], None] | None = None) -> None:
        self.viewer = viewer
        self.state = state
        self.settings = settings
        self.on_edit = on_edit
        self.images = list(image_layers or [])
        self.points: dict[str, Points] = {}
        self.hints: dict[str, Points] = {}
        self.skeleton: dict[str, Vectors] = {}
        self._index: dict[str, np.ndarray] = {}
        self._removing: dict[str, list[tuple[int, int, int]]] = {}
        self._updating = False
        self._pending: list[str | None] = []
        self._editable = True
        poses = state.project.poses
        if settings.current_keypoint not in poses.keypoint_names:
            settings.current_keypoint = poses.keypoint_names[0]
        if settings.individual not in poses.individual_names:
            settings.individual = poses.individual_names[0]
        self._build()

    # ----------------------------------------------------------------- building
    @property
    def poses(self):
        return self.state.project.poses

    @property
    def cameras(self) -> list[str]:
        return list(self.poses.camera_names)

    def _point_size(self, camera: str) -> float:
        calib = self.state.project.session.calibration
        if calib is not None and camera in calib.names:
            w, h = calib[camera].size
            if min(w, h) > 0:
                return max(3.0, 0.025 * min(w, h))
        return 5.0

    def _build(self) -> None:
        for cam in self.cameras:
            size = self._point_size(cam)
            meta = {ROLE_KEY: {"camera": cam}}
            self.skeleton[cam] = self.viewer.add_vectors(
                np.zeros((0, 2, 3)), ndim=3, name=f"{cam} skeleton", edge_width=max(1.0, size / 4),
                edge_color="white", opacity=0.7, vector_style="line",
                visible=self.settings.show_skeleton, metadata={**meta, "role": "skeleton"},
            )
            self.hints[cam] = self.viewer.add_points(
                np.zeros((0, 3)), ndim=3, name=f"{cam} hints", symbol="cross", size=size * 1.2,
                face_color="cyan", border_width=0, opacity=0.8, visible=self.settings.show_hints,
                metadata={**meta, "role": "hints"},
            )
            self.hints[cam].editable = False
            table = points_layer_data(self.poses, cam)
            layer = self.viewer.add_points(
                table.data, features=table.features, ndim=3, name=f"{cam} keypoints", size=size,
                border_width=0.12, border_width_is_relative=True,
                metadata={**meta, "role": "keypoints"},
                text={"string": "{keypoint}", "size": 8, "color": "white",
                      "anchor": "upper_left", "visible": self.settings.show_names},
            )
            layer.feature_defaults = self._feature_defaults()
            layer.events.data.connect(lambda event, cam=cam: self._on_data(cam, event))
            self.points[cam] = layer
        self.arrange()
        self.refresh()

    def layers(self) -> list[Any]:
        """Every layer managed here plus the images, in grid order."""
        out = []
        for i, cam in enumerate(self.cameras):
            if i < len(self.images):
                out.append(self.images[i])
            out += [self.skeleton[cam], self.hints[cam], self.points[cam]]
        return out

    def arrange(self) -> None:
        """Order layers camera by camera and put each camera's layers in one grid cell."""
        desired = [layer for layer in self.layers() if layer in self.viewer.layers]
        for target, layer in enumerate(desired):
            current = self.viewer.layers.index(layer)
            if current != target:
                self.viewer.layers.move(current, target)
        self.viewer.grid.stride = LAYERS_PER_CAMERA if self.images else LAYERS_PER_CAMERA - 1
        self.viewer.grid.enabled = len(self.cameras) > 1

    def remove(self) -> None:
        """Take every layer managed here (not the images) out of the viewer."""
        for group in (self.points, self.hints, self.skeleton):
            for layer in group.values():
                if layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
        self.points, self.hints, self.skeleton = {}, {}, {}

    # ----------------------------------------------------------------- refresh
    @property
    def current_frame(self) -> int:
        return int(self.viewer.dims.current_step[0])

    def refresh(self) -> None:
        """Redraw every camera's keypoints, skeleton and hints from the pose table.

        Each layer is rebuilt with its events held back and redrawn once: a refresh of 6
        cameras stays far below the 100 ms a Qt-thread task may take.
        """
        self._updating = True
        try:
            for cam in self.cameras:
                self._refresh_points(cam)
                if self.settings.show_skeleton:
                    vectors = skeleton_vectors(self.poses, self.state.project.skeleton, cam)
                    _set_quietly(self.skeleton[cam], data=vectors)
                    _redraw(self.skeleton[cam])
        finally:
            self._updating = False
        self.refresh_hints()

    def schedule_refresh(self) -> None:
        """Like :meth:`refresh`, but one camera per turn of the Qt event loop, so the interface
        never waits for all cameras at once (used during runs and after edits)."""
        from qtpy.QtCore import QTimer

        already = bool(self._pending)
        self._pending = [*self.cameras, None]  # None: the hints and skeletons, last
        if not already:
            QTimer.singleShot(0, self._refresh_step)

    @qt_task
    def _refresh_step(self) -> None:
        from qtpy.QtCore import QTimer

        if not self._pending or not self.points:
            self._pending = []
            return
        cam = self._pending.pop(0)
        self._updating = True
        try:
            if cam is not None:
                self._refresh_points(cam)
            elif self.settings.show_skeleton:
                for name in self.cameras:
                    vectors = skeleton_vectors(self.poses, self.state.project.skeleton, name)
                    _set_quietly(self.skeleton[name], data=vectors)
                    _redraw(self.skeleton[name])
        finally:
            self._updating = False
        if cam is None:
            self.refresh_hints()
        if self._pending:
            QTimer.singleShot(0, self._refresh_step)

    @property
    def refresh_pending(self) -> bool:
        """True while a :meth:`schedule_refresh` has cameras left to redraw."""
        return bool(self._pending)

    def _colors(self, cam: str) -> np.ndarray:
        if self.settings.color_mode == "keypoint":
            return keypoint_colors(self._index[cam][:, 2])
        return confidence_colors(self.points[cam].features["confidence"].to_numpy())

    def _refresh_points(self, cam: str) -> None:
        layer = self.points[cam]
        table = points_layer_data(self.poses, cam)
        old = self._index.get(cam)
        if (old is not None and np.array_equal(old, table.index)
                and np.array_equal(layer.data, table.data)
                and layer.features.equals(table.features)):
            return  # nothing changed for this camera
        self._index[cam] = table.index
        flagged = table.features["flagged"].to_numpy()
        layer.selected_data = set()
        _set_quietly(layer, data=table.data, features=table.features)
        if len(table.data):
            _set_quietly(layer, face_color=self._colors(cam),
                         border_color=np.where(flagged[:, None], FLAG_BORDER, PLAIN_BORDER),
                         border_width=np.where(flagged, 0.35, 0.12))
        if layer.text.visible:  # names are computed when shown (see set_show_names)
            layer.text.refresh(layer.features)
        _redraw(layer)

    def _feature_defaults(self) -> dict[str, Any]:
        return {"keypoint": self.settings.current_keypoint, "individual": self.settings.individual,
                "confidence": 1.0, "source": "human", "reprojection_error": np.nan,
                "flagged": False, "reasons": ""}

    def refresh_hints(self) -> None:
        """Reprojection hints of every frame (keypoints labeled in >= 2 other views)."""
        if not self.settings.show_hints or not self.hints:
            return
        hints = reprojection_hints(self.state.project)
        for cam in self.cameras:
            data, feats = hints_layer_data(self.poses, hints, cam)
            layer = self.hints[cam]
            if np.array_equal(layer.data, data):
                continue
            _set_quietly(layer, data=data, features=feats)
            if len(data):
                _set_quietly(layer, face_color=keypoint_colors(feats["keypoint"].cat.codes.to_numpy()))
            _redraw(layer)

    # ----------------------------------------------------------------- display settings
    def set_color_mode(self, mode: str) -> None:
        """``"confidence"`` or ``"keypoint"``."""
        if mode not in ("confidence", "keypoint"):
            raise ValueError(f"color mode must be confidence or keypoint, not {mode!r}")
        self.settings.color_mode = mode
        for cam in self.cameras:
            if len(self.points[cam].data):
                self.points[cam].face_color = self._colors(cam)

    def set_show_names(self, show: bool) -> None:
        self.settings.show_names = bool(show)
        for layer in self.points.values():
            if show:
                layer.text.refresh(layer.features)
            layer.text.visible = bool(show)

    def set_show_skeleton(self, show: bool) -> None:
        self.settings.show_skeleton = bool(show)
        for layer in self.skeleton.values():
            layer.visible = bool(show)
        if show:
            self.refresh()

    def set_show_hints(self, show: bool) -> None:
        self.settings.show_hints = bool(show)
        for layer in self.hints.values():
            layer.visible = bool(show)
        self.refresh_hints()

    def set_current_keypoint(self, keypoint: str | int) -> None:
        """The keypoint the next click labels."""
        k = self.poses.keypoint_index(keypoint)
        self.settings.current_keypoint = self.poses.keypoint_names[k]
        for layer in self.points.values():
            layer.feature_defaults = self._feature_defaults()

    def step_keypoint(self, step: int = 1) -> str:
        """Move the labeling cursor ``step`` keypoints on (wrapping); returns its name."""
        names = self.poses.keypoint_names
        k = (names.index(self.settings.current_keypoint) + step) % len(names)
        self.set_current_keypoint(k)
        return names[k]

    def set_editable(self, editable: bool) -> None:
        """Lock (during a run) or unlock the keypoint layers."""
        self._editable = bool(editable)
        for layer in self.points.values():
            if not editable:
                layer.mode = "pan_zoom"
            layer.editable = bool(editable)

    def camera_under_cursor(self, default: str | None = None) -> str | None:
        """The camera whose grid cell the mouse was last in (napari records the cell of every
        mouse event in ``viewer.cursor.viewbox``); ``default`` without grid or mouse."""
        cell = getattr(self.viewer.cursor, "viewbox", None)
        if cell is None or not self.viewer.grid.enabled:
            return default
        for name, layer in self.points.items():
            if layer in self.viewer.layers and grid_cell(self.viewer, layer) == tuple(cell):
                return name
        return default

    def activate(self, camera: str, mode: str = "add") -> Points:
        """Make ``camera``'s keypoint layer the active one, in ``mode``."""
        layer = self.points[camera]
        self.viewer.layers.selection.active = layer
        if self._editable:
            layer.mode = mode
        return layer

    # ----------------------------------------------------------------- user edits
    def _key(self, cam: str, row: int) -> tuple[int, int, int]:
        f, m, k = self._index[cam][row]
        return int(f), int(m), int(k)

    @qt_task
    def _on_data(self, cam: str, event: Event) -> None:
        if self._updating:
            return
        action = _action_name(event)
        layer = self.points[cam]
        indices = [int(i) for i in getattr(event, "data_indices", ())]
        project = self.state.project
        frames: set[int] = set()
        if action == "removing":
            self._removing[cam] = [self._key(cam, i) for i in indices if i < len(self._index[cam])]
            return
        if action == "changed":
            for i in indices:
                f, m, k = self._key(cam, i)
                _, y, x = layer.data[i]
                apply_human_label(project, cam, f, m, k, (float(x), float(y)))
                frames.add(f)
        elif action == "added":
            n = len(layer.data)
            # a click lands in the grid cell under the mouse, whichever layer is active
            target = self.camera_under_cursor(default=cam)
            for i in indices:
                row = i % n
                f = int(round(layer.data[row, 0]))
                if not 0 <= f < self.poses.n_frames:
                    continue
                _, y, x = layer.data[row]
                apply_human_label(project, target, f, self.settings.individual,
                                  self.settings.current_keypoint, (float(x), float(y)))
                frames.add(f)
                nxt = next_keypoint_to_label(self.poses, target, f, self.settings.individual,
                                             self.settings.current_keypoint)
                if nxt is not None:
                    self.settings.current_keypoint = self.poses.keypoint_names[nxt]
            if target != cam:
                from qtpy.QtCore import QTimer

                QTimer.singleShot(0, lambda: self.activate(target))
        elif action == "removed":
            for f, m, k in self._removing.pop(cam, []):
                clear_label(project, cam, f, m, k)
                frames.add(f)
        else:
            return
        # rebuilding a layer from inside its own data event would fight napari's bookkeeping
        # (selection, highlight): do it right after the event on the Qt loop
        self.schedule_refresh()
        if frames and self.on_edit is not None:
            self.on_edit(sorted(frames))
