"""The VLM and hybrid reasoners end to end over real HTTP, against a TEST DOUBLE server.

The server (:class:`~napari_behaviorvlm.vlm.testing.TestDoubleChatServer`) is not a model: its
responder (:class:`~napari_behaviorvlm.pose.benchmark.GroundTruthTestDouble`) answers from the
simulator's ground truth with injected errors.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_behaviorvlm.core.pose import Flag, Source
from napari_behaviorvlm.pose.benchmark import GroundTruthTestDouble
from napari_behaviorvlm.pose.metrics import evaluate_poses
from napari_behaviorvlm.pose.pipeline import LabelingConfig, run_labeling
from napari_behaviorvlm.pose.vlm_reasoner import validate_assignment
from napari_behaviorvlm.vlm import VLMConfig
from napari_behaviorvlm.vlm.testing import TestDoubleChatServer
from tests.pose.pose_fixtures import new_project, small_sim

FRAMES = list(range(20, 27))  # next to the seed at frame 19: both directions


def _double(sim, **rates):
    return GroundTruthTestDouble(sim.points2d, sim.visible, sim.camera_names,
                                 list(sim.individual_names), sim.keypoint_names,
                                 sim.skeleton.symmetry, **rates)


def _config(server, backend, monkeypatch, **kw):
    monkeypatch.setenv("POSE_TEST_DOUBLE_KEY", "not-a-secret")
    vlm = VLMConfig(base_url=server.base_url, model=server.model, api_key_env="POSE_TEST_DOUBLE_KEY",
                    cache_dir=None, answer_retries=1, backoff_base_s=0.0)
    return LabelingConfig(backend=backend, vlm=vlm, **kw)


def test_vlm_path_end_to_end_recovers_injected_errors(monkeypatch):
    sim, seeds, source = small_sim()
    double = _double(sim, swap_rate=0.2, wrong_rate=0.1, omit_rate=0.05)
    with TestDoubleChatServer(double) as server:
        project = new_project(sim, seeds)
        report = run_labeling(project, FRAMES, _config(server, "vlm", monkeypatch), frame_source=source)
        requests = list(server.requests)
    assert report.vlm_calls == len(requests) > 0
    assert double.injected["swap"] + double.injected["wrong"] > 0
    # the question carries the crop with numbered candidates and few-shot example turns
    body = requests[0]
    assert body["messages"][0]["role"] == "system"
    assert any(isinstance(m["content"], list) and any(p.get("type") == "image_url" for p in m["content"])
               for m in body["messages"][1:])
    assert sum(m["role"] == "assistant" for m in body["messages"]) >= 1
    m = evaluate_poses(project.poses, sim.skeleton, sim.points3d, sim.points2d, sim.visible, FRAMES)
    assert m["median_3d_error_mm"] < 1.0  # stages 3-4 absorb the injected errors
    assert m["coverage"] > 0.85
    assert report.vlm_usage["calls"] >= report.vlm_calls


def test_malformed_answers_are_flagged_not_trusted(monkeypatch):
    sim, seeds, source = small_sim()
    double = _double(sim, swap_rate=0.0, wrong_rate=0.0, omit_rate=0.0)
    with TestDoubleChatServer(double, malformed_rate=1.0) as server:
        project = new_project(sim, seeds)
        report = run_labeling(project, FRAMES[:2], _config(server, "vlm", monkeypatch), frame_source=source)
    assert report.vlm_usage["failures"] > 0
    model = project.poses.source[:, FRAMES[:2]] == Source.MODEL
    assert model.any()
    flags = project.poses.flags[:, FRAMES[:2]][model]
    assert (flags & int(Flag.LOW_MODEL_CONFIDENCE)).all()
    assert (project.poses.confidence[:, FRAMES[:2]][model] <= 0.5).all()


def test_hybrid_asks_less_than_vlm(monkeypatch):
    sim, seeds, source = small_sim()
    counts = {}
    for backend in ("vlm", "hybrid"):
        double = _double(sim, swap_rate=0.0, wrong_rate=0.0, omit_rate=0.0)
        with TestDoubleChatServer(double) as server:
            project = new_project(sim, seeds)
            report = run_labeling(project, FRAMES[:3], _config(server, backend, monkeypatch),
                                  frame_source=source)
        counts[backend] = report.vlm_calls
    assert counts["vlm"] > 0
    assert counts["hybrid"] < counts["vlm"]


def test_answer_validation_is_strict():
    names = ["ear_left", "ear_right"]
    ok = validate_assignment({"assignments": [
        {"keypoint": "ear_left", "candidate": 1, "confidence": 0.9},
        {"keypoint": "ear_right", "candidate": None, "confidence": 0.4}]}, names, 3)
    assert ok == {"ear_left": (1, 0.9), "ear_right": (None, 0.4)}
    bad = [
        {"assignments": [{"keypoint": "ear_left", "candidate": 1, "confidence": 0.9}]},  # missing
        {"assignments": [{"keypoint": "ear_left", "candidate": 1, "confidence": 0.9},
                         {"keypoint": "ear_right", "candidate": 1, "confidence": 0.9}]},  # twice
        {"assignments": [{"keypoint": "ear_left", "candidate": 7, "confidence": 0.9},
                         {"keypoint": "ear_right", "candidate": 0, "confidence": 0.9}]},  # not drawn
        {"assignments": [{"keypoint": "nose", "candidate": 0, "confidence": 0.9}]},  # unknown
        {"assignments": [{"keypoint": "ear_left", "candidate": 0, "confidence": 2},
                         {"keypoint": "ear_right", "candidate": 1, "confidence": 0.9}]},
        {"answer": []},
    ]
    for data in bad:
        with pytest.raises(ValueError):
            validate_assignment(data, names, 3)


def test_hybrid_asks_about_a_hidden_doubt_as_about_a_flag(monkeypatch):
    # a doubt the user is not shown (a paw on its own side at its partner's place) still sends
    # its labeled views to the model, exactly the views a flag would
    from napari_behaviorvlm.pose.refine import RefineParams

    sim, seeds, source = small_sim(4, 60, 2, 2)
    frames = list(range(0, 30))
    runs = {}
    for own_side_mm in (5.0, float("inf")):
        double = _double(sim, swap_rate=0.0, wrong_rate=0.0, omit_rate=0.0)
        with TestDoubleChatServer(double) as server:
            project = new_project(sim, seeds)
            config = _config(server, "hybrid", monkeypatch,
                             refine=RefineParams(own_side_mm=own_side_mm))
            report = run_labeling(project, frames, config, frame_source=source)
        runs[own_side_mm] = (report.vlm_calls, project.poses)
    (calls_hidden, hidden), (calls_shown, shown) = runs[5.0], runs[float("inf")]
    assert calls_hidden == calls_shown > 0
    assert np.array_equal(hidden.points2d, shown.points2d, equal_nan=True)
    assert (hidden.flags != shown.flags).any()
