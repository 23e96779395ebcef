"""``behaviorvlm bench pose``: the pose pipeline on a synthetic session with known truth.

The session is simulated (:mod:`napari_behaviorvlm.synth`), written as H.264 videos (so
compression artifacts count) with 3 seed frames, read back through the session loader, and
labeled from the seeds by each variant:

- ``naive``: no regions (every keypoint matched at once), no 3D refinement (views tracked
  independently, plain triangulation);
- ``no_refinement``: regions, no 3D refinement;
- ``full``: the whole pipeline.

For the ``vlm`` and ``hybrid`` backends a :class:`~napari_behaviorvlm.vlm.testing.TestDoubleChatServer`
on 127.0.0.1 plays the model: :class:`GroundTruthTestDouble` answers from the simulator's truth
with injected errors (left/right swaps, a wrong candidate, omissions; rates configurable). It is
a test double, not a model: its figures measure how the pipeline copes with those errors.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from napari_behaviorvlm.core.project import Project
from napari_behaviorvlm.pose.metrics import evaluate_poses
from napari_behaviorvlm.pose.pipeline import LabelingConfig, run_labeling

__all__ = ["GroundTruthTestDouble", "VARIANTS", "blas_kernel", "format_sessions_table",
           "format_table", "pool_sessions", "run_pose_benchmark"]

VARIANTS = {
    "naive": {"use_regions": False, "use_refinement": False},
    "no_refinement": {"use_regions": True, "use_refinement": False},
    "full": {"use_regions": True, "use_refinement": True},
    "both_directions": {"use_regions": True, "use_refinement": True, "both_directions": True},
}

_HEAD = re.compile(r'Frame (\d+), camera (\S+), region "([^"]+)" with keypoints: ([^\n]+?)\.\s*$',
                   re.MULTILINE)
_CAND = re.compile(r"(\d+) at \(x=(-?[\d.]+), y=(-?[\d.]+)\)")


@attrs.define(eq=False)
class GroundTruthTestDouble:
    """TEST DOUBLE responder for :class:`~napari_behaviorvlm.vlm.testing.TestDoubleChatServer`:
    answers ``pose_assign`` questions from the ground truth, with injected errors. Not a model.

    For each keypoint of the question it picks the drawn candidate within ``match_px`` of the
    true 2D position (null when the dot is not visible or not drawn), then, deterministically
    per question: swaps a left/right pair with probability ``swap_rate``, replaces a keypoint's
    candidate by another drawn one with ``wrong_rate``, answers null with ``omit_rate``.

    Attributes:
        points2d: ``(C, F, M, K, 2)`` true px; ``visible`` ``(C, F, M, K)``.
        camera_names, individual_names, keypoint_names: Names used in the questions.
        symmetry: Left/right pairs of keypoint names.
        injected: Counters of the injected errors (``swap``, ``wrong``, ``omit``, ``answers``).
    """

    points2d: np.ndarray
    visible: np.ndarray
    camera_names: list[str]
    individual_names: list[str]
    keypoint_names: list[str]
    symmetry: list[tuple[str, str]]
    swap_rate: float = 0.1
    wrong_rate: float = 0.1
    omit_rate: float = 0.05
    match_px: float = 3.0
    seed: int = 0
    injected: dict[str, int] = attrs.field(factory=lambda: {"answers": 0, "swap": 0, "wrong": 0, "omit": 0})
    _lock: Any = attrs.field(factory=threading.Lock)

    def __call__(self, request_json: dict) -> dict:
        from napari_behaviorvlm.vlm.testing import request_text

        text = request_text(request_json)
        head = _HEAD.search(text)
        if head is None:
            raise ValueError("the test double only answers pose_assign questions")
        frame, camera, region = int(head.group(1)), head.group(2), head.group(3)
        names = [n.strip() for n in head.group(4).split(",")]
        cands = {int(n): (float(x), float(y)) for n, x, y in _CAND.findall(text.split("Candidates drawn:", 1)[-1])}
        m = 0
        if " of " in region:
            m = self.individual_names.index(region.rsplit(" of ", 1)[1])
        c = self.camera_names.index(camera)
        numbers = sorted(cands)
        xy = np.array([cands[n] for n in numbers]) if numbers else np.zeros((0, 2))
        answer: dict[str, int | None] = {}
        for name in names:
            k = self.keypoint_names.index(name)
            pick = None
            if self.visible[c, frame, m, k] and len(xy):
                d = np.linalg.norm(xy - self.points2d[c, frame, m, k], axis=1)
                j = int(d.argmin())
                if d[j] < self.match_px:
                    pick = numbers[j]
            answer[name] = pick
        rng = np.random.default_rng([self.seed, frame, c, m, zlib.crc32(region.encode())])
        counts = {"swap": 0, "wrong": 0, "omit": 0}
        for a, b in self.symmetry:
            if a in answer and b in answer and rng.random() < self.swap_rate:
                answer[a], answer[b] = answer[b], answer[a]
                counts["swap"] += 1
        for name in names:
            r = rng.random()
            if r < self.wrong_rate and len(numbers) > 1:
                used = {v for v in answer.values() if v is not None}
                free = [n for n in numbers if n not in used]
                if free:
                    answer[name] = int(rng.choice(free))
                    counts["wrong"] += 1
            elif r < self.wrong_rate + self.omit_rate and answer[name] is not None:
                answer[name] = None
                counts["omit"] += 1
        with self._lock:
            self.injected["answers"] += 1
            for key, value in counts.items():
                self.injected[key] += value
        return {"assignments": [{"keypoint": n, "candidate": answer[n], "confidence": 0.9}
                                for n in names]}


def _project(session_dir: Path, sim) -> Project:
    from napari_behaviorvlm.io.labels_csv import read_labels_csv
    from napari_behaviorvlm.video.session_io import load_session

    session = load_session(session_dir)
    project = Project.new(session, sim.skeleton, list(sim.individual_names))
    read_labels_csv(session_dir / "seeds.csv", project.poses)
    return project


def blas_kernel() -> str:
    """The BLAS libraries loaded, each with the package that ships it, its version and the CPU
    kernel it runs (e.g. ``numpy openblas 0.3.31 Haswell; scipy openblas 0.3.30 Haswell``).

    The pipeline makes discrete choices (assignments, RANSAC inliers, thresholds) on
    floating-point sums, so a BLAS kernel that rounds the last bit differently can flip a close
    call and, through the temporal window, the frames after it: figures are reproducible bit for
    bit only on the same kernels (``OPENBLAS_CORETYPE`` chooses them)."""
    from threadpoolctl import threadpool_info

    out = []
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        package = Path(info.get("filepath", "")).parent.name.removesuffix(".libs")
        out.append(" ".join(str(v) for v in (package, info.get("internal_api"),
                                            info.get("version"), info.get("architecture")) if v))
    return "; ".join(out) or "unknown"


def run_pose_benchmark(n_cameras: int = 6, n_frames: int = 500, n_mice: int = 1, seed: int = 0,
                       backend: str = "local", difficulty: str = "default",
                       variants: list[str] | None = None, swap_rate: float = 0.1,
                       wrong_rate: float = 0.1, omit_rate: float = 0.05,
                       malformed_rate: float = 0.0, workdir: str | Path | None = None,
                       log=print) -> dict[str, Any]:
    """Simulate, write, label from 3 seeds and score; returns the result dictionary.

    Args:
        backend: ``local``, ``vlm`` or ``hybrid`` (the latter two against the test double; the
            hybrid run also runs ``vlm`` full for the equal-accuracy comparison).
        variants: Subset of :data:`VARIANTS` (default: naive, no_refinement and full).
        swap_rate, wrong_rate, omit_rate, malformed_rate: Test-double error injection.
        workdir: Where to write the session (a temporary folder when None).
    """
    from napari_behaviorvlm.synth.config import SynthConfig
    from napari_behaviorvlm.synth.simulate import simulate
    from napari_behaviorvlm.synth.writer import choose_seed_frames, write_synthetic_session

    variants = variants or ["naive", "no_refinement", "full"]
    config = SynthConfig.preset(difficulty, n_cameras=n_cameras, n_frames=n_frames,
                                n_mice=n_mice, seed=seed)
    sim = simulate(config)
    seeds = choose_seed_frames(sim)
    result: dict[str, Any] = {
        "config": {"cameras": n_cameras, "frames": n_frames, "mice": n_mice, "seed": seed,
                   "difficulty": difficulty, "backend": backend, "seed_frames": seeds,
                   "blas": blas_kernel()},
        "variants": {},
    }
    eval_frames = [f for f in range(n_frames) if f not in seeds]
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        session_dir = Path(tmp) / "session"
        t0 = time.perf_counter()
        write_synthetic_session(sim, session_dir, seed_frames=seeds)
        log(f"synthetic session written in {time.perf_counter() - t0:.1f} s ({session_dir})")
        runs: list[tuple[str, str, dict]] = [(v, backend, VARIANTS[v]) for v in variants]
        if backend == "hybrid":
            runs.append(("full_all_vlm", "vlm", VARIANTS["full"]))
        server = double = vlm_config = None
        try:
            if backend in ("vlm", "hybrid"):
                from napari_behaviorvlm.vlm import VLMConfig
                from napari_behaviorvlm.vlm.testing import TestDoubleChatServer

                double = GroundTruthTestDouble(
                    sim.points2d, sim.visible, sim.camera_names, list(sim.individual_names),
                    sim.keypoint_names, sim.skeleton.symmetry, swap_rate, wrong_rate, omit_rate,
                    seed=seed)
                server = TestDoubleChatServer(double, malformed_rate=malformed_rate, seed=seed)
                server.__enter__()
                os.environ.setdefault("BEHAVIORVLM_TEST_DOUBLE_KEY", "test-double")
                vlm_config = VLMConfig(base_url=server.base_url, model=server.model,
                                       api_key_env="BEHAVIORVLM_TEST_DOUBLE_KEY", cache_dir=None,
                                       concurrency=4, backoff_base_s=0.01)
            for name, run_backend, switches in runs:
                project = _project(session_dir, sim)
                cfg = LabelingConfig(backend=run_backend, vlm=vlm_config, **switches)
                before = dict(double.injected) if double else None
                rep = run_labeling(project, config=cfg)
                metrics = evaluate_poses(project.poses, sim.skeleton, sim.points3d, sim.points2d,
                                         sim.visible, eval_frames)
                metrics["frames_per_second"] = rep.frames_per_second
                metrics["seconds"] = rep.seconds
                metrics["vlm_calls"] = rep.vlm_calls
                metrics["vlm_calls_per_view_frame"] = rep.vlm_calls / max(rep.view_frames, 1)
                metrics["stage4_changed"] = rep.n_changed
                metrics["stage4_dropped"] = rep.n_dropped
                if double is not None:
                    metrics["injected"] = {k: double.injected[k] - before[k] for k in double.injected}
                result["variants"][name] = metrics
                log(f"{name:>15}: mean {metrics['mean_3d_error_mm']:.2f} mm, "
                    f"{metrics['frames_per_second']:.1f} frames/s")
        finally:
            if server is not None:
                server.__exit__(None, None, None)
    full = result["variants"].get("full")
    naive = result["variants"].get("naive")
    if full and naive and naive["mean_3d_error_mm"]:
        result["error_reduction_vs_naive"] = 1.0 - full["mean_3d_error_mm"] / naive["mean_3d_error_mm"]
    return result


_RATIO_COLUMNS = ("flag_recall", "flag_precision", "located_flag_recall", "coverage", "pck_5px",
                  "swap_flag_share")


def _cell(values: dict[str, Any], column: str) -> str:
    """One table cell: the swap rate in percent with 2 decimals (0.05 % and 0.10 % must not
    both print as 0.001), other ratios with 3 decimals, other figures with 2."""
    value = values.get(column)
    if column == "identity_swap_rate" and value is not None:
        return f"{100 * value:>8.2f}"
    return f"{_fmt(value, 3 if column in _RATIO_COLUMNS else 2):>8}"


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of :func:`run_pose_benchmark`'s result."""
    cfg = result["config"]
    lines = [f"bench pose: {cfg['cameras']} cameras, {cfg['frames']} frames, {cfg['mice']} mice, "
             f"seed {cfg['seed']}, {cfg['difficulty']} difficulty, backend {cfg['backend']}, "
             f"seed frames {cfg['seed_frames']}, BLAS {cfg.get('blas', 'unknown')}"]
    cols = ["mean_3d_error_mm", "median_3d_error_mm", "p95_3d_error_mm", "coverage", "pck_5px",
            "identity_swap_rate", "swap_flag_share", "flag_recall", "flag_precision",
            "located_flag_recall", "frames_per_second", "vlm_calls_per_view_frame"]
    short = ["mean mm", "median", "p95", "cover", "PCK5", "swap %", "swapF", "flagR", "flagP",
             "flagR3D", "fr/s", "calls/vf"]
    lines.append(f"{'variant':>15} " + " ".join(f"{s:>8}" for s in short))
    for name, m in result["variants"].items():
        lines.append(f"{name:>15} " + " ".join(_cell(m, c) for c in cols))
    full = result["variants"].get("full")
    if full:
        regions = ", ".join(f"{r} {_fmt(v['mean_3d_error_mm'])}" for r, v in full["per_region"].items())
        lines.append(f"full, per region (mean mm): {regions}")
    for name, m in result["variants"].items():
        if "per_individual" in m:
            swaps = m.get("per_individual_swap_rate", {})
            lines.append(f"{name}, per individual (mean mm, swap %): " + ", ".join(
                f"{k} {_fmt(v)}" + (f" {100 * swaps[k]:.2f}" if k in swaps else "")
                for k, v in m["per_individual"].items())
                + f"; frames with an individual exchange: {m['individual_exchange_frames']}")
    if full and "injected" in full:
        lines.append(f"test double injected errors (full run): {full['injected']}")
    if "error_reduction_vs_naive" in result:
        lines.append(f"error reduction full vs naive: {100 * result['error_reduction_vs_naive']:.0f} %")
    return "\n".join(lines)


def pool_sessions(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Figures over several :func:`run_pose_benchmark` results, per variant, with every
    evaluated keypoint of every session counted once (not a mean of the sessions' ratios):
    ``mean_3d_error_mm``, ``coverage``, ``identity_swap_rate``, ``flag_recall``,
    ``flag_precision``, ``located_flag_recall``, ``swap_flag_share``, the summed
    ``individual_exchange_frames``, the median ``frames_per_second`` and ``sessions``. Variants missing from a session are pooled over the
    sessions that ran them."""
    pooled: dict[str, dict[str, Any]] = {}
    names = list(dict.fromkeys(name for r in results for name in r["variants"]))
    for name in names:
        runs = [r["variants"][name] for r in results if name in r["variants"]]
        total = {k: sum(m[k] for m in runs) for k in (
            "n_located", "n_evaluated", "n_swapped", "n_swapped_flagged", "n_bad", "n_flagged",
            "n_flagged_bad", "n_located_bad", "n_located_flagged_bad", "sum_3d_error_mm",
            "individual_exchange_frames")}
        pooled[name] = {
            "sessions": len(runs),
            "mean_3d_error_mm": total["sum_3d_error_mm"] / total["n_located"]
            if total["n_located"] else None,
            "coverage": total["n_located"] / max(total["n_evaluated"], 1),
            "identity_swap_rate": total["n_swapped"] / max(total["n_located"], 1),
            "swap_flag_share": total["n_swapped_flagged"] / total["n_swapped"]
            if total["n_swapped"] else None,
            "flag_recall": total["n_flagged_bad"] / total["n_bad"] if total["n_bad"] else 1.0,
            "flag_precision": total["n_flagged_bad"] / total["n_flagged"]
            if total["n_flagged"] else 1.0,
            "located_flag_recall": total["n_located_flagged_bad"] / total["n_located_bad"]
            if total["n_located_bad"] else 1.0,
            "individual_exchange_frames": total["individual_exchange_frames"],
            "frames_per_second": float(np.median([m["frames_per_second"] for m in runs])),
        }
    return pooled


def format_sessions_table(results: list[dict[str, Any]], pooled: dict[str, dict[str, Any]]) -> str:
    """One row per session and variant, then the pooled rows (:func:`pool_sessions`)."""
    cols = ["mean_3d_error_mm", "coverage", "identity_swap_rate", "swap_flag_share",
            "flag_recall", "flag_precision", "located_flag_recall", "individual_exchange_frames",
            "frames_per_second"]
    short = ["mean mm", "cover", "swap %", "swapF", "flagR", "flagP", "flagR3D", "exch", "fr/s"]
    blas = results[0]["config"].get("blas", "unknown") if results else "unknown"
    lines = [f"bench pose, {len(results)} sessions; BLAS {blas}",
             f"{'mice':>4} {'seed':>4} {'variant':>15} " + " ".join(f"{c:>8}" for c in short)]

    for r in results:
        for name, m in r["variants"].items():
            lines.append(f"{r['config']['mice']:>4} {r['config']['seed']:>4} {name:>15} "
                         + " ".join(_cell(m, c) for c in cols))
    for name, m in pooled.items():
        lines.append(f"{'pooled':>9} {name:>15} " + " ".join(_cell(m, c) for c in cols)
                     + f"   ({m['sessions']} sessions; every keypoint counted once, fr/s median)")
    return "\n".join(lines)
