"""Labeling speed with and without the detection helper process, alternating in one process.

    python benchmarks/detect_helper_ab.py [--mice 1] [--runs 3] [--frames 500] [--seed 0]

Writes the default synthetic session (6 cameras) to a temporary folder, then labels it from its
3 seed frames ``--runs`` times each way, alternating: "helper" is ``run_labeling`` as shipped
(candidates detected ahead in :mod:`napari_behaviorvlm.pose.detect_worker`), "in-process"
the same call with the helper switched off. Prints the multi-view frames/s of every run, the
medians and their ratio, and whether both ways gave the same labels, flags and 3D points.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from napari_behaviorvlm.pose import pipeline
from napari_behaviorvlm.pose.benchmark import _project
from napari_behaviorvlm.synth.config import SynthConfig
from napari_behaviorvlm.synth.simulate import simulate
from napari_behaviorvlm.synth.writer import choose_seed_frames, write_synthetic_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mice", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sim = simulate(SynthConfig.preset("default", n_cameras=6, n_frames=args.frames,
                                      n_mice=args.mice, seed=args.seed))
    shipped = pipeline._start_detection_worker
    ways = {"in-process": lambda *a: None, "helper": shipped}
    speed: dict[str, list[float]] = {name: [] for name in ways}
    poses = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "session"
        write_synthetic_session(sim, folder, seed_frames=choose_seed_frames(sim))
        try:
            for run in range(args.runs):
                for name, start in ways.items():
                    pipeline._start_detection_worker = start
                    project = _project(folder, sim)
                    report = pipeline.run_labeling(project)
                    speed[name].append(report.frames_per_second)
                    poses[name] = project.poses
                    print(f"run {run + 1} {name:10s} {report.frames_per_second:6.2f} frames/s")
        finally:
            pipeline._start_detection_worker = shipped
    med = {name: float(np.median(v)) for name, v in speed.items()}
    a, b = poses["in-process"], poses["helper"]
    same = all(np.array_equal(getattr(a, k), getattr(b, k), equal_nan=True)
               for k in ("points2d", "points3d", "flags", "source", "confidence"))
    print(f"median frames/s: in-process {med['in-process']:.2f}, helper {med['helper']:.2f}, "
          f"ratio {med['helper'] / med['in-process']:.3f}; identical output: {same}")


if __name__ == "__main__":
    main()
