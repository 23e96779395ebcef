"""``behaviorvlm bench scrub``: viewer fluidity (needs a display: run it under ``xvfb-run -a``).

napari is imported inside the handler, so the CLI itself starts without a display.
"""

from __future__ import annotations

import argparse
import json

from napari_behaviorvlm.core.atomic import atomic_write_text

__all__ = ["register", "register_bench"]


def register(subparsers) -> None:
    """The napari area adds no top-level subcommand (only ``bench scrub``)."""


def register_bench(bench_subparsers) -> None:
    parser = bench_subparsers.add_parser(
        "scrub",
        help="frames per second of time-slider scrubbing with all cameras in grid mode, and "
             "the longest Qt-thread block during a labeling run (needs a display: xvfb-run -a)",
        description=(
            "Open a session in the BehaviorVLM dock (default: a synthetic 6-camera session), "
            "move the time slider sequentially and by random jumps with video-backed layers, "
            "then with the same frames held in memory (the baseline, same run), and report "
            "frames per second and their ratio. Then run the local reasoner on every frame "
            "while a 10 ms Qt timer records how long the interface was blocked."
        ),
    )
    parser.add_argument("--session", default=None,
                        help="session folder or session.toml (default: synthetic)")
    parser.add_argument("--cameras", type=int, default=6, help="synthetic cameras (default 6)")
    parser.add_argument("--frames", type=int, default=200, help="synthetic frames (default 200)")
    parser.add_argument("--width", type=int, default=640, help="synthetic width px (default 640)")
    parser.add_argument("--height", type=int, default=480, help="synthetic height px (default 480)")
    parser.add_argument("--steps", type=int, default=150, help="slider steps per measure")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved video / in-memory rounds, medians reported (default 3)")
    parser.add_argument("--no-run", action="store_true",
                        help="skip the labeling run (Qt-thread block) measure")
    parser.add_argument("--workdir", default=None,
                        help="keep the synthetic session here (reused when present)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.set_defaults(func=_scrub)


def _scrub(args: argparse.Namespace) -> int:
    import attrs

    from napari_behaviorvlm.napari.bench import run_scrub_bench

    result = run_scrub_bench(
        n_cameras=args.cameras, n_frames=args.frames, width=args.width, height=args.height,
        steps=args.steps, session=args.session, run_check=not args.no_run, workdir=args.workdir,
        rounds=args.rounds,
    )
    print(result.table())
    if args.json:
        atomic_write_text(args.json, json.dumps(attrs.asdict(result), indent=1) + "\n")
        print(f"figures written to {args.json}")
    return 0
