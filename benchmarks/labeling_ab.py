"""Labeling speed of this tree against another checkout, as alternating processes.

    git worktree add /tmp/before REV
    python benchmarks/labeling_ab.py /tmp/before/src [--mice 1] [--runs 3] [--frames 500] [--seed 0]

Writes the default synthetic session (6 cameras) to a temporary folder once, then labels it from
its 3 seed frames ``--runs`` times with each tree, alternating "before" and "this tree": each
run is a fresh Python process with that tree's ``src`` first on ``PYTHONPATH`` calling
``run_labeling`` (detection helper included), as the bench does. Prints the multi-view
frames/s of every run, the medians and their ratio, and whether both trees gave the same
labels, flags, sources and confidences (and how far apart their 3D points are).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from napari_behaviorvlm.synth.config import SynthConfig
from napari_behaviorvlm.synth.simulate import simulate
from napari_behaviorvlm.synth.writer import choose_seed_frames, write_synthetic_session

# run in a child process with one tree on PYTHONPATH: label the written session, save the poses
_CHILD = """
import sys
from pathlib import Path
import numpy as np
from napari_behaviorvlm.pose.benchmark import _project
from napari_behaviorvlm.pose.pipeline import run_labeling
from napari_behaviorvlm.synth.config import SynthConfig
from napari_behaviorvlm.synth.simulate import simulate
folder, mice, frames, seed, out = sys.argv[1:6]
sim = simulate(SynthConfig.preset("default", n_cameras=6, n_frames=int(frames),
                                  n_mice=int(mice), seed=int(seed)))
project = _project(Path(folder), sim)
report = run_labeling(project)
p = project.poses
np.savez(out, points2d=p.points2d, points3d=p.points3d, flags=p.flags, source=p.source,
         confidence=p.confidence)
print(report.frames_per_second)
"""

_COMPARED = ("points2d", "flags", "source", "confidence")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="the other checkout's src folder")
    parser.add_argument("--mice", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not (args.before / "napari_behaviorvlm").is_dir():
        sys.exit(f"{args.before} holds no napari_behaviorvlm package: pass a checkout's src folder")
    trees = {"before": args.before.resolve(),
             "this tree": (Path(__file__).resolve().parents[1] / "src")}
    sim = simulate(SynthConfig.preset("default", n_cameras=6, n_frames=args.frames,
                                      n_mice=args.mice, seed=args.seed))
    speed: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "session"
        write_synthetic_session(sim, folder, seed_frames=choose_seed_frames(sim))
        for run in range(args.runs):
            for name, src in trees.items():
                out = Path(tmp) / f"{name.replace(' ', '_')}.npz"
                env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                    [str(src)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
                done = subprocess.run(
                    [sys.executable, "-c", _CHILD, str(folder), str(args.mice), str(args.frames),
                     str(args.seed), str(out)], env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"the {name} run failed:\n{done.stderr}")
                speed[name].append(float(done.stdout.split()[-1]))
                print(f"run {run + 1} {name:9s} {speed[name][-1]:6.2f} frames/s", flush=True)
        a, b = (np.load(Path(tmp) / f"{name.replace(' ', '_')}.npz") for name in trees)
        same = all(np.array_equal(a[k], b[k], equal_nan=True) for k in _COMPARED)
        gap = float(np.nanmax(np.abs(a["points3d"] - b["points3d"]), initial=0.0))
    med = {name: float(np.median(v)) for name, v in speed.items()}
    print(f"median frames/s: before {med['before']:.2f}, this tree {med['this tree']:.2f}, "
          f"ratio {med['this tree'] / med['before']:.3f}; same labels, flags, sources and "
          f"confidences: {same}; 3D points within {gap:.1e} mm")


if __name__ == "__main__":
    main()
