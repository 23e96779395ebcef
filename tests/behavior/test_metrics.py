"""Metrics on hand-computed cases."""

import math

import numpy as np
import pytest

from napari_behaviorvlm.behavior import metrics


def lab(s: str) -> np.ndarray:
    """'aab.' -> ['a','a','b',''] ('.' = background)."""
    return np.array(["" if c == "." else c for c in s], dtype=object)


def test_frame_accuracy_and_f1():
    ref = lab("aaaa....bb")
    pred = lab("..aaaa..b.")
    # equal at frames 2, 3, 6, 7, 8
    assert metrics.frame_accuracy(pred, ref) == pytest.approx(5 / 10)
    # class a: TP 2, FP 2, FN 2 -> 4/8
    assert metrics.frame_f1(pred, ref, "a") == pytest.approx(0.5)
    # class b: TP 1, FP 0, FN 1 -> 2/3
    assert metrics.frame_f1(pred, ref, "b") == pytest.approx(2 / 3)
    assert math.isnan(metrics.frame_f1(pred, ref, "z"))


def test_segmental_f1_iou_thresholds():
    ref = lab("aaaa......bbbb")
    pred = lab("..aaaa....bb..")
    # a: IoU 2/6 = 0.333; b: IoU 2/4 = 0.5
    assert metrics.segmental_f1(pred, ref, 0.10) == pytest.approx(1.0)
    assert metrics.segmental_f1(pred, ref, 0.25) == pytest.approx(1.0)
    # at 0.5: a is FP (and its ref FN), b TP -> 2*1/(2+1+1)
    assert metrics.segmental_f1(pred, ref, 0.50) == pytest.approx(0.5)


def test_segmental_f1_each_reference_matched_once():
    ref = lab("aaaaaaaa")
    pred = lab("aaa.aaaa")  # two predictions overlap the one reference
    # first pred IoU 3/8 -> TP at 0.25, second IoU 4/8 but reference used -> FP
    assert metrics.segmental_f1(pred, ref, 0.25) == pytest.approx(2 / 3)


def test_edit_score():
    assert metrics.edit_score(lab("aa.bb.aa"), lab("aabbaa")) == pytest.approx(1.0)
    # pred segments [a, b], ref [a, b, a]: one deletion over 3 -> 2/3
    assert metrics.edit_score(lab("aabb"), lab("aabbaa")) == pytest.approx(2 / 3)
    assert metrics.edit_score(lab("...."), lab("....")) == 1.0
    assert metrics.edit_score(lab("cc.."), lab("aabb")) == pytest.approx(0.0)


def test_boundary_f1_tolerance():
    ref = lab("aaaaabbbbbaaaaa")  # boundaries at 5 and 10
    pred = lab("aaaaaaabbbaaaaa")  # boundaries at 7 and 10
    strict = metrics.boundary_f1(pred, ref, tol=1)
    assert strict["recall"] == pytest.approx(0.5) and strict["precision"] == pytest.approx(0.5)
    loose = metrics.boundary_f1(pred, ref, tol=2)
    assert loose["f1"] == pytest.approx(1.0)


def test_segments_per_minute_and_evaluate():
    x = lab("a" * 30 + "b" * 30)
    assert metrics.segments_per_minute(x, fps=1.0) == pytest.approx(2.0)
    out = metrics.evaluate(x, x, fps=1.0)
    assert out["frame_accuracy"] == 1.0 and out["segmental_f1"]["0.50"] == 1.0
    assert out["boundary"]["f1"] == 1.0
    with pytest.raises(ValueError):
        metrics.frame_accuracy(x, x[:-1])
