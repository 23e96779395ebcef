"""The Export dock: hand the open project to SLEAP, DeepLabCut, anipose or behavior tables.

Thin over :func:`napari_behaviorvlm.io.registry.export_project`: choose a format and an output
folder, tick "overwrite" to replace existing files, press Export. The export runs in a worker
thread; the message says which files were written and how many labels are still flagged for
review (they are exported as they are). The project comes from
:func:`~napari_behaviorvlm.napari.project_state.get_project_state` or is passed in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton,
    QVBoxLayout, QWidget,
)

from napari_behaviorvlm.core.project import Project
from napari_behaviorvlm.io.registry import FORMATS, ExportReport, export_project
from napari_behaviorvlm.napari.project_state import get_project_state

__all__ = ["ExportWidget"]


class ExportWidget(QWidget):
    """Format choice, output folder, overwrite check and a result message.

    Args:
        viewer: The napari viewer (its open project is exported).
        project: A project to export instead of the viewer's (scripts, tests).
    """

    def __init__(self, viewer: Any = None, project: Project | None = None) -> None:
        super().__init__()
        self.viewer = viewer
        self._project = project
        self.last_report: ExportReport | None = None
        self._worker = None

        self.format_box = QComboBox()
        for fmt in FORMATS.values():
            self.format_box.addItem(f"{fmt.name}: {fmt.description}", fmt.name)
        self.format_box.addItem("all: every format, each in its own folder", "all")
        self.out_edit = QLineEdit()
        self.out_edit.setPlaceholderText("output folder")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        self.overwrite_box = QCheckBox("overwrite existing files")
        self.embed_box = QCheckBox("SLEAP: embed labeled frames")
        self.images_box = QCheckBox("DeepLabCut: write labeled-data images")
        self.images_box.setChecked(True)
        self.export_button = QPushButton("Export")
        self.export_button.clicked.connect(self._start)
        self.message = QLabel("")
        self.message.setWordWrap(True)

        row = QHBoxLayout()
        row.addWidget(self.out_edit)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Format", self.format_box)
        form.addRow("Folder", row)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        for widget in (self.overwrite_box, self.embed_box, self.images_box, self.export_button,
                       self.message):
            layout.addWidget(widget)
        layout.addStretch(1)

    # ----------------------------------------------------------------- state
    @property
    def project(self) -> Project | None:
        if self._project is not None:
            return self._project
        state = get_project_state(self.viewer) if self.viewer is not None else None
        return None if state is None else state.project

    def set_format(self, name: str) -> None:
        self.format_box.setCurrentIndex(self.format_box.findData(name))

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export folder", self.out_edit.text())
        if folder:
            self.out_edit.setText(folder)

    # ----------------------------------------------------------------- export
    def run_export(self) -> ExportReport:
        """Export now (in the calling thread) with the widget's choices; returns the report.

        Raises:
            ValueError: no project open or no folder chosen; any error of the export itself.
        """
        project = self.project
        if project is None:
            raise ValueError("no project is open: open a session or a .bvlm project first")
        out = self.out_edit.text().strip()
        if not out:
            raise ValueError("choose an output folder")
        return export_project(project, self.format_box.currentData(), Path(out),
                              overwrite=self.overwrite_box.isChecked(),
                              embed_frames=self.embed_box.isChecked(),
                              images=self.images_box.isChecked())

    def show_report(self, report: ExportReport) -> None:
        self.last_report = report
        text = f"Wrote {len(report.files)} files to {report.out}."
        if report.warnings:
            text += "\n" + "\n".join(f"Warning: {w}" for w in report.warnings)
        self.message.setText(text)

    def show_error(self, exc: BaseException) -> None:
        self.last_report = None
        self.message.setText(f"Export failed: {exc}")

    def _start(self) -> None:
        from napari.qt.threading import thread_worker

        if self.project is None or not self.out_edit.text().strip():
            self.show_error(ValueError("open a project and choose an output folder first"))
            return
        self.export_button.setEnabled(False)
        self.message.setText("Exporting…")
        # errors go to the message (connected at creation, so they are not re-raised)
        self._worker = thread_worker(self.run_export, connect={
            "returned": self.show_report,
            "errored": self.show_error,
            "finished": lambda: self.export_button.setEnabled(True),
        })()
