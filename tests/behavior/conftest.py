"""Helpers for behavior tests: a hand-built pose sequence with known behavior."""

import re

import numpy as np
import pytest

from napari_behaviorvlm.core.skeleton import default_qd_mouse_skeleton

FPS = 25.0


def scripted_poses(n_walk=50, n_rear=40, n_rest=50, n_run=40, seed=0):
    """A 3D QD mouse (mm) that walks, rears, rests then runs along x; returns (points, truth)."""
    rng = np.random.default_rng(seed)
    sk = default_qd_mouse_skeleton()
    k = {name: i for i, name in enumerate(sk.keypoints)}
    phases = [("walk", n_walk, 80.0), ("rear", n_rear, 0.0), ("rest", n_rest, 0.0),
              ("run", n_run, 500.0)]
    frames, truth = [], []
    x = 20.0
    for label, n, speed_mm_s in phases:
        for _ in range(n):
            x += speed_mm_s / FPS
            p = np.zeros((len(sk.keypoints), 3))
            rear = label == "rear"
            head_z = 70.0 if rear else 25.0
            head_x = x + (25.0 if rear else 50.0)
            for name in ("ear_left", "ear_right"):
                p[k[name]] = [head_x, 5 if name == "ear_left" else -5, head_z]
            p[k["back_front"]] = [x + (15 if rear else 35), 0, 50 if rear else 25]
            p[k["back_mid"]] = [x + (8 if rear else 20), 0, 35 if rear else 25]
            p[k["back_rear"]] = [x, 0, 20]
            p[k["tail_base"]] = [x - 5, 0, 15]
            p[k["tail_mid"]] = [x - 40, 0, 5]
            p[k["tail_tip"]] = [x - 70, 0, 2]
            for name, dx, dy in (("paw_front_left", 40, 8), ("paw_front_right", 40, -8),
                                 ("paw_hind_left", 0, 8), ("paw_hind_right", 0, -8)):
                if rear and "front" in name:
                    p[k[name]] = [x + 25, dy, 45]
                else:
                    p[k[name]] = [x + dx, dy, 0]
            p += rng.normal(0, 0.3, p.shape)
            frames.append(p)
            truth.append(label)
    pts = np.stack(frames)[:, None]  # (F, 1, K, 3)
    return pts, np.array(truth, dtype=object), sk.keypoints


@pytest.fixture
def scripted():
    return scripted_poses()


@pytest.fixture
def make_scripted():
    """The :func:`scripted_poses` factory."""
    return scripted_poses


def _make_test_double_responder(truth, bad_label_clip_start=None):
    """Responder of a TEST DOUBLE chat server (not a model): caption = majority truth label of
    the asked frames; merge = consecutive equal labels. ``bad_label_clip_start``: that clip
    always gets the invalid label "fly"."""
    from napari_behaviorvlm.vlm.testing import request_text

    def respond(body):
        system = body["messages"][0]["content"]
        text = request_text(body)
        if "captioned video clips" in system:  # merge prompt
            rows = re.findall(r"^(\d+): frames (\d+)-(\d+), subject (\S+): (\S+) -", text, re.M)
            segs = []
            for i, _s, _e, subject, label in rows:
                if segs and segs[-1]["label"] == label:
                    segs[-1]["last"] = int(i)
                else:
                    segs.append({"first": int(i), "last": int(i), "label": label,
                                 "caption": f"{subject} {label}", "subject": subject,
                                 "target": "", "confidence": 0.9})
            return {"segments": segs}
        m = re.search(r"frames (\d+) to (\d+).*subject (\S+?),", text, re.S)
        start, end, subject = int(m[1]), int(m[2]), m[3]
        values, counts = np.unique(truth[start:end + 1], return_counts=True)
        label = str(values[np.argmax(counts)])
        if start == bad_label_clip_start:
            label = "fly"
        return {"label": label, "description": f"{subject} does {label}", "pose": "p",
                "direction": "none", "speed": "slow", "interaction": "none",
                "subject": subject, "target": "", "confidence": 0.8}

    return respond


@pytest.fixture
def make_test_double_responder():
    """Factory of test-double responders (see :func:`_make_test_double_responder`)."""
    return _make_test_double_responder
