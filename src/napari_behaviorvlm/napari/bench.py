"""Viewer benchmarks: scrubbing fluidity and how long the Qt thread blocks during a run.

Run under a display (``xvfb-run -a behaviorvlm bench scrub``). Every figure is measured against
a baseline in the same process, so the ratio is robust to machine load:

- **scrub**: frames per second of time-slider movement with all cameras in grid mode (every
  step moves ``viewer.dims`` and waits until the canvas has repainted), video-backed layers
  (lazy, decoded on demand) against the same layers holding in-memory numpy arrays.
- **run block**: while the local reasoner labels the session in its worker thread, a 10 ms
  Qt timer records the gaps between its ticks; the longest gap is the longest time the
  interface was frozen.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np

__all__ = ["ScrubResult", "run_scrub_bench"]


@attrs.define
class ScrubResult:
    """Figures of one scrub benchmark (frames per second, milliseconds)."""

    n_cameras: int
    n_frames: int
    width: int
    height: int
    steps: int
    video_fps_sequential: float
    video_fps_random: float
    memory_fps_sequential: float
    memory_fps_random: float
    rounds: int = 1
    run_frames: int = 0
    run_seconds: float = float("nan")
    run_max_block_ms: float = float("nan")
    run_p99_block_ms: float = float("nan")
    idle_max_block_ms: float = float("nan")
    run_max_task_ms: float = float("nan")
    run_slowest_task: str = ""

    def table(self) -> str:
        seq_ratio = self.video_fps_sequential / self.memory_fps_sequential
        rnd_ratio = self.video_fps_random / self.memory_fps_random
        lines = [
            f"scrub: {self.n_cameras} cameras {self.width}x{self.height} in grid mode, "
            f"{self.n_frames} frames, {self.steps} slider steps per measure (median of "
            f"{self.rounds} interleaved rounds)",
            f"{'':24}{'video (lazy)':>14}{'in memory':>12}{'ratio':>8}",
            f"{'sequential (fps)':24}{self.video_fps_sequential:14.1f}"
            f"{self.memory_fps_sequential:12.1f}{seq_ratio:8.2f}",
            f"{'random jumps (fps)':24}{self.video_fps_random:14.1f}"
            f"{self.memory_fps_random:12.1f}{rnd_ratio:8.2f}",
        ]
        if self.run_frames:
            lines.append(
                f"run: local reasoner on {self.run_frames} frames in {self.run_seconds:.1f} s; "
                f"Qt event loop stalled at most {self.run_max_block_ms:.0f} ms "
                f"(p99 {self.run_p99_block_ms:.0f} ms; idle viewer max "
                f"{self.idle_max_block_ms:.0f} ms, rendering included); longest BehaviorVLM "
                f"task on the Qt thread {self.run_max_task_ms:.0f} ms ({self.run_slowest_task})")
        return "\n".join(lines)


def _process(app, until: float | None = None) -> None:
    app.processEvents()
    if until is not None:
        while time.perf_counter() < until:
            app.processEvents()


def _scrub(viewer: Any, app: Any, frames: list[int]) -> float:
    """Frames per second of moving the slider through ``frames`` (each step fully repainted)."""
    canvas = viewer.window._qt_viewer.canvas
    start = time.perf_counter()
    for f in frames:
        viewer.dims.set_current_step(0, int(f))
        app.processEvents()
        canvas._scene_canvas.native.repaint()  # paint now, as the screen would
    return len(frames) / (time.perf_counter() - start)


def _block_gaps(app: Any, seconds: float | None, done=None, interval_ms: int = 10) -> np.ndarray:
    """Gaps (s) between the ticks of a ``interval_ms`` Qt timer, for ``seconds`` or until
    ``done()`` is true."""
    from qtpy.QtCore import QTimer

    stamps: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: stamps.append(time.perf_counter()))
    timer.start(interval_ms)
    end = None if seconds is None else time.perf_counter() + seconds
    while (end is None or time.perf_counter() < end) and (done is None or not done()):
        app.processEvents()
        time.sleep(0.001)
    timer.stop()
    return np.diff(np.asarray(stamps)) if len(stamps) > 1 else np.zeros(1)


def run_scrub_bench(n_cameras: int = 6, n_frames: int = 200, width: int = 320,
                    height: int = 240, steps: int = 150, seed: int = 0,
                    session: str | Path | None = None, run_check: bool = True,
                    workdir: str | Path | None = None, rounds: int = 3) -> ScrubResult:
    """Measure scrubbing (video vs in-memory) and the Qt-thread blocking during a run.

    Args:
        session: An existing session folder to scrub; None writes a synthetic one
            (``n_cameras`` x ``n_frames`` at ``width`` x ``height``) into ``workdir`` or a
            temporary folder.
        steps: Slider steps per measure (sequential: one frame at a time; random: jumps).
        rounds: Interleaved video / in-memory rounds; the medians are reported.
        run_check: Also run the local reasoner on the whole session and time the Qt loop.
    """
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_behaviorvlm.napari.widgets import BehaviorVLMWidget

    tmp = None
    if session is None:
        from napari_behaviorvlm.synth.simulate import SynthConfig, simulate
        from napari_behaviorvlm.synth.writer import write_synthetic_session

        if workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix="bvlm-scrub-")
            workdir = tmp.name
        session = Path(workdir) / "session"
        if not (session / "calibration.toml").exists():
            config = SynthConfig.preset("default", n_cameras=n_cameras, n_frames=n_frames,
                                        seed=seed, width=width, height=height)
            write_synthetic_session(simulate(config), session, overwrite=True)
    session = Path(session)
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    try:
        widget = BehaviorVLMWidget(viewer)
        viewer.window.add_dock_widget(widget)
        # a fresh project saved beside nothing of the user's: never reuse or touch project.bvlm
        from napari_behaviorvlm.core.project import Project
        from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton
        from napari_behaviorvlm.napari.project_state import ProjectState
        from napari_behaviorvlm.video.session_io import load_session

        if tmp is None:
            tmp = tempfile.TemporaryDirectory(prefix="bvlm-scrub-")
        state = ProjectState(Project.new(load_session(session), default_qd_mouse_skeleton()),
                             path=Path(tmp.name) / "bench.bvlm")
        widget.set_project(state)
        _seed_from_truth(widget, session)
        images = widget.layers.images
        n_f = state.project.poses.n_frames
        rng = np.random.default_rng(seed)
        steps = min(steps, n_f)
        seq = list(range(steps))
        rnd = [int(f) for f in rng.integers(0, n_f, steps)]
        _process(app, time.perf_counter() + 0.5)
        lazy = [layer.data for layer in images]
        memory = [np.asarray(data[:]) for data in lazy]
        fps: dict[str, list[float]] = {"v_seq": [], "v_rnd": [], "m_seq": [], "m_rnd": []}
        for _ in range(rounds):  # interleaved rounds, medians: robust to a loaded machine
            for kind, arrays in (("v", lazy), ("m", memory)):
                for layer, data in zip(images, arrays):
                    layer.data = data
                _process(app, time.perf_counter() + 0.2)
                fps[f"{kind}_seq"].append(_scrub(viewer, app, seq))
                fps[f"{kind}_rnd"].append(_scrub(viewer, app, rnd))
        for layer, data in zip(images, lazy):
            layer.data = data
        v_seq, v_rnd, m_seq, m_rnd = (float(np.median(fps[k]))
                                      for k in ("v_seq", "v_rnd", "m_seq", "m_rnd"))
        h, w = images[0].data.shape[1:3] if images else (0, 0)
        result = ScrubResult(n_cameras=len(images), n_frames=n_f, width=int(w), height=int(h),
                             steps=steps, video_fps_sequential=v_seq, video_fps_random=v_rnd,
                             memory_fps_sequential=m_seq, memory_fps_random=m_rnd, rounds=rounds)
        if run_check:
            from napari_behaviorvlm.napari.keypoint_layers import QT_TASK_MS

            idle = _block_gaps(app, 1.0)
            QT_TASK_MS.clear()
            start = time.perf_counter()
            worker = widget.start_run(list(range(n_f)))
            if worker is None:
                raise ValueError(f"the run did not start: {widget.message.text()}")
            gaps = _block_gaps(app, None, done=lambda: widget.worker is None)
            result.run_seconds = time.perf_counter() - start
            report = widget._last_report
            result.run_frames = len(getattr(report, "frames_done", [])) or n_f
            result.run_max_block_ms = float(gaps.max() * 1000)
            result.run_p99_block_ms = float(np.percentile(gaps, 99) * 1000)
            result.idle_max_block_ms = float(idle.max() * 1000)
            slowest = max(QT_TASK_MS.items(), key=lambda kv: kv[1][0], default=("", [0.0, 0]))
            result.run_slowest_task, result.run_max_task_ms = slowest[0], float(slowest[1][0])
        widget.state.dirty = False
        return result
    finally:
        viewer.close()
        if tmp is not None:
            tmp.cleanup()


def _seed_from_truth(widget: Any, session: Path) -> None:
    """Import the session's ``seeds.csv`` (synthetic sessions have one) as seed frames."""
    folder = session if session.is_dir() else session.parent
    if (folder / "seeds.csv").exists():
        widget.import_labels(folder / "seeds.csv")
