"""Geometry subcommands: ``behaviorvlm calibrate``, ``behaviorvlm info``, ``bench triangulate``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


from napari_behaviorvlm.core.atomic import atomic_write_text, check_overwrite
from napari_behaviorvlm.core.tomlfile import read_toml

__all__ = ["format_calibration_report", "format_info", "register", "register_bench", "session_info"]


def register(subparsers) -> None:
    """Add the ``calibrate`` and ``info`` subcommands."""
    parser = subparsers.add_parser(
        "calibrate",
        help="calibrate cameras from ChArUco or checkerboard images or videos",
        description=(
            "Detect the board in every camera's images (a folder or a glob) or video, calibrate "
            "intrinsics per camera, chain extrinsics over shared board views, bundle-adjust "
            "everything, and write an anipose calibration.toml (world frame = first camera). "
            "Prints a per-camera report of reprojection errors in px."
        ),
    )
    parser.add_argument("--board", required=True, metavar="BOARD.toml",
                        help="board file (see docs/calibration.md for the keys)")
    parser.add_argument("--images", required=True, nargs="+", metavar="CAMERA=PATH",
                        help="camera name and its images folder, glob (quote it) or video; "
                             "one per camera, the first is the world reference")
    parser.add_argument("-o", "--output", required=True, metavar="calibration.toml",
                        help="output calibration file (anipose format)")
    parser.add_argument("--json", metavar="FILE", help="also write the full report as JSON")
    parser.add_argument("--every", type=int, default=1,
                        help="use every n-th image/frame (default 1; raise it for long videos)")
    parser.add_argument("--min-corners", type=int, default=6,
                        help="ignore frames with fewer detected corners (default 6)")
    parser.add_argument("--free-k3", action="store_true",
                        help="also fit the 6th-order radial term k3 (default: k3 = 0, which keeps "
                             "the distortion model invertible over the whole image)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every frame's detection")
    parser.set_defaults(func=_calibrate)

    info = subparsers.add_parser(
        "info",
        help="describe a session: cameras, frames, fps, offsets, calibration quality",
        description=(
            "Load a session (a folder of camera videos or a session.toml) and print each "
            "camera's video, frame count, fps, size and frame offset, the session's frame count, "
            "notes about trims/offsets, and the calibration's quality and issues (duplicate or "
            "implausible cameras). SESSION may also be a calibration.toml alone."
        ),
    )
    info.add_argument("session", metavar="SESSION",
                      help="session folder, session.toml or calibration.toml")
    info.add_argument("--json", metavar="FILE", help="also write the description as JSON")
    info.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    info.set_defaults(func=_info)


def register_bench(bench_subparsers) -> None:
    """Add ``bench triangulate``."""
    parser = bench_subparsers.add_parser(
        "triangulate",
        help="points/s of the vectorized DLT vs a per-point loop and aniposelib",
        description=(
            "Triangulate synthetic points (ring of cameras with lens distortion, 0.3 px noise, "
            "5%% missing views) with the vectorized DLT, a straightforward per-point loop "
            "(undistort + SVD per point; timed on a subset and extrapolated) and aniposelib's "
            "CameraGroup.triangulate when it is installed. Reports medians of the repeats."
        ),
    )
    parser.add_argument("--points", type=int, default=100_000,
                        help="number of 3D points (default 100000)")
    parser.add_argument("--cameras", type=int, default=6, help="number of cameras (default 6)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed repeats, median reported (default 3)")
    parser.add_argument("--baseline-points", type=int, default=2_000,
                        help="points timed for the per-point baseline (default 2000)")
    parser.add_argument("--no-aniposelib", action="store_true", help="skip the aniposelib comparison")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    parser.set_defaults(func=_bench_triangulate)


def _write_json(path: str | None, data: dict, overwrite: bool) -> None:
    if path:
        check_overwrite(path, overwrite)
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
        print(f"wrote {path}")


def _parse_sources(items: list[str]) -> dict[str, str]:
    sources: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--images expects CAMERA=PATH, got {item!r}")
        if name in sources:
            raise ValueError(f"camera {name!r} given twice in --images")
        sources[name] = path
    return sources


def _calibrate(args: argparse.Namespace) -> int:
    from napari_behaviorvlm.geometry.calibrate import calibrate, load_board
    from napari_behaviorvlm.geometry.camera import save_calibration

    sources = _parse_sources(args.images)
    check_overwrite(args.output, args.overwrite)
    if args.json:
        check_overwrite(args.json, args.overwrite)
    board = load_board(args.board)

    def progress(message: str) -> None:
        if args.verbose or ": frame " not in message:
            print(message, flush=True)

    result = calibrate(board, sources, every=args.every, min_corners=args.min_corners,
                       fix_k3=not args.free_k3, progress=progress)
    save_calibration(result.group, args.output)
    print(format_calibration_report(result.report))
    print(f"wrote {args.output}")
    _write_json(args.json, result.report, args.overwrite)
    return 0


def format_calibration_report(report: dict) -> str:
    """A per-camera table of a calibration report (px)."""
    lines = [f"{'camera':<12} {'frames':>9} {'corners':>8} {'rms':>6} {'median':>7} {'mean':>7} "
             f"{'p95':>7} {'max':>7} {'tri.med':>7}"]
    rows = list(report["cameras"].items()) + [("overall", report["overall"])]
    for name, cam in rows:
        rep, tri = cam["reprojection_px"], cam["triangulated_px"]
        frames = (f"{cam['frames_detected']}/{cam['frames_read']}" if "frames_read" in cam
                  else str(cam["frames_detected"]))
        rms = f"{cam['intrinsic_rms_px']:.3f}" if "intrinsic_rms_px" in cam else ""
        lines.append(f"{name:<12} {frames:>9} {cam['corners']:>8} {rms:>6} {rep['median']:>7.3f} "
                     f"{rep['mean']:>7.3f} {rep['p95']:>7.3f} {rep['max']:>7.3f} "
                     f"{tri['median']:>7.3f}")
    lines.append("errors in px: board-model reprojection after bundle adjustment (median, mean, "
                 "p95, max); rms = per-camera calibrateCamera; tri.med = corners triangulated "
                 "from all views, reprojected")
    if report.get("worst_frames"):
        lines.append("worst frames: " + ", ".join(
            f"{w['camera']} #{w['frame']} {w['median_px']:.2f} px" for w in report["worst_frames"]))
    lines.extend(f"check: {issue}" for issue in report.get("issues", []))
    return "\n".join(lines)


def _is_calibration_file(path: Path) -> bool:
    if not (path.is_file() and path.suffix.lower() == ".toml"):
        return False
    try:
        data = read_toml(path, "calibration")
    except ValueError:
        return False
    return "cameras" not in data and any(isinstance(v, dict) and "matrix" in v for v in data.values())


def session_info(path: str | Path) -> dict:
    """JSON-ready description of a session (or of a calibration file alone).

    Returns:
        ``path``; ``session`` (``n_frames``, ``fps``, ``duration_s``, ``notes``) and
        ``cameras`` (per camera ``video``, ``frames``, ``fps``, ``size``, ``frame_offset``,
        ``codec``, ``keyframe_interval``) unless ``path`` is a calibration file; ``calibration``:
        :func:`~napari_behaviorvlm.geometry.validation.calibration_quality` or None.
    """
    from napari_behaviorvlm.geometry.camera import load_calibration
    from napari_behaviorvlm.geometry.validation import calibration_quality

    path = Path(path)
    if _is_calibration_file(path):
        return {"path": str(path), "calibration": calibration_quality(load_calibration(path))}
    from napari_behaviorvlm.video.reader import load_index
    from napari_behaviorvlm.video.session_io import load_session

    session = load_session(path)
    cameras = {}
    for cam, video in zip(session.cameras, session.video_paths()):
        index = load_index(video)
        cameras[cam.name] = {
            "video": str(video), "frames": index.n_frames, "fps": index.fps,
            "size": [index.width, index.height], "frame_offset": cam.frame_offset,
            "codec": index.codec, "keyframe_interval": index.gop,
        }
    return {
        "path": str(path),
        "session": {"n_frames": session.n_frames, "fps": session.fps,
                    "duration_s": session.n_frames / session.fps if session.fps else None,
                    "notes": list(session.notes)},
        "cameras": cameras,
        "calibration": (None if session.calibration is None
                        else calibration_quality(session.calibration)),
    }


def format_info(info: dict) -> str:
    """Human-readable form of :func:`session_info`."""
    lines = [str(info["path"])]
    if "session" in info:
        ses = info["session"]
        lines.append(f"session: {ses['n_frames']} frames at {ses['fps']:g} fps "
                     f"({ses['duration_s']:.2f} s), {len(info['cameras'])} cameras")
        lines.append(f"  {'camera':<12} {'frames':>7} {'fps':>7} {'size':>11} {'offset':>6} "
                     f"{'codec':>6} {'gop':>5}  video")
        for name, cam in info["cameras"].items():
            size = f"{cam['size'][0]}x{cam['size'][1]}"
            lines.append(f"  {name:<12} {cam['frames']:>7} {cam['fps']:>7.3f} {size:>11} "
                         f"{cam['frame_offset']:>6} {cam['codec']:>6} {cam['keyframe_interval']:>5}"
                         f"  {cam['video']}")
        for note in ses["notes"]:
            lines.append(f"  note: {note}")
    cal = info["calibration"]
    if cal is None:
        lines.append("calibration: none (put a calibration.toml in the session folder, or run "
                     "behaviorvlm calibrate)")
        return "\n".join(lines)
    status = "ok" if cal["ok"] else f"{cal['errors']} error(s)"
    extra = ""
    if "reprojection_median_px" in cal:
        extra = f", board reprojection median {cal['reprojection_median_px']:.3f} px"
    baseline = cal["baseline_mm"]
    span = f", baselines {baseline['min']:.0f}-{baseline['max']:.0f} mm" if baseline else ""
    lines.append(f"calibration: {cal['n_cameras']} cameras, {status}, {cal['warnings']} "
                 f"warning(s){span}{extra}")
    lines.append(f"  {'camera':<12} {'focal px':>9} {'pp off px':>9} {'k1':>8} {'nearest mm':>10}")
    for name, cam in cal["cameras"].items():
        nearest = "" if cam["nearest_camera_mm"] is None else f"{cam['nearest_camera_mm']:.1f}"
        lines.append(f"  {name:<12} {cam['focal_px']:>9.1f} {cam['principal_offset_px']:>9.1f} "
                     f"{cam['k1']:>8.3f} {nearest:>10}")
    for issue in cal["issues"]:
        lines.append(f"  {issue}")
    return "\n".join(lines)


def _info(args: argparse.Namespace) -> int:
    if args.json:
        check_overwrite(args.json, args.overwrite)
    info = session_info(args.session)
    print(format_info(info))
    _write_json(args.json, info, args.overwrite)
    return 0


def _bench_triangulate(args: argparse.Namespace) -> int:
    from napari_behaviorvlm.geometry.bench import bench_triangulate

    if args.points < 1 or args.cameras < 2 or args.repeats < 1 or args.baseline_points < 1:
        raise ValueError("--points, --repeats and --baseline-points must be >= 1, --cameras >= 2")
    if args.json:
        check_overwrite(args.json, args.overwrite)
    res = bench_triangulate(args.points, args.cameras, args.repeats, args.baseline_points,
                            use_aniposelib=not args.no_aniposelib)
    base = res["per_point_baseline"]
    print(f"triangulate: {res['points']} points x {res['cameras']} views, median of "
          f"{res['repeats']} repeats")
    print(f"  vectorized DLT   {res['vectorized']['points_per_s']:>12,.0f} points/s  "
          f"(median error to truth {res['vectorized']['median_error_to_truth_mm']:.3f} mm)")
    extrapolated = (f" (timed on {base['points_timed']} points, extrapolated)"
                    if base["extrapolated"] else "")
    print(f"  per-point loop   {base['points_per_s']:>12,.0f} points/s{extrapolated}; "
          f"max diff {base['max_diff_mm']:.2e} mm")
    print(f"  speed-up vs per-point loop: {res['speedup_vs_per_point']:.1f}x (target >= 20x)")
    ani = res.get("aniposelib")
    if ani is not None and ani["available"]:
        print(f"  aniposelib       {ani['points_per_s']:>12,.0f} points/s; max diff "
              f"{ani['max_diff_mm']:.2e} mm (median {ani['median_diff_mm']:.1e} mm); "
              f"speed-up {res['speedup_vs_aniposelib']:.1f}x")
    elif ani is not None:
        print(f"  aniposelib: not available ({ani['reason']})")
    _write_json(args.json, res, args.overwrite)
    return 0
