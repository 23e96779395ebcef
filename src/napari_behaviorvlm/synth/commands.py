"""``behaviorvlm synth``: generate a synthetic multi-camera quantum-dot mouse session."""

from __future__ import annotations

import argparse
import time

__all__ = ["register"]


def register(subparsers) -> None:
    """Add the ``synth`` subcommand."""
    parser = subparsers.add_parser(
        "synth",
        help="generate a synthetic multi-camera QD mouse session with ground truth",
        description=(
            "Simulate articulated mice carrying 12 quantum-dot keypoints, render one grayscale "
            "NIR-like H.264 video per camera, and write calibration.toml, truth/ (3D/2D ground "
            "truth, visibility, behavior labels) and seeds.csv (3 labelled seed frames)."
        ),
    )
    parser.add_argument("out_dir", help="output session folder")
    parser.add_argument("--cameras", type=int, default=6, help="number of cameras (default 6)")
    parser.add_argument("--frames", type=int, default=500, help="number of frames (default 500)")
    parser.add_argument("--mice", type=int, default=1, choices=(1, 2), help="number of mice (1 or 2)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--width", type=int, default=640, help="image width in px (default 640)")
    parser.add_argument("--height", type=int, default=480, help="image height in px (default 480)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate (default 30)")
    parser.add_argument(
        "--difficulty", default="default", choices=("easy", "default", "hard"),
        help="difficulty preset (default: default)",
    )
    parser.add_argument("--noise", type=float, default=None,
                        help="sensor noise sigma in grey levels (overrides the preset)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing session folder")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from napari_behaviorvlm.synth import SynthConfig, simulate, write_synthetic_session

    overrides = {}
    if args.noise is not None:
        overrides["noise_sigma"] = args.noise
    config = SynthConfig.preset(
        args.difficulty, n_cameras=args.cameras, n_frames=args.frames, n_mice=args.mice,
        seed=args.seed, width=args.width, height=args.height, fps=args.fps, **overrides,
    )
    start = time.perf_counter()
    sim = simulate(config)
    paths = write_synthetic_session(sim, args.out_dir, overwrite=args.overwrite)
    elapsed = time.perf_counter() - start
    print(f"synthetic session ({config.n_cameras} cameras x {config.n_frames} frames, "
          f"{config.n_mice} mice, difficulty {config.difficulty}, seed {config.seed}) "
          f"written in {elapsed:.1f} s:")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0
