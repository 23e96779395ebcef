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
    parser.add_argument("--reflections", type=float, default=None,
                        help="mean spurious reflections per camera and frame (overrides the preset)")
    parser.add_argument("--dropout", type=float, default=None,
                        help="fraction of missed dot observations, 0..1 (overrides the preset)")
    parser.add_argument("--no-occlusion", action="store_true",
                        help="count dots hidden behind a body as visible (an easier benchmark)")
    parser.add_argument("--seed-frames", default=None, metavar="F1,F2,F3",
                        help="frames labeled in seeds.csv (default: 3 frames spread over the "
                             "session, covering different behaviors)")
    parser.add_argument("--click-noise", type=float, default=0.0, metavar="PX",
                        help="sigma of Gaussian noise added to seed positions, px (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing session folder")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from napari_behaviorvlm.synth import SynthConfig, simulate, write_synthetic_session

    overrides: dict = {}
    for arg, field in (("noise", "noise_sigma"), ("reflections", "reflection_rate"),
                       ("dropout", "dropout_rate")):
        if getattr(args, arg) is not None:
            overrides[field] = getattr(args, arg)
    if args.no_occlusion:
        overrides["occlusion"] = False
    seed_frames = None
    if args.seed_frames:
        try:
            seed_frames = [int(v) for v in args.seed_frames.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--seed-frames must be comma-separated frame numbers, "
                             f"got {args.seed_frames!r}") from None
    config = SynthConfig.preset(
        args.difficulty, n_cameras=args.cameras, n_frames=args.frames, n_mice=args.mice,
        seed=args.seed, width=args.width, height=args.height, fps=args.fps, **overrides,
    )
    start = time.perf_counter()
    sim = simulate(config)
    paths = write_synthetic_session(sim, args.out_dir, seed_frames=seed_frames,
                                    overwrite=args.overwrite, click_noise=args.click_noise)
    elapsed = time.perf_counter() - start
    mice = "1 mouse" if config.n_mice == 1 else f"{config.n_mice} mice"
    print(f"synthetic session ({config.n_cameras} cameras x {config.n_frames} frames, {mice}, "
          f"difficulty {config.difficulty}, seed {config.seed}) written in {elapsed:.1f} s:")
    for name, path in paths.items():
        print(f"  {name}: {path}")
    return 0
