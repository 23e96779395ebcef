"""``behaviorvlm demo``: the whole product, end to end, on the embedded default (no network).

Steps: generate a synthetic QD session (real H.264 videos, calibration, seeds, truth) -> load it
as a user's session -> label every frame from the 3 seed frames with the local reasoner ->
segment behavior with the local captioner and merger -> export SLEAP, DeepLabCut, anipose and
segment tables -> score everything against the simulator's truth. A rerun with the same ``--out``
reuses the session and resumes the project (finished frames are kept).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_behaviorvlm.core.atomic import atomic_write_text

__all__ = ["register", "run_demo"]

PROJECT_NAME = "project.bvlm"


def register(subparsers) -> None:
    """Add the ``demo`` subcommand."""
    parser = subparsers.add_parser(
        "demo",
        help="run the whole product on a fresh synthetic session (embedded default, no network)",
        description=(
            "Generate a synthetic multi-camera QD mouse session, label it from 3 seed frames with "
            "the local reasoner, segment behavior, export SLEAP/DeepLabCut/anipose/segment files "
            "and score everything against the simulator's ground truth. Rerunning with the same "
            "--out resumes."
        ),
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--json", dest="json_path", help="write a manifest of outputs and figures")
    parser.add_argument("--cameras", type=int, default=6, help="cameras (default 6)")
    parser.add_argument("--frames", type=int, default=300, help="frames (default 300)")
    parser.add_argument("--mice", type=int, default=1, choices=(1, 2), help="mice (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=_run, on_interrupt="the finished frames are saved; rerun the same "
                                                 "command to resume.")


def _run(args: argparse.Namespace) -> int:
    manifest = run_demo(
        Path(args.out), cameras=args.cameras, frames=args.frames, mice=args.mice,
        seed=args.seed, progress=not args.quiet,
    )
    if args.json_path:
        atomic_write_text(args.json_path, json.dumps(manifest, indent=2))
        print(f"manifest: {args.json_path}")
    return 0


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def _done(start: float) -> float:
    seconds = time.perf_counter() - start
    print(f"   ({seconds:.1f} s)", flush=True)
    return round(seconds, 2)


def run_demo(out: Path, cameras: int = 6, frames: int = 300, mice: int = 1, seed: int = 0,
             progress: bool = True) -> dict[str, Any]:
    """Run the demo into ``out`` and return the manifest (outputs by kind, headline figures)."""
    from napari_behaviorvlm.behavior.metrics import evaluate
    from napari_behaviorvlm.behavior.pipeline import run_segmentation, segment_labels
    from napari_behaviorvlm.core.project import Project, load_project, save_project
    from napari_behaviorvlm.geometry.validation import calibration_quality
    from napari_behaviorvlm.io.labels_csv import read_labels_csv
    from napari_behaviorvlm.io.registry import export_project
    from napari_behaviorvlm.pose.metrics import evaluate_poses
    from napari_behaviorvlm.pose.pipeline import LabelingConfig, run_labeling
    from napari_behaviorvlm.synth import SynthConfig, load_truth, simulate, write_synthetic_session
    from napari_behaviorvlm.video.session_io import load_session

    out.mkdir(parents=True, exist_ok=True)
    session_dir = out / "session"
    project_path = session_dir / PROJECT_NAME  # where the napari dock looks for it
    manifest: dict[str, Any] = {"outputs": {}, "figures": {}, "seconds": {}}
    outputs, figures, seconds = manifest["outputs"], manifest["figures"], manifest["seconds"]

    # 1. synthetic session ------------------------------------------------------------
    t = _step(f"1/5 synthetic session: {cameras} cameras x {frames} frames, "
              f"{mice} {'mouse' if mice == 1 else 'mice'}")
    if (session_dir / "truth").is_dir():
        truth = load_truth(session_dir)
        if (len(truth.camera_names), truth.n_frames, len(truth.individual_names)) != (
            cameras, frames, mice
        ):
            raise ValueError(
                f"{session_dir} holds a session of another size ({len(truth.camera_names)} "
                f"cameras, {truth.n_frames} frames, {len(truth.individual_names)} mice); "
                "choose another --out or delete that folder"
            )
        print(f"   reusing {session_dir}")
    else:
        sim = simulate(SynthConfig.preset("default", n_cameras=cameras, n_frames=frames,
                                          n_mice=mice, seed=seed))
        write_synthetic_session(sim, session_dir)
        truth = load_truth(session_dir)
        print(f"   wrote {session_dir}")
    outputs["session"] = str(session_dir)
    outputs["videos"] = sorted(str(p) for p in session_dir.glob("*.mp4"))
    outputs["calibration"] = str(session_dir / "calibration.toml")
    outputs["seeds"] = str(session_dir / "seeds.csv")
    outputs["truth"] = str(session_dir / "truth")
    seconds["generate"] = _done(t)

    # 2. load as a user's session -----------------------------------------------------
    t = _step("2/5 load session (frame-exact readers, calibration check)")
    session = load_session(session_dir)
    quality = calibration_quality(session.calibration)
    print(f"   {len(session.cameras)} cameras, {session.n_frames} frames at {session.fps:g} fps")
    for note in session.notes:
        print(f"   note: {note}")
    baseline = quality.get("baseline_mm") or {}
    print(f"   calibration: {'ok' if quality['ok'] else 'PROBLEMS'}, {quality['errors']} errors, "
          f"{quality['warnings']} warnings; camera baselines "
          f"{baseline.get('min', float('nan')):.0f}-{baseline.get('max', float('nan')):.0f} mm")
    for issue in quality["issues"]:
        print(f"   calibration issue: {issue}")
    figures["calibration"] = quality
    seconds["load"] = _done(t)

    # 3. label from 3 seeds -------------------------------------------------------------
    t = _step("3/5 label keypoints from 3 seed frames (local reasoner)")
    if project_path.exists():
        project = load_project(project_path)
        print(f"   resuming {project_path}")
    else:
        from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton

        project = Project.new(session, default_qd_mouse_skeleton(), truth.individual_names)
        read_labels_csv(session_dir / "seeds.csv", project.poses)
        save_project(project, project_path)
    bar = _progress_bar(progress, "label")

    def on_frame_done(frame: int, _count=[0]) -> None:
        _count[0] += 1
        if _count[0] % 50 == 0:
            save_project(project, project_path)  # a cut-off run resumes from here

    try:
        report = run_labeling(project, config=LabelingConfig(backend="local"),
                              on_progress=bar, on_frame_done=on_frame_done)
    finally:  # an interrupted run keeps its finished frames
        save_project(project, project_path)
    pose_scores = evaluate_poses(project.poses, project.skeleton, truth.points3d, truth.points2d,
                                 truth.visible)
    figures["labeling"] = report.to_dict()
    figures["pose"] = pose_scores
    print(f"   {len(report.frames_done)} frames labeled "
          f"({report.frames_per_second:.1f} multi-view frames/s), {report.n_flagged} labels flagged")
    print(f"   mean 3D error vs truth: {pose_scores['mean_3d_error_mm']:.2f} mm "
          f"(median {pose_scores['median_3d_error_mm']:.2f}, p95 {pose_scores['p95_3d_error_mm']:.2f})")
    print(f"   identity swaps: {100 * pose_scores['identity_swap_rate']:.2f} % of the keypoints")
    for key in ("flag_recall", "flag_precision", "pck_5px"):
        print(f"   {key}: {pose_scores[key]:.3f}")
    outputs["project"] = str(project_path)
    seconds["label"] = _done(t)

    # 4. behavior segments --------------------------------------------------------------
    t = _step("4/5 behavior segments (over-segment, local captions, local merge)")
    run_segmentation(project, on_progress=_fraction_printer(progress))
    save_project(project, project_path)
    behavior_scores = {}
    for m, name in enumerate(truth.individual_names):
        pred = segment_labels(project.segments, truth.n_frames, name)
        behavior_scores[name] = evaluate(pred, truth.behavior[:, m].astype(str), truth.fps)
        s = behavior_scores[name]
        print(f"   {name}: {sum(1 for x in project.segments if x.subject == name)} segments, "
              f"frame accuracy {s['frame_accuracy']:.3f}, "
              f"segmental F1@0.25 {s['segmental_f1']['0.25']:.3f}")
    figures["behavior"] = behavior_scores
    seconds["segment"] = _done(t)

    # 5. exports --------------------------------------------------------------------------
    t = _step("5/5 export SLEAP, DeepLabCut, anipose, segment tables")
    export_dir = out / "exports"
    if export_dir.exists():
        print(f"   replacing the previous demo exports in {export_dir}")
    export = export_project(project, "all", export_dir, overwrite=True)
    outputs["exports"] = _group_exports(export.files, export_dir)
    for kind, files in outputs["exports"].items():
        print(f"   {kind}: {len(files)} files")
    for warning in export.warnings:
        print(f"   note: {warning}")
    figures["unreviewed_flags_at_export"] = export.unreviewed_flags
    seconds["export"] = _done(t)

    print(f"\nDone. Project: {project_path}\n"
          f"Look at it in napari: napari --plugin napari-behaviorvlm {session_dir}\n"
          "  then Plugins > BehaviorVLM labeling (it reopens the project) and "
          "Plugins > BehaviorVLM timeline;\n"
          "or start napari and use File > Open Sample > BehaviorVLM for the sample session.")
    return _jsonable(manifest)


def _group_exports(files, root: Path) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for path in files:
        rel = Path(path).relative_to(root)
        kind = rel.parts[0] if len(rel.parts) > 1 else rel.suffix.lstrip(".")
        groups.setdefault(kind, []).append(str(path))
    return groups


def _progress_bar(enabled: bool, label: str):
    if not enabled:
        return None
    from tqdm import tqdm

    state: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc=f"   {label}", unit="frame", file=sys.stdout)
        bar = state["bar"]
        bar.update(done - bar.n)
        if done >= total:
            bar.close()

    return update


def _fraction_printer(enabled: bool):
    if not enabled:
        return None
    seen: set[str] = set()

    def update(fraction: float, message: str) -> None:
        if message not in seen:
            seen.add(message)
            print(f"   {message}", flush=True)

    return update


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
