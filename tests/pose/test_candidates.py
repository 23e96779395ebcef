"""Stage 0: QD candidate detection on rendered frames and on hand-made difficult cases."""

from __future__ import annotations

import numpy as np
import pytest

from tests.pose.pose_fixtures import small_sim
from napari_behaviorvlm.pose.candidates import CandidateParams, detect_candidates


def _gauss(img, x, y, amp, sigma=1.4):
    yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
    img += amp * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma ** 2))


def test_rendered_frames_recall_and_subpixel_accuracy():
    sim, _, source = small_sim()
    hits, total, errors = 0, 0, []
    for c in range(sim.calibration.__len__()):
        for f in range(0, sim.n_frames, 8):
            cand = detect_candidates(source(c, f))
            truth = sim.points2d[c, f][sim.visible[c, f]]
            total += len(truth)
            if len(cand) == 0:
                continue
            d = np.linalg.norm(truth[:, None] - cand.xy[None], axis=2).min(axis=1)
            hits += int((d < 2.0).sum())
            errors.extend(d[d < 2.0])
    assert total > 50
    assert hits / total > 0.9
    assert np.median(errors) < 0.3  # subpixel, after H.264-free rendering with noise


def test_subpixel_centroid_on_exact_gaussians():
    rng = np.random.default_rng(1)
    img = np.full((120, 160), 20.0)
    truth = np.array([[30.3, 40.7], [80.55, 60.2], [120.9, 90.45]])
    for x, y in truth:
        _gauss(img, x, y, 150)
    img = np.clip(img + rng.normal(0, 2, img.shape), 0, 255).astype(np.uint8)
    cand = detect_candidates(img)
    assert len(cand) == 3
    d = np.linalg.norm(truth[:, None] - cand.xy[None], axis=2).min(axis=1)
    assert d.max() < 0.25


def test_reflections_and_streaks_rejected_merged_dots_split():
    img = np.full((160, 200), 20.0)
    _gauss(img, 40.0, 40.0, 160)  # a real dot
    _gauss(img, 150.0, 120.0, 120, sigma=8.0)  # broad reflection
    img[100:103, 20:60] += 120  # a streak (e.g. a lit edge)
    _gauss(img, 100.3, 40.2, 150)  # two dots 3.9 px apart (merged blob with 2 peaks)
    _gauss(img, 104.1, 41.0, 150)
    img = np.clip(img, 0, 255).astype(np.uint8)
    cand = detect_candidates(img, CandidateParams())
    expected = np.array([[40.0, 40.0], [100.3, 40.2], [104.1, 41.0]])
    assert len(cand) == 3, cand.xy
    d = np.linalg.norm(expected[:, None] - cand.xy[None], axis=2).min(axis=1)
    assert d.max() < 0.8


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="grayscale"):
        detect_candidates(np.zeros((4, 4, 4, 4), np.uint8))
    assert len(detect_candidates(np.zeros((50, 50), np.uint8))) == 0
