"""``behaviorvlm segment`` and ``behaviorvlm bench behavior``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_behaviorvlm.core.atomic import atomic_write_text, check_overwrite
from napari_behaviorvlm.vlm.commands import add_vlm_arguments, config_from_args

__all__ = ["register", "register_bench"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "segment", help="segment behavior into labeled bouts (local or VLM backend)",
        description="Over-segment into short clips, caption each clip, merge into labeled "
                    "segments, and save them in a project. Poses are used when the project has "
                    "any; otherwise features come from the video. Human segments in the project "
                    "are kept.")
    p.add_argument("source", metavar="SESSION_OR_PROJECT",
                   help="a .bvlm project, or a session folder / session.toml (a new project is made)")
    p.add_argument("--out", required=True, metavar="PROJECT",
                   help="project file to write (.bvlm); may be the input project itself")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out when it exists and is not the input project")
    p.add_argument("--backend", choices=("local", "vlm"), default="local",
                   help="local: kinematic captions + deterministic merge (default); "
                        "vlm: captions from video frames and LLM merge via an OpenAI-compatible server")
    add_vlm_arguments(p)
    p.add_argument("--clusters", type=int, default=10, help="k-means clusters per animal (10)")
    p.add_argument("--method", choices=("kmeans", "changepoint"), default="kmeans",
                   help="over-segmentation method (kmeans)")
    p.add_argument("--cameras", default="0", help="camera indices the VLM sees, e.g. 0,2 (0)")
    p.add_argument("--video-features", action="store_true",
                   help="cluster on video features even when poses exist")
    p.set_defaults(func=_segment, on_interrupt=_segment_interrupted)


def register_bench(bench_subparsers) -> None:
    p = bench_subparsers.add_parser(
        "behavior", help="behavior segmentation against humans (OFT) or simulator truth",
        description="--dataset oft-rearing-grooming PATH: our local path vs each of 3 raters and "
                    "rater vs rater (supported and all rearing). --synthetic: frame F1 per "
                    "behavior vs simulator truth, and segments/min before and after merging.")
    p.add_argument("--dataset", choices=("oft-rearing-grooming",), help="real dataset name")
    p.add_argument("path", nargs="?", help="dataset folder (with --dataset)")
    p.add_argument("--cross-session", action="store_true",
                   help="OFT: also tune the clip/merge parameters and the rear hold on one video "
                        "(small grid) and score them on the other, both ways (about a minute)")
    p.add_argument("--synthetic", action="store_true", help="run the synthetic benchmark")
    p.add_argument("--frames", type=int, default=3000, help="synthetic frames per session (3000)")
    p.add_argument("--mice", type=int, default=1, help="synthetic mice per session (1)")
    p.add_argument("--sessions", type=int, default=3,
                   help="synthetic sessions (seeds SEED..SEED+N-1)")
    p.add_argument("--seed", type=int, default=0,
                   help="synthetic: seed of the first session (0; e.g. 20 for a second check)")
    p.add_argument("--noise-mm", type=float, default=0.0,
                   help="synthetic: Gaussian error (mm, per axis) added to the true 3D poses (0)")
    p.add_argument("--dropout", type=float, default=0.0,
                   help="synthetic: fraction of keypoints removed at random (0)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.set_defaults(func=_bench)


# ------------------------------------------------------------------------- segment
def _progress_printer():
    last = [-1.0]

    def show(fraction: float, message: str) -> None:
        if fraction - last[0] >= 0.05 or fraction >= 1.0:
            last[0] = fraction
            print(f"[{fraction * 100:5.1f}%] {message}", file=sys.stderr, flush=True)

    return show


def _segment_interrupted(args: argparse.Namespace) -> str:
    kept = (" The model answers so far are cached beside it, so a rerun does not pay for them "
            "again." if args.backend == "vlm" else "")
    return f"{args.out} was not written (segments are saved at the end).{kept}"


def _segment(args: argparse.Namespace) -> int:
    from napari_behaviorvlm.behavior.overseg import OversegConfig
    from napari_behaviorvlm.behavior.pipeline import SegmentationConfig, run_segmentation
    from napari_behaviorvlm.core.project import PROJECT_SUFFIX, Project, load_project
    from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton

    src, out = Path(args.source), Path(args.out)
    if out.suffix != PROJECT_SUFFIX:
        raise ValueError(f"--out must be a {PROJECT_SUFFIX} project file, got {out}")
    same = out.exists() and src.exists() and out.resolve() == src.resolve()
    if not same:
        check_overwrite(out, args.overwrite)
    if src.suffix == PROJECT_SUFFIX:
        project = load_project(src)
    else:
        from napari_behaviorvlm.video.session_io import load_session

        project = Project.new(load_session(src), default_qd_mouse_skeleton())
    vlm = None
    if args.backend == "vlm":  # answers cached beside the project: a rerun costs no calls
        vlm = config_from_args(args, out.with_name(out.name + ".vlm-cache"))
    try:
        cameras = tuple(int(c) for c in args.cameras.split(",") if c.strip())
    except ValueError:
        raise ValueError(f"--cameras must be comma-separated integers, got {args.cameras!r}") from None
    config = SegmentationConfig(backend=args.backend, vlm=vlm, cameras=cameras,
                                overseg=OversegConfig(method=args.method, n_clusters=args.clusters),
                                use_video_features=args.video_features)
    start = time.perf_counter()
    table = run_segmentation(project, config, on_progress=_progress_printer())
    project.save(out)
    stats = project.settings["behavior"]["stats"]
    model = [s for s in table if s.source == "model"]
    print(f"{stats['n_clips']} clips -> {len(model)} model segments "
          f"({len(table) - len(model)} human segments kept) in {time.perf_counter() - start:.1f} s; "
          f"saved {out}")
    if args.backend == "vlm":
        usage = stats.get("usage", {})
        print(f"VLM: {usage.get('calls', 0)} calls, {usage.get('cache_hits', 0)} cache hits, "
              f"{stats.get('flagged', 0)} clips flagged, {stats.get('merge_fallbacks', 0)} merge "
              "fallbacks")
    counts: dict[str, int] = {}
    for s in model:
        counts[s.label] = counts.get(s.label, 0) + s.n_frames
    for label, n in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {label:18s} {n:7d} frames")
    return 0


# ------------------------------------------------------------------------- bench
def _write_json(path: str | None, data: dict, overwrite: bool) -> None:
    if path:
        check_overwrite(path, overwrite)
        atomic_write_text(path, json.dumps(data, indent=1, default=float))
        print(f"wrote {path}")


def _bench(args: argparse.Namespace) -> int:
    if args.synthetic == bool(args.dataset):
        raise ValueError("give either --dataset oft-rearing-grooming PATH or --synthetic")
    if args.dataset:
        if not args.path:
            raise ValueError("--dataset needs the dataset folder PATH")
        data = bench_oft(args.path, cross=args.cross_session)
    else:
        data = bench_synthetic(args.frames, args.mice, args.sessions, args.noise_mm, args.dropout,
                               args.seed)
    _write_json(args.json, data, args.overwrite)
    return 0


def bench_oft(path: str | Path, cross: bool = False) -> dict[str, Any]:
    """Run and print the OFT benchmark (and the two-fold cross-session check when ``cross``);
    return its JSON-ready results."""
    from napari_behaviorvlm.behavior.oft import (
        REAR_HOLD_S,
        TUNED_ON,
        cross_session,
        evaluate_oft,
        list_oft_sessions,
        load_oft_session,
        predict_oft,
    )

    results = []
    tuning = load_oft_session(path, TUNED_ON)
    for name in list_oft_sessions(path):
        session = load_oft_session(path, name)
        pred, stats = predict_oft(session, training=tuning)
        res = evaluate_oft(session, pred)
        res["role"] = "tuning session" if name == TUNED_ON else "held out"
        res["clips"], res["segments"] = stats["n_clips"], stats["n_segments"]
        results.append(res)
    print("OFT rearing (DLC 2D pose, first 80 s, 25 fps); local path = kinematic captions + merge"
          f" + {REAR_HOLD_S:g} s rear hold, then a rear model trained on {TUNED_ON}'s raters")
    print(f"parameters chosen on {TUNED_ON} only (its own row: each time block predicted by a "
          "model fit on the other blocks); the other video is held out")
    header = (f"{'video':22s} {'role':15s} {'task':10s} {'metric':10s} {'ours/rater':>28s} "
              f"{'ours':>6s} {'raters':>7s} {'gap':>6s}")
    print(header)
    for res in results:
        for task in ("supported", "all"):
            r = res[task]
            for metric, key in (("frame F1", "frame_f1"), ("seg F1@.25", "seg_f1_25")):
                each = " ".join(f"{v[key]:.3f}" for v in r["ours_vs_rater"].values())
                ours, raters = r["ours_mean"][key], r["raters_mean"][key]
                print(f"{res['video']:22s} {res['role']:15s} {task:10s} {metric:10s} {each:>28s} "
                      f"{ours:6.3f} {raters:7.3f} {raters - ours:6.3f}")
    print("rater-vs-rater frame F1 (supported): " + "; ".join(
        f"{res['video'][:4]} " + ", ".join(f"{k} {v['frame_f1']:.3f}"
                                           for k, v in res["supported"]["rater_vs_rater"].items())
        for res in results))
    print("grooming, scored frames per rater / ours (too rare here for an agreement figure; "
          "scores are in the JSON): " + "; ".join(
              f"{res['video'][:4]} " + "/".join(str(n) for n in res["groom"]["rater_frames"].values())
              + f" / {res['groom']['our_frames']}" for res in results))
    data: dict[str, Any] = {"benchmark": "oft-rearing-grooming", "videos": results}
    if cross:
        folds = cross_session(path)
        print("cross-session (grid-tuned on one video, scored on the other; mean over raters):")
        for fold in folds:
            t = fold["test"]
            print(f"  tuned on {fold['tuned_on'][:4]} -> {fold['tested_on'][:4]} {fold['method']} "
                  f"{fold['params']} {fold['model_params'] or ''}: "
                  + "; ".join(f"{task} frame F1 {t[task]['ours']['frame_f1']:.3f} "
                              f"(raters {t[task]['raters']['frame_f1']:.3f}), seg F1@.25 "
                              f"{t[task]['ours']['seg_f1_25']:.3f} "
                              f"(raters {t[task]['raters']['seg_f1_25']:.3f})"
                              for task in ("supported", "all")))
        data["cross_session"] = folds
    return data


def bench_synthetic(n_frames: int, n_mice: int, n_sessions: int, noise_mm: float = 0.0,
                    dropout: float = 0.0, first_seed: int = 0) -> dict[str, Any]:
    """Local path on simulated sessions (seeds ``first_seed..first_seed + n_sessions - 1``; true
    3D poses, optionally with ``noise_mm`` Gaussian error and a ``dropout`` fraction of missing
    keypoints): frame F1 per behavior, segments per minute before/after merging, boundary recall
    and precision of the merged segments (tolerance 0.5 s)."""
    if noise_mm < 0 or not 0 <= dropout < 1:
        raise ValueError("--noise-mm must be >= 0 and --dropout in [0, 1)")
    if n_sessions < 1 or n_mice < 1:
        raise ValueError("--sessions and --mice must be at least 1")
    from napari_behaviorvlm.behavior import metrics
    from napari_behaviorvlm.behavior.pipeline import (
        SegmentationConfig,
        SegmentationInputs,
        segment_inputs,
    )
    from napari_behaviorvlm.synth.config import SynthConfig
    from napari_behaviorvlm.synth.simulate import simulate

    preds, truths, clip_labels = [], [], []
    fps = None
    t0 = time.perf_counter()
    for seed in range(first_seed, first_seed + n_sessions):
        sim = simulate(SynthConfig(n_frames=n_frames, n_mice=n_mice, seed=seed))
        fps = sim.config.fps
        rng = np.random.default_rng(1000 + seed)
        points = sim.points3d + rng.normal(0.0, noise_mm, sim.points3d.shape)
        points[rng.random(points.shape[:3]) < dropout] = np.nan
        inputs = SegmentationInputs(n_frames=sim.n_frames, fps=fps,
                                    individuals=list(sim.individual_names),
                                    points=points, keypoint_names=sim.keypoint_names)
        result = segment_inputs(inputs, SegmentationConfig())
        for m, name in enumerate(sim.individual_names):
            preds.append(result.segments.frame_labels(sim.n_frames, name))
            truths.append(np.asarray(sim.behavior[:, m], dtype=object))
            ids = np.zeros(sim.n_frames, dtype=object)
            for k, clip in enumerate(c for c in result.clips if c.subject == name):
                ids[clip.start:clip.end + 1] = f"clip{k}"
            clip_labels.append(ids)
    seconds = time.perf_counter() - t0
    tol = int(round(0.5 * fps))
    labels = sorted({str(x) for t in truths for x in t})
    # metrics per animal track, pooled: frame F1 over concatenated frames; boundaries summed
    pred_all, truth_all = np.concatenate(preds), np.concatenate(truths)
    f1 = {lab: metrics.frame_f1(pred_all, truth_all, lab) for lab in labels}
    seg_f1 = {f"{t:.2f}": float(np.mean([metrics.segmental_f1(p, r, t) for p, r in zip(preds, truths)]))
              for t in (0.10, 0.25, 0.50)}
    edit = float(np.mean([metrics.edit_score(p, r) for p, r in zip(preds, truths)]))

    def pooled(seqs):  # boundary (recall, precision) over every animal track
        matched = total = predicted = 0
        for p, r in zip(seqs, truths):
            b = metrics.boundary_f1(p, r, tol)
            n = len(metrics.boundaries(r))
            matched += b["recall"] * n if n else 0
            total += n
            predicted += len(metrics.boundaries(p))
        return (matched / total if total else float("nan"),
                matched / predicted if predicted else float("nan"))

    spm = {
        "truth": float(np.mean([metrics.segments_per_minute(r, fps) for r in truths])),
        "overseg": float(np.mean([metrics.segments_per_minute(c, fps) for c in clip_labels])),
        "merged": float(np.mean([metrics.segments_per_minute(p, fps) for p in preds])),
    }
    out = {
        "benchmark": "synthetic", "sessions": n_sessions, "first_seed": first_seed,
        "frames": n_frames, "mice": n_mice,
        "noise_mm": noise_mm, "dropout": dropout,
        "fps": fps, "seconds": seconds, "frame_accuracy": metrics.frame_accuracy(pred_all, truth_all),
        "frame_f1": f1, "segmental_f1": seg_f1, "edit_score": edit,
        "segments_per_minute": spm,
        "merge_reduction": 1.0 - spm["merged"] / spm["overseg"],
        "boundary_recall": {"overseg": pooled(clip_labels)[0], "merged": pooled(preds)[0],
                            "tol_frames": tol},
        "boundary_precision_merged": pooled(preds)[1],
    }
    print(f"synthetic: {n_sessions} sessions (seeds {first_seed}..{first_seed + n_sessions - 1}) "
          f"x {n_frames} frames x {n_mice} mice at {fps:g} fps "
          f"(true 3D poses + {noise_mm:g} mm noise, {dropout:.0%} dropout), local path, "
          f"{seconds:.1f} s")
    print("frame F1: " + ", ".join(f"{k} {v:.3f}" for k, v in f1.items())
          + f"; accuracy {out['frame_accuracy']:.3f}")
    print("segmental F1 @0.10/0.25/0.50: " + "/".join(f"{v:.3f}" for v in seg_f1.values())
          + f"; edit score {edit:.3f}")
    print(f"segments per minute: truth {spm['truth']:.1f}, over-segmentation {spm['overseg']:.1f}, "
          f"merged {spm['merged']:.1f} (merging removes {out['merge_reduction'] * 100:.0f}%)")
    print(f"boundary recall within {tol} frames: over-segmentation "
          f"{out['boundary_recall']['overseg']:.3f}, merged {out['boundary_recall']['merged']:.3f} "
          f"(merged boundary precision {out['boundary_precision_merged']:.3f})")
    return out
