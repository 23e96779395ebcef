"""CLI: ``behaviorvlm label`` and ``behaviorvlm bench pose``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_behaviorvlm.core.atomic import atomic_write_text
from napari_behaviorvlm.core.review import flagged_mask
from napari_behaviorvlm.vlm.commands import add_vlm_arguments, config_from_args

__all__ = ["parse_frames", "register", "register_bench"]


def parse_frames(text: str | None, n_frames: int) -> list[int] | None:
    """``"0-199"``, ``"5"`` or ``"0-99,200-299"`` (inclusive) -> frames; None -> None.

    Raises:
        ValueError: malformed text or frames outside ``0..n_frames-1``.
    """
    return parse_ranges(text, n_frames, "--frames", "the session's frames")


def parse_ranges(text: str | None, limit: int, option: str, what: str) -> list[int] | None:
    """Sorted integers from inclusive ranges ``"0-4"``, ``"5"`` or ``"0-2,7"`` (None -> None),
    each within ``0..limit-1``; ``option`` and ``what`` name them in errors.

    Raises:
        ValueError: malformed text or a value outside ``0..limit-1``.
    """
    if text is None:
        return None
    values: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
            else:
                a = b = int(part)
        except ValueError:
            raise ValueError(f"{option} {text!r}: use numbers and inclusive ranges like 0-4 or "
                             "0-2,7") from None
        if a > b:
            raise ValueError(f"{option} {text!r}: the range {part} runs backwards; write it "
                             f"{b}-{a}")
        if a < 0 or b >= limit:
            raise ValueError(f"{option} {text!r}: {part} is not within {what} 0..{limit - 1}")
        values.update(range(a, b + 1))
    return sorted(values)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "label",
        help="label every frame's QD keypoints from a few seed frames (resumable)",
        description="Few-shot QD keypoint labeling: detect the dots in every view, name them "
                    "(local geometry, a vision-language model, or both), refine across views in "
                    "3D and flag doubtful labels. Seed and human labels are never overwritten. "
                    "When PROJECT exists the run resumes it (finished frames are kept).",
    )
    p.add_argument("session", type=Path, help="session folder or session.toml (with calibration)")
    p.add_argument("--seeds", type=Path, default=None,
                   help="seed labels CSV (frame,camera,individual,keypoint,x,y); needed for a new project")
    p.add_argument("--backend", choices=("local", "vlm", "hybrid"), default="local",
                   help="local (default, no network), vlm, or hybrid (model only where ambiguous)")
    p.add_argument("--frames", default=None, help="inclusive frame range(s), e.g. 0-199 or 0-99,200-299")
    p.add_argument("--individuals", default=None,
                   help="comma-separated individual names (default: those in the seeds CSV)")
    p.add_argument("--relabel", action="store_true",
                   help="label the frames again even where a run finished them (after corrections "
                        "in napari; seed and human labels are kept)")
    p.add_argument("--both-directions", action="store_true",
                   help="local backend: label each stretch between seed frames (and before the "
                        "first, after the last) that --frames covers forward and backward and "
                        "keep, per keypoint, the track that fits better (fewer swaps with two "
                        "mice, about 2.2x the time)")
    p.add_argument("--save-every", type=int, default=50, help="save the project every N frames (default 50)")
    p.add_argument("--out", type=Path, required=True, help="project file (.bvlm) to write or resume")
    add_vlm_arguments(p)
    p.set_defaults(func=_label, on_interrupt=lambda args: (
        f"the finished frames are saved in {args.out}; rerun the same command to resume."))


def _seed_individuals(path: Path) -> list[str]:
    import csv

    with path.open(newline="", encoding="utf-8") as handle:
        names = []
        for row in csv.DictReader(handle):
            name = row.get("individual")
            if name and name not in names:
                names.append(name)
    return names


def _label(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from napari_behaviorvlm.core.project import Project, load_project, save_project
    from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton
    from napari_behaviorvlm.pose.pipeline import (
        LabelingConfig, done_frames, make_reasoner, run_labeling,
    )
    from napari_behaviorvlm.video.session_io import load_session

    vlm = None
    if args.backend != "local":  # answers cached beside the project: a rerun costs no calls
        vlm = config_from_args(args, args.out.with_name(args.out.name + ".vlm-cache"))
    if args.out.exists():
        project = load_project(args.out)
        print(f"resuming {args.out}: {len(done_frames(project))} frames already done")
        if args.seeds is not None:
            print("note: --seeds ignored, the project already holds its seed labels")
    else:
        if args.seeds is None:
            raise ValueError("a new project needs --seeds SEEDS.csv (the hand-labeled seed frames)")
        if not args.seeds.is_file():
            raise FileNotFoundError(f"seeds CSV not found: {args.seeds}")
        from napari_behaviorvlm.io.labels_csv import read_labels_csv

        session = load_session(args.session)
        names = args.individuals.split(",") if args.individuals else _seed_individuals(args.seeds)
        project = Project.new(session, default_qd_mouse_skeleton(), names or None)
        read_labels_csv(args.seeds, project.poses)
    frames = parse_frames(args.frames, project.poses.n_frames)
    if args.both_directions and (args.backend != "local" or args.relabel):
        print("note: --both-directions applies to the local backend without --relabel; this "
              "run labels each frame in one direction, from its nearer seed")
    config = LabelingConfig(backend=args.backend, vlm=vlm, both_directions=args.both_directions)
    reasoner = make_reasoner(config)  # a missing API key is reported before any work
    if vlm is not None:
        _print_estimate(project, frames, vlm, args.backend, args.relabel)
    bar = tqdm(total=None, unit="frame", desc="labeling")
    counter = {"n": 0}

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    def frame_done(frame: int) -> None:
        counter["n"] += 1
        if args.save_every > 0 and counter["n"] % args.save_every == 0:
            save_project(project, args.out)

    try:
        report = run_labeling(project, frames=frames, config=config, on_progress=progress,
                              on_frame_done=frame_done, relabel=args.relabel, reasoner=reasoner)
    except KeyboardInterrupt:
        bar.close()
        save_project(project, args.out)
        raise
    bar.close()
    save_project(project, args.out)
    info = report.to_dict()
    print(f"labeled {info['frames_done']} frames ({info['frames_skipped']} already done) "
          f"in {info['seconds']:.1f} s; {info['n_revisited']} doubtful frames labeled again from "
          f"both sides ({info['n_revisit_kept']} kept) and {info['n_final_pass']} a last time "
          f"({info['n_final_kept']} kept); "
          + (f"{info['n_other_direction']} keypoints taken from the labeling in the other "
             "direction; " if args.both_directions else "")
          + f"{info['n_flagged']} labels flagged for "
          f"review; model calls: {info['vlm_calls']}; saved {args.out}")
    flagged = flagged_mask(project.poses)
    if flagged.any():
        print(f"to review: {int(flagged.sum())} flagged labels on "
              f"{int(flagged.any(axis=(0, 2, 3)).sum())} frames in the project; open it in napari "
              "(Plugins > BehaviorVLM labeling > Review) and correct only those")
    return 0


# rough size of one region question: 3 example turns + the question, each with a small crop
EST_PROMPT_TOKENS, EST_COMPLETION_TOKENS = 1500, 80
# hybrid calls per view-frame measured on the default synthetic benchmark (docs/pose-pipeline.md)
HYBRID_CALLS_PER_VIEW_FRAME = 0.2


def _print_estimate(project, frames, vlm, backend: str, relabel: bool = False) -> None:
    """Print the expected model calls, tokens and cost before a run (an upper bound for vlm)."""
    from napari_behaviorvlm.pose.pipeline import done_frames
    from napari_behaviorvlm.vlm import estimate_cost

    poses = project.poses
    todo = set(range(poses.n_frames) if frames is None else frames)
    if not relabel:
        todo -= done_frames(project)
    view_frames = len(todo) * poses.n_cameras
    per_view = len(project.skeleton.regions or {"all": 0}) * poses.n_individuals
    n = view_frames * per_view if backend == "vlm" else int(round(view_frames * HYBRID_CALLS_PER_VIEW_FRAME))
    est = estimate_cost(n, EST_PROMPT_TOKENS, EST_COMPLETION_TOKENS, vlm)
    kind = "at most" if backend == "vlm" else f"about (hybrid, {HYBRID_CALLS_PER_VIEW_FRAME} per view-frame on the benchmark)"
    print(f"model calls {kind} {n} for {view_frames} view-frames: {est} "
          "(answers already in the cache cost nothing)")


def register_bench(bench_subparsers: argparse._SubParsersAction) -> None:
    p = bench_subparsers.add_parser(
        "pose",
        help="pose pipeline accuracy/speed on a synthetic session (ablations, flags, calls)",
        description="Simulate a QD session, write it as videos with 3 seed frames, label it with "
                    "the naive / no-3D-refinement / full pipeline and score against the truth. "
                    "vlm and hybrid run against a ground-truth TEST DOUBLE server on 127.0.0.1 "
                    "with injected errors (not a model).",
    )
    p.add_argument("--cameras", type=int, default=6, help="cameras (default 6)")
    p.add_argument("--frames", type=int, default=500, help="frames (default 500)")
    p.add_argument("--mice", default="1",
                   help="mice: 1 (default), 2, or 1,2 for both kinds of session")
    p.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    p.add_argument("--seeds", default=None,
                   help="several sessions, e.g. 0-4: a row per session, then every figure "
                        "pooled over them (each keypoint counted once; replaces --seed)")
    p.add_argument("--difficulty", default="default", choices=("easy", "default", "hard"),
                   help="simulator difficulty preset (default: default)")
    p.add_argument("--backend", choices=("local", "vlm", "hybrid"), default="local",
                   help="reasoner (vlm/hybrid use the test double)")
    p.add_argument("--variants", default="naive,no_refinement,full",
                   help="comma-separated subset of naive,no_refinement,full,both_directions "
                        "(default: the first three; both_directions is full with "
                        "label --both-directions)")
    p.add_argument("--swap-rate", type=float, default=0.1, help="test double: left/right swap rate")
    p.add_argument("--wrong-rate", type=float, default=0.1, help="test double: wrong candidate rate")
    p.add_argument("--omit-rate", type=float, default=0.05, help="test double: omission rate")
    p.add_argument("--malformed-rate", type=float, default=0.0, help="test double: malformed JSON rate")
    p.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    p.set_defaults(func=_bench, on_interrupt=_bench_interrupted)


def _bench_interrupted(args: argparse.Namespace) -> str:
    if args.json is None:
        return "nothing was kept (with --json FILE every finished session is written there)."
    return (f"the sessions finished so far are in {args.json}; a rerun starts from the first "
            "session again.")


def _bench(args: argparse.Namespace) -> int:
    from napari_behaviorvlm.pose.benchmark import (
        VARIANTS,
        format_sessions_table,
        format_table,
        pool_sessions,
        run_pose_benchmark,
    )

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    mice = sorted({m.strip() for m in args.mice.split(",")})
    if not mice or not set(mice) <= {"1", "2"}:
        raise ValueError(f"--mice {args.mice!r}: give 1, 2 or 1,2")
    mice = [int(m) for m in mice]
    seeds = parse_ranges(args.seeds, 2 ** 31, "--seeds", "the seeds") or [args.seed]
    runs = [(m, seed) for m in mice for seed in seeds]
    results = []
    for m, seed in runs:
        result = run_pose_benchmark(args.cameras, args.frames, m, seed, args.backend,
                                    args.difficulty, variants, args.swap_rate, args.wrong_rate,
                                    args.omit_rate, args.malformed_rate)
        print(format_table(result), flush=True)
        results.append(result)
        data: dict = result
        if len(runs) > 1:  # the sessions so far and their pooled figures
            data = {"sessions": results, "pooled": pool_sessions(results)}
        if args.json is not None:  # after every session: an interrupted run keeps what it did
            atomic_write_text(args.json, json.dumps(data, indent=1, default=float))
    if len(runs) > 1:
        print(format_sessions_table(results, data["pooled"]))
    if args.json is not None:
        print(f"wrote {args.json}")
    return 0
