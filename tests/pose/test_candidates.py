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


def test_local_maxima_and_border_sampling_match_the_whole_image_filters():
    """The sparse peak test and the out-of-image sampling give what a 3x3 dilation and a
    padded copy (constant 0 for the top-hat, edge-replicated for the raw image) would."""
    import cv2

    from napari_behaviorvlm.pose.candidates import _local_maxima, _sample

    rng = np.random.default_rng(5)
    for _ in range(20):
        hat = rng.normal(0, 8, (37, 53)).astype(np.float32)
        hat[rng.integers(0, 37, 12), rng.integers(0, 53, 12)] = 60  # plateaus, edges
        hat[0, :3] = hat[-1, -3:] = 80
        dil = cv2.dilate(hat, np.ones((3, 3), np.uint8))
        want = np.nonzero((hat >= dil) & (hat >= 20))
        got = _local_maxima(hat, 20.0, np.empty(hat.shape, bool))
        assert [a.tolist() for a in got] == [a.tolist() for a in want]
        raw = rng.integers(0, 255, (37, 53)).astype(np.uint8)
        ys, xs = rng.integers(-8, 45, 200), rng.integers(-8, 61, 200)
        pad_hat = cv2.copyMakeBorder(hat, 8, 8, 8, 8, cv2.BORDER_CONSTANT, value=0)
        pad_raw = cv2.copyMakeBorder(raw, 8, 8, 8, 8, cv2.BORDER_REPLICATE)
        assert np.array_equal(_sample(hat, ys, xs), pad_hat[ys + 8, xs + 8])
        assert np.array_equal(_sample(raw, ys, xs), pad_raw[ys + 8, xs + 8])


def test_detection_reuses_its_buffers_without_leaking_them():
    """Two views in a row: the first one's candidates are not changed by the second."""
    img = np.full((60, 80), 30.0)
    _gauss(img, 20.3, 30.6, 150)
    first = detect_candidates(img.astype(np.uint8))
    kept = first.xy.copy()
    other = np.full((60, 80), 30.0)
    _gauss(other, 50.0, 10.0, 150)
    second = detect_candidates(other.astype(np.uint8))
    assert np.array_equal(first.xy, kept) and len(first) == len(second) == 1
    assert np.linalg.norm(first.xy[0] - [20.3, 30.6]) < 0.3
    assert np.linalg.norm(second.xy[0] - [50.0, 10.0]) < 0.3


def test_a_plateau_is_one_dot_and_crowded_dots_keep_their_own_pixels():
    lone = np.full((80, 220), 20.0)
    _gauss(lone, 30.0, 40.0, 150)
    lone_area = detect_candidates(np.clip(lone, 0, 255).astype(np.uint8)).area[0]
    img = np.full((80, 220), 20.0)
    # a flat-topped blob: two maxima 4 px apart with no dip between them
    for x in np.arange(96.0, 100.5, 0.5):
        _gauss(img, x, 40.0, 30)
    # three dots in a row, 4 px apart: three candidates, none counting its neighbours' pixels
    for x in (160.0, 164.0, 168.0):
        _gauss(img, x, 40.0, 150)
    cand = detect_candidates(np.clip(img, 0, 255).astype(np.uint8))
    xs = np.sort(cand.xy[:, 0])
    assert len(cand) == 4, cand.xy
    assert 95.5 < xs[0] < 100.5
    np.testing.assert_allclose(xs[1:], [160.0, 164.0, 168.0], atol=0.6)
    # the middle dot's half-peak region would span all three (~35 px); its own pixels are the
    # columns nearer to it than to its neighbours
    middle = np.argsort(cand.xy[:, 0])[2]
    assert cand.area[middle] <= 2 * lone_area, (cand.area, lone_area)
