"""Candidate detection in a helper process: same candidates, same labels, safe failure."""

from __future__ import annotations

import pickle
import subprocess

import numpy as np
import pytest

from napari_behaviorvlm.core.project import Project
from napari_behaviorvlm.pose import pipeline
from napari_behaviorvlm.pose.candidates import CandidateParams, detect_candidates
from napari_behaviorvlm.pose.detect_worker import DetectionWorker
from napari_behaviorvlm.synth.config import SynthConfig
from napari_behaviorvlm.synth.simulate import simulate
from napari_behaviorvlm.synth.writer import seed_pose_table, write_synthetic_session
from napari_behaviorvlm.video.session_io import load_session, open_session_videos

SEEDS = [10, 45, 80]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """3 cameras x 90 frames at 320x240 written as videos: ``(sim, session)``."""
    sim = simulate(SynthConfig(n_cameras=3, n_frames=90, width=320, height=240, seed=4))
    folder = tmp_path_factory.mktemp("worker") / "session"
    write_synthetic_session(sim, folder, seed_frames=SEEDS)
    return sim, load_session(folder)


def _project(sim, session) -> Project:
    return Project(session=session, skeleton=sim.skeleton, poses=seed_pose_table(sim, SEEDS))


def test_the_helper_detects_what_this_process_detects(written):
    _, session = written
    videos = open_session_videos(session)
    worker = DetectionWorker(session, CandidateParams())
    try:
        found = worker.detect([3, 0, 61])
        assert found is not None and set(found) == {(c, f) for c in range(3) for f in (0, 3, 61)}
        for (c, f), cand in found.items():
            img = np.asarray(videos[c][f])
            here = detect_candidates(img if img.ndim == 2 else img[..., 0])
            assert len(here) > 0
            assert np.array_equal(cand.xy, here.xy) and np.array_equal(cand.peak, here.peak)
            assert np.array_equal(cand.area, here.area)
        assert worker.alive
    finally:
        worker.close()
    assert not worker.alive
    worker.close()  # twice is harmless


def test_a_helper_that_cannot_read_the_videos_hands_the_work_back(written, tmp_path):
    _, session = written
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    cameras = [type(cam)(cam.name, str(broken)) for cam in session.cameras]
    bad = type(session)(cameras, session.fps, session.n_frames, session.calibration)
    worker = DetectionWorker(bad, CandidateParams())
    assert worker.detect([0, 1]) is None  # no exception: the caller detects itself
    assert not worker.alive


def test_labeling_with_the_helper_gives_the_labels_of_labeling_without_it(written, monkeypatch):
    sim, session = written
    used = []

    class CountingWorker(DetectionWorker):
        def detect(self, frames):
            found = super().detect(frames)
            used.append(found is not None)
            return found

    monkeypatch.setattr(pipeline, "DetectionWorker", CountingWorker)
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 2)
    with_helper = _project(sim, session)
    pipeline.run_labeling(with_helper)  # frames from the session's videos: the helper runs
    assert used and all(used)
    n_used = len(used)
    without = _project(sim, session)
    pipeline.run_labeling(without, frame_source=open_session_videos(session))
    assert len(used) == n_used  # a frame source of the caller's: no helper
    for name in ("points2d", "points3d", "flags", "source", "confidence", "reproj_error"):
        assert np.array_equal(getattr(with_helper.poses, name), getattr(without.poses, name),
                              equal_nan=True), name
    assert np.isfinite(with_helper.poses.points3d).any()


def test_a_session_that_cannot_be_sent_leaves_no_helper_behind(written, monkeypatch):
    _, session = written
    started = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
        DetectionWorker(lambda: session, CandidateParams())  # a lambda does not pickle
    assert started and started[0].poll() is not None  # ended, not waiting on its stdin


def test_a_run_cancelled_while_the_helper_works_resumes_to_the_same_labels(written, monkeypatch):
    sim, session = written
    monkeypatch.setattr(pipeline.os, "cpu_count", lambda: 2)
    whole = _project(sim, session)
    pipeline.run_labeling(whole)
    parts = _project(sim, session)
    calls = []
    first = pipeline.run_labeling(parts, should_stop=lambda: calls.append(1) or len(calls) > 30)
    assert first.cancelled and 0 < len(first.frames_done) < 87
    second = pipeline.run_labeling(parts)
    assert not second.cancelled
    assert set(first.frames_done) | set(second.frames_done) == set(range(90)) - set(SEEDS)
    for name in ("points2d", "points3d", "flags", "source"):
        assert np.array_equal(getattr(whole.poses, name), getattr(parts.poses, name),
                              equal_nan=True), name


def test_the_helper_run_by_hand_says_what_it_is():
    import sys

    done = subprocess.run([sys.executable, "-m", "napari_behaviorvlm.pose.detect_worker"],
                          input=b"hello\n", capture_output=True, timeout=60)
    assert done.returncode == 1
    assert b"helper process" in done.stderr and b"Traceback" not in done.stderr
