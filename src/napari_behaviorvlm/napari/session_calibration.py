"""The labeling dock's calibration actions (Session tab): attach an anipose calibration,
compute one from board videos in a worker thread, and report its quality."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtWidgets import QFileDialog

if TYPE_CHECKING:
    from napari.qt.threading import FunctionWorker

__all__ = ["SessionCalibration"]


class SessionCalibration:
    """The open session's camera calibration; a part of
    :class:`~napari_behaviorvlm.napari.widgets.BehaviorVLMWidget` (a computation holds the
    dock's ``worker`` like a run does)."""

    def _ask_calibration(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "anipose calibration", "", "TOML (*.toml)")
        if path:
            self.attach_calibration(path)

    def _calibration_quality(self) -> list[str]:
        from napari_behaviorvlm.geometry.validation import calibration_quality

        q = calibration_quality(self.state.project.session.calibration)
        lines = []
        if q.get("baseline_mm"):
            lines.append(f"  camera distances {q['baseline_mm']['min']:.0f}-"
                         f"{q['baseline_mm']['max']:.0f} mm")
        for key, text in (("reprojection_median_px", "median reprojection error"),
                          ("reprojection_error_px", "reprojection error")):
            if key in q:
                lines.append(f"  {text} {q[key]:.2f} px (from the calibration file)")
        lines.append("  calibration checks: " + ("OK" if q["ok"] and not q["warnings"] else
                                                 f"{q['errors']} errors, {q['warnings']} warnings"))
        lines += [f"  {issue}" for issue in q["issues"]]
        return lines

    def _ask_compute_calibration(self) -> None:
        board, _ = QFileDialog.getOpenFileName(self, "Board file (TOML)", "", "TOML (*.toml)")
        if not board:
            return
        folder = QFileDialog.getExistingDirectory(
            self, "Board videos: one per camera, named like the session's cameras")
        if folder:
            self.compute_calibration(board, folder)

    def compute_calibration(self, board_file: str | Path,
                            videos: str | Path) -> FunctionWorker | None:
        """Calibrate from a board filmed by every camera (``geometry.calibrate``, in a worker
        thread), write ``calibration.toml`` beside the session (never over an existing one) and
        attach it. Returns the worker, or None when it could not start."""
        if self.state is None or self.worker is not None:
            return None
        from napari.qt.threading import create_worker

        from napari_behaviorvlm.core.atomic import check_overwrite
        from napari_behaviorvlm.geometry.calibrate import calibrate, load_board
        from napari_behaviorvlm.video.session_io import find_camera_videos

        session = self.state.project.session
        target = (session.root or Path.cwd()) / "calibration.toml"
        try:
            check_overwrite(target, overwrite=False)
            board = load_board(board_file)
            found = find_camera_videos(videos)
            missing = [n for n in session.camera_names if n not in found]
            if missing:
                raise ValueError(f"{videos} has no board video for cameras {missing} "
                                 f"(found {sorted(found)})")
        except (OSError, ValueError) as exc:
            self.say(f"Calibration not computed: {exc}", error=True)
            return None

        def work():
            from napari_behaviorvlm.geometry.camera import save_calibration

            result = calibrate(board, {n: found[n] for n in session.camera_names})
            save_calibration(result.group, target)
            return target

        worker = create_worker(work, _start_thread=False)
        worker.returned.connect(self.attach_calibration)
        worker.errored.connect(lambda exc: self.say(f"Calibration failed: {exc}", error=True))
        worker.finished.connect(self._calibration_finished)
        self.worker = worker
        self._update_enabled()
        self.say(f"Calibrating {len(found)} cameras from {videos}…")
        worker.start()
        return worker

    def _calibration_finished(self) -> None:
        self.worker = None
        self._update_enabled()

    def attach_calibration(self, path: str | Path) -> bool:
        """Load an anipose ``calibration.toml`` into the open session (cameras matched by name)."""
        from napari_behaviorvlm.geometry.camera import load_calibration

        if self.state is None:
            return False
        try:
            group = load_calibration(path)
            names = self.state.project.session.camera_names
            missing = [n for n in names if n not in group.names]
            if missing:
                raise ValueError(f"it has no camera named {missing} (it has {group.names}); "
                                 "rename the [cam_N] name entries to the session's cameras")
            self.state.project.session.calibration = group.subset(names)
        except (OSError, ValueError) as exc:
            self.say(f"Calibration {path} not attached: {exc}", error=True)
            return False
        self.state.mark_dirty("settings")
        self._schedule_autosave()
        self.session_info.setPlainText(self.session_report())
        self.layers.refresh_hints()
        self.say(f"Calibration attached from {path}.")
        return True
