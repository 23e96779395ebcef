"""Synthetic multi-camera quantum-dot mouse sessions with exact ground truth (no Qt, no napari).

>>> from napari_behaviorvlm.synth import SynthConfig, simulate, write_synthetic_session
>>> sim = simulate(SynthConfig(n_cameras=6, n_frames=500, n_mice=2, seed=0))
>>> image = sim.render(camera=0, frame=10)            # uint8 (H, W)
>>> paths = write_synthetic_session(sim, "session")    # videos, calibration, truth, seeds

See docs/synthetic.md for the model, the difficulty knobs and every file written.
"""

from napari_behaviorvlm.synth.config import DIFFICULTIES, SynthConfig
from napari_behaviorvlm.synth.motion import BEHAVIORS
from napari_behaviorvlm.synth.simulate import SyntheticSession, simulate
from napari_behaviorvlm.synth.writer import (
    SyntheticTruth, choose_seed_frames, load_truth, seed_pose_table, write_synthetic_session,
)

__all__ = [
    "BEHAVIORS", "DIFFICULTIES", "SynthConfig", "SyntheticSession", "SyntheticTruth",
    "choose_seed_frames", "load_truth", "seed_pose_table", "simulate", "write_synthetic_session",
]
