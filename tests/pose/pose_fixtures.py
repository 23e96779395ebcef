"""Shared fixtures of the pose tests: small simulated sessions labeled in memory.

Images come straight from the simulator's renderer (cached), not from video files, so the
tests stay fast; ``behaviorvlm bench pose`` covers the path through written videos.
"""

from __future__ import annotations

import functools

import numpy as np

from napari_behaviorvlm.core.project import Project
from napari_behaviorvlm.core.session import CameraSource, Session
from napari_behaviorvlm.synth.config import SynthConfig
from napari_behaviorvlm.synth.simulate import simulate
from napari_behaviorvlm.synth.writer import choose_seed_frames, seed_pose_table


@functools.lru_cache(maxsize=4)
def small_sim(n_cameras: int = 4, n_frames: int = 40, n_mice: int = 1, seed: int = 0):
    """(sim, seed_frames, frame_source) with every rendered image cached."""
    sim = simulate(SynthConfig(n_cameras=n_cameras, n_frames=n_frames, n_mice=n_mice, seed=seed))
    seeds = choose_seed_frames(sim)
    cache: dict = {}

    def source(camera: int, frame: int) -> np.ndarray:
        key = (camera, frame)
        if key not in cache:
            cache[key] = sim.render(camera, frame)
        return cache[key]

    return sim, seeds, source


def new_project(sim, seeds) -> Project:
    """A project on the simulated rig holding the seed frames' visible true 2D labels."""
    session = Session([CameraSource(n, f"{n}.mp4") for n in sim.camera_names], sim.config.fps,
                      sim.n_frames, sim.calibration)
    return Project(session=session, skeleton=sim.skeleton, poses=seed_pose_table(sim, seeds))
