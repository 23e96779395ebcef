"""Small synthetic sessions shared by the simulator tests (simulated once per test session)."""

from __future__ import annotations

import pytest

from napari_behaviorvlm.synth import SynthConfig, simulate, write_synthetic_session


@pytest.fixture(scope="session")
def small_sim():
    """3 cameras x 30 frames at 320x240, one mouse, default difficulty."""
    return simulate(SynthConfig(n_cameras=3, n_frames=30, width=320, height=240, seed=3))


@pytest.fixture(scope="session")
def two_mice_sim():
    """3 cameras x 900 frames (30 s) at 320x240 with two mice (simulation only)."""
    return simulate(SynthConfig(n_cameras=3, n_frames=900, n_mice=2, width=320, height=240, seed=1))


@pytest.fixture(scope="session")
def written_session(small_sim, tmp_path_factory):
    """``small_sim`` written to disk: ``(folder, paths)``."""
    folder = tmp_path_factory.mktemp("synth") / "session"
    return folder, write_synthetic_session(small_sim, folder)
