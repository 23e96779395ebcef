"""Small builders for the docks' buttons and button rows (one place for the Qt boilerplate)."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtWidgets import QHBoxLayout, QPushButton, QWidget

__all__ = ["button", "button_row"]


def button(text: str, on_click: Callable[..., object], tooltip: str = "") -> QPushButton:
    """A push button calling ``on_click`` (with no argument) when clicked."""
    widget = QPushButton(text)
    if tooltip:
        widget.setToolTip(tooltip)
    widget.clicked.connect(lambda *_: on_click())
    return widget


def button_row(*widgets: QWidget) -> QHBoxLayout:
    """The widgets side by side."""
    row = QHBoxLayout()
    for widget in widgets:
        row.addWidget(widget)
    return row
