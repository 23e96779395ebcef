"""Drive the real napari viewer through the labeling flow and save window screenshots.

    xvfb-run -a -s "-screen 0 1920x1080x24" python scripts/screenshots.py [--out docs/images] [--overwrite]

Steps (each saves ``docs/images/labeling-<n>-<name>.png``, the whole window with the dock):

1. a synthetic 6-camera session opened: videos in grid mode, the Session tab;
2. seed frames imported, clicking the next keypoint in one camera (Label tab, add mode),
   reprojection hints (cyan crosses) in the cameras not labeled yet;
3. the local reasoner's results colored by confidence (Run tab after the run);
4. reviewing a flagged frame (Review tab; flagged points have a thick red border);
5. the same frame colored by keypoint with names and skeleton edges;
6. behavior segments of the labeled session on the timeline dock, the playhead on the frame.

Images are palette-quantized (256 colors) to stay small (< 300 KB each).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


IMAGES = ["labeling-1-session.png", "labeling-2-seeds-and-hints.png",
          "labeling-3-run-confidence.png", "labeling-4-review.png",
          "labeling-5-keypoint-colors.png", "timeline.png"]


def _settle(app, seconds: float = 0.3) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def _save(viewer, app, path: Path, colors: int = 256, overwrite: bool = False) -> Path:
    from PIL import Image

    from napari_behaviorvlm.core.atomic import atomic_path, check_overwrite

    check_overwrite(path, overwrite)
    _settle(app, 0.5)
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.hide()  # napari's own start-up warnings are not part of the flow
    _settle(app, 0.1)
    rgba = viewer.screenshot(canvas_only=False, flash=False)
    image = Image.fromarray(np.asarray(rgba)[..., :3])
    # median cut keeps the greys of the video smooth; with 256 colors the small colored points
    # keep their hue too (fewer colors would map them to the wrong hue)
    image = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    with atomic_path(path) as tmp:
        image.save(tmp, optimize=True)
    print(f"{path} ({path.stat().st_size // 1024} KB)")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images", help="folder for the PNG files")
    parser.add_argument("--session", default=None,
                        help="session folder to use (default: a synthetic 6-camera session)")
    parser.add_argument("--frames", type=int, default=60, help="frames of the synthetic session")
    parser.add_argument("--overwrite", action="store_true", help="replace existing images")
    args = parser.parse_args(argv)

    import os

    # keep the user's napari settings untouched (notifications are switched off below)
    os.environ.setdefault("NAPARI_CONFIG", str(Path(tempfile.gettempdir()) / "bvlm-shots.yaml"))
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_behaviorvlm.core.review import review_items
    from napari_behaviorvlm.napari.widgets import BehaviorVLMWidget

    out = Path(args.out)
    from napari_behaviorvlm.core.atomic import check_overwrite

    try:
        for name in IMAGES:  # refuse before the work, not after it
            check_overwrite(out / name, args.overwrite)
    except FileExistsError as exc:
        print(f"screenshots: {exc}")
        return 2
    with tempfile.TemporaryDirectory(prefix="bvlm-shots-") as tmp:
        session = Path(args.session) if args.session else Path(tmp) / "qd_session"
        if args.session is None:
            from napari_behaviorvlm.synth.simulate import SynthConfig, simulate
            from napari_behaviorvlm.synth.writer import write_synthetic_session

            config = SynthConfig.preset("default", n_cameras=6, n_frames=args.frames, seed=1,
                                        width=400, height=300)
            write_synthetic_session(simulate(config), session)
        from napari.settings import get_settings

        get_settings().application.gui_notification_level = "none"
        viewer = napari.Viewer(title="napari-behaviorvlm", show=True)
        app = QApplication.instance()

        def save(path: Path) -> Path:
            return _save(viewer, app, path, overwrite=args.overwrite)

        viewer.window._qt_window.resize(1800, 1000)
        widget = BehaviorVLMWidget(viewer)
        viewer.window.add_dock_widget(widget, name="BehaviorVLM", area="right")
        state = widget.open_path(session)
        if state is None:
            raise SystemExit(widget.message.text())
        widget.tabs.setCurrentIndex(0)
        _settle(app, 0.3)
        viewer.camera.zoom = viewer.camera.zoom * 1.4  # every grid cell zooms on its arena
        save(out / "labeling-1-session.png")

        seeds = widget.import_labels(session / "seeds.csv") if (session / "seeds.csv").exists() else []
        frame = max(1, seeds[0] + 1 if seeds else 1)
        viewer.dims.set_current_step(0, frame)
        project = state.project
        cams = project.poses.camera_names
        # a user labeling frame `frame`: two cameras done, so hints appear in the others
        from napari_behaviorvlm.core.labeling import apply_human_label

        if seeds:
            ref = seeds[0]
            for c in (0, 1):
                for k in range(project.poses.n_keypoints):
                    xy = project.poses.points2d[c, ref, 0, k]
                    if np.isfinite(xy).all():
                        apply_human_label(project, cams[c], frame, 0, k, xy)
        widget.layers.refresh()
        widget._on_user_edit([frame])
        widget.tabs.setCurrentIndex(2)
        widget.names_check.setChecked(True)
        widget.start_labeling(cams[2])
        save(out / "labeling-2-seeds-and-hints.png")

        # undo the demo labels of that frame, then run the local reasoner
        for c in (0, 1):
            for k in range(project.poses.n_keypoints):
                project.poses.set_label(cams[c], frame, 0, k, None)
        widget.names_check.setChecked(False)
        widget.layers.refresh()
        widget.tabs.setCurrentIndex(3)
        worker = widget.start_run()
        if worker is None:
            raise SystemExit(widget.message.text())
        while widget.worker is not None or widget.layers.refresh_pending:
            app.processEvents()
            time.sleep(0.01)
        flagged = review_items(project.poses)
        show = flagged[len(flagged) // 2].frame if flagged else frame
        viewer.dims.set_current_step(0, show)
        save(out / "labeling-3-run-confidence.png")

        widget.tabs.setCurrentIndex(4)
        widget.refresh_review()
        if widget.review_list.count():
            for i in range(widget.review_list.count()):
                item = widget.review_list.item(i)
                if widget.review_item(i) is not None and widget.review_item(i).frame == show:
                    widget.review_list.setCurrentItem(item)
                    widget._review_item_activated(item)
                    break
        save(out / "labeling-4-review.png")

        widget.tabs.setCurrentIndex(2)
        widget.set_color_mode("keypoint")
        widget.names_check.setChecked(True)
        widget.skeleton_check.setChecked(True)
        save(out / "labeling-5-keypoint-colors.png")

        from napari_behaviorvlm.napari.timeline import add_timeline_dock

        widget.set_color_mode("confidence")
        widget.names_check.setChecked(False)
        widget.skeleton_check.setChecked(False)
        widget.tabs.setCurrentIndex(0)
        timeline = add_timeline_dock(viewer)
        timeline.run_segmentation()
        while timeline.worker is not None:
            app.processEvents()
            time.sleep(0.01)
        timeline.fit()
        _settle(app, 0.5)
        save(out / "timeline.png")
        state.dirty = False
        viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
