"""Geometry subcommands: ``behaviorvlm calibrate``, ``behaviorvlm info``, ``bench triangulate``."""

from __future__ import annotations

import argparse
import json

from napari_behaviorvlm.core.atomic import atomic_write_text, check_overwrite

__all__ = ["register", "register_bench"]


def register(subparsers) -> None:
    """Add the ``calibrate`` and ``info`` subcommands."""


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
    parser.add_argument("--points", type=int, default=100_000, help="number of 3D points (default 100000)")
    parser.add_argument("--cameras", type=int, default=6, help="number of cameras (default 6)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats, median reported (default 3)")
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
    extrapolated = " (timed on %d points, extrapolated)" % base["points_timed"] if base["extrapolated"] else ""
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
