"""The labeling dock's keyboard shortcuts: one table, listed in the Label tab and in
docs/user-guide.md, and bound in the viewer to the dock's methods."""

from __future__ import annotations

from typing import Any

__all__ = ["SHORTCUTS", "bind_shortcuts"]

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


def bind_shortcuts(viewer: Any, dock: Any) -> None:
    """Bind every key of :data:`SHORTCUTS` in ``viewer`` to its method of ``dock`` (replacing
    an earlier binding of the key)."""
    for key, _text, method in SHORTCUTS:
        func = getattr(dock, method)
        viewer.bind_key(key, lambda viewer, func=func: func(), overwrite=True)
