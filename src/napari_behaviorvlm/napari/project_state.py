"""The project open in a napari viewer, shared by every BehaviorVLM widget.

Widgets of other areas (exports, timeline) find the current project with
:func:`get_project_state`::

    state = get_project_state(viewer)
    if state is not None:
        project = state.project            # napari_behaviorvlm.core.project.Project
        state.poses_changed.connect(cb)    # cb(frames: list[int] | None)
        state.segments_changed.connect(cb) # cb()
        state.mark_dirty("segments")       # after editing project.segments

This module holds no Qt: a :class:`ProjectState` is plain Python with small callback lists, so a
script (or a test) can drive it without a display. The debounce timer that calls
:meth:`ProjectState.autosave` after edits lives in the widget (Qt side).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from napari_behaviorvlm.core.project import PROJECT_SUFFIX, Project, load_project, save_project
from napari_behaviorvlm.core.segments import SegmentTable

__all__ = ["Callbacks", "ProjectState", "get_project_state", "set_project_state"]

_STATES: weakref.WeakKeyDictionary[Any, ProjectState] = weakref.WeakKeyDictionary()
_LISTENERS: weakref.WeakKeyDictionary[Any, Callbacks] = weakref.WeakKeyDictionary()


class Callbacks:
    """A tiny signal: ``connect(fn)``, ``disconnect(fn)``, ``emit(*args)``.

    Exceptions in one callback propagate (a broken listener must not fail silently).
    """

    def __init__(self) -> None:
        self._callbacks: list[Callable[..., Any]] = []

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[..., Any]) -> None:
        if callback in self._callbacks:
            self._callbacks.remove(callback)

    def emit(self, *args: Any) -> None:
        for callback in list(self._callbacks):
            callback(*args)


@attrs.define(eq=False)
class ProjectState:
    """The project being edited in a viewer, its file and whether it has unsaved changes.

    Attributes:
        project: The project (session, skeleton, poses, segments, settings).
        path: The ``.bvlm`` file it is saved to (None until the first save).
        dirty: True when the project differs from the file.
        poses_changed: Emitted with ``frames`` (list of session frames, or None for all) after
            the pose table changed (an edit, a run's results, an accepted review).
        segments_changed: Emitted with no argument after the segment table changed.
        saved: Emitted with the path after every successful save.
    """

    project: Project
    path: Path | None = attrs.field(default=None,
                                    converter=lambda p: None if p is None else Path(p))
    dirty: bool = False
    edits: int = 0
    poses_changed: Callbacks = attrs.field(factory=Callbacks)
    segments_changed: Callbacks = attrs.field(factory=Callbacks)
    saved: Callbacks = attrs.field(factory=Callbacks)

    @classmethod
    def open(cls, path: str | Path) -> ProjectState:
        """Load a project file (see :func:`~napari_behaviorvlm.core.project.load_project`)."""
        return cls(project=load_project(path), path=path, dirty=False)

    def default_path(self) -> Path:
        """Where the project is saved when no path was chosen: ``<session root>/project.bvlm``
        (or ``./project.bvlm`` when the session has no root)."""
        root = self.project.session.root
        return (Path(root) if root is not None else Path.cwd()) / f"project{PROJECT_SUFFIX}"

    def mark_dirty(self, what: str = "poses", frames: list[int] | None = None) -> None:
        """Record an edit and tell listeners.

        Args:
            what: ``"poses"``, ``"segments"`` or ``"settings"``.
            frames: Session frames whose poses changed (None: possibly all); only for poses.
        """
        if what not in ("poses", "segments", "settings"):
            raise ValueError(f"mark_dirty: what must be poses, segments or settings, not {what!r}")
        self.dirty = True
        self.edits += 1
        if what == "poses":
            self.poses_changed.emit(None if frames is None else sorted({int(f) for f in frames}))
        elif what == "segments":
            self.segments_changed.emit()

    def replace_project(self, project: Project) -> None:
        """Swap in a changed project (e.g. after a skeleton change); marks it dirty and tells
        listeners that poses and segments may have changed."""
        self.project = project
        self.mark_dirty("poses")
        self.segments_changed.emit()

    def save(self, path: str | Path | None = None) -> Path:
        """Save atomically to ``path`` (or the current/default path); clears ``dirty``."""
        target = Path(path) if path is not None else (self.path or self.default_path())
        save_project(self.project, target)
        self.path = target
        self.dirty = False
        self.saved.emit(target)
        return target

    def target_path(self) -> Path:
        """The file a save without a path writes."""
        return self.path or self.default_path()

    def snapshot(self) -> tuple[Project, int]:
        """An independent copy of the project (to save from another thread while the user goes
        on editing) and the edit count it reflects (for :meth:`mark_saved`)."""
        project = self.project
        copy = Project(session=project.session, skeleton=project.skeleton,
                       poses=project.poses.copy(),
                       segments=SegmentTable.from_records(project.segments.to_records()),
                       settings=json.loads(json.dumps(project.settings)))
        return copy, self.edits

    def mark_saved(self, path: str | Path, edits: int) -> None:
        """A snapshot taken at edit count ``edits`` was written to ``path``: the project is clean
        unless it was edited since."""
        self.path = Path(path)
        if self.edits == edits:
            self.dirty = False
        self.saved.emit(self.path)

    def autosave(self) -> Path | None:
        """Save when there are unsaved changes; returns the path written, or None."""
        if not self.dirty:
            return None
        return self.save()


def get_project_state(viewer: Any) -> ProjectState | None:
    """The :class:`ProjectState` attached to ``viewer``, or None when no project is open."""
    return _STATES.get(viewer)


def set_project_state(viewer: Any, state: ProjectState | None) -> None:
    """Attach ``state`` to ``viewer`` (None detaches it) and tell the viewer's listeners."""
    if state is None:
        _STATES.pop(viewer, None)
    else:
        _STATES[viewer] = state
    listeners = _LISTENERS.get(viewer)
    if listeners is not None:
        listeners.emit(state)


def project_state_listeners(viewer: Any) -> Callbacks:
    """Callbacks called with the new state (or None) whenever ``viewer``'s project changes
    (docks opened before a project exists use this to follow it)."""
    if viewer not in _LISTENERS:
        _LISTENERS[viewer] = Callbacks()
    return _LISTENERS[viewer]
