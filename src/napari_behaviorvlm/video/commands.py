"""CLI: ``behaviorvlm make-session`` and ``behaviorvlm bench video``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_behaviorvlm.core.atomic import atomic_write_text, check_overwrite

__all__ = ["register", "register_bench"]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "make-session",
        help="write a session.toml for a folder of camera videos (then edit offsets/trim)",
        description="Scan a folder of camera videos (one file per camera, or one sub-folder per "
                    "camera), check frame rates, frame counts and calibration.toml, and write a "
                    "session.toml listing cameras, videos, frame offsets, fps and n_frames.",
    )
    p.add_argument("folder", type=Path, help="folder of camera videos")
    p.add_argument("-o", "--output", type=Path, default=None,
                   help="session file to write (default: FOLDER/session.toml)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing session file")
    p.set_defaults(func=_make_session)


def _make_session(args: argparse.Namespace) -> int:
    from napari_behaviorvlm.video.session_io import SESSION_FILE, load_session, save_session_file

    out = args.output or args.folder / SESSION_FILE
    check_overwrite(out, args.overwrite)
    session = load_session(args.folder)
    save_session_file(session, out, overwrite=args.overwrite)
    print(f"wrote {out}: {len(session.cameras)} cameras {session.camera_names}, "
          f"{session.n_frames} frames at {session.fps:g} fps, "
          f"calibration: {'yes' if session.calibration is not None else 'none'}")
    for note in session.notes:
        print(f"note: {note}")
    return 0


def register_bench(bench_subparsers: argparse._SubParsersAction) -> None:
    p = bench_subparsers.add_parser(
        "video",
        help="frame exactness and frames/s of the video reader vs raw PyAV decoding",
        description="Check that random access returns exactly the frames of sequential decoding "
                    "(count of mismatching frames) and measure sequential and random-access "
                    "frames/s against raw PyAV decoding of the same file in the same run.",
    )
    p.add_argument("video", type=Path, help="video file")
    p.add_argument("--samples", type=int, default=200,
                   help="random accesses per repeat and frames checked in random order "
                        "(0: every frame; default 200)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats, medians reported (default 5)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the access order")
    p.add_argument("--json", type=Path, default=None, help="write the result as JSON to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=_bench_video)


def _bench_video(args: argparse.Namespace) -> int:
    from napari_behaviorvlm.video.bench import bench_video, format_table

    if args.json is not None:
        check_overwrite(args.json, args.overwrite)
    if args.repeats < 1:
        raise ValueError("--repeats must be >= 1")
    result = bench_video(args.video, samples=args.samples, repeats=args.repeats, seed=args.seed)
    print(format_table(result))
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(result, indent=2))
        print(f"wrote {args.json}")
    return 0
