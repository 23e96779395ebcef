"""The OFT rearing benchmark on the real dataset (skips when ../shared/datasets is absent)."""

import attrs
import numpy as np
import pytest

from napari_behaviorvlm.behavior import oft
from napari_behaviorvlm.behavior.oft import (
    REAR_HOLD_S,
    TUNED_ON,
    evaluate_oft,
    hold_rears,
    list_oft_sessions,
    load_oft_session,
    predict_oft,
)
from napari_behaviorvlm.core.segments import Segment, SegmentTable

HELD_OUT = "8_01_A_190507134142"


@pytest.fixture(scope="module")
def oft_root(shared_datasets):
    return shared_datasets / "oft-rearing-grooming"


def test_load_session(oft_root):
    names = list_oft_sessions(oft_root)
    assert len(names) == 2
    s = load_oft_session(oft_root, "8_01_A_190507134142")
    assert s.points.shape == (1998, 1, 13, 2) and set(s.raters) == {"Furkan", "Jin", "Oliver"}
    # Jin's first supported rear is 5.815-7.044 s
    jin = s.raters["Jin"]
    assert jin[int(round(5.815 * 25))] == "supported_rear" and jin[int(round(5.815 * 25)) - 1] == ""
    assert 40 < s.first_frame < 120  # the scored period starts after 2-3 s
    assert s.arena.shape == (4, 2)


def test_raters_agree_and_local_path_is_close(oft_root):
    s = load_oft_session(oft_root, "8_01_A_190507134142")  # held out (tuned on 12_01)
    pred, _ = predict_oft(s)
    r = evaluate_oft(s, pred)
    pairs = [v["frame_f1"] for v in r["supported"]["rater_vs_rater"].values()]
    assert len(pairs) == 3 and all(0.85 <= p <= 0.95 for p in pairs)
    assert r["supported"]["ours_mean"]["frame_f1"] > r["supported"]["raters_mean"]["frame_f1"] - 0.10
    # a prediction of nothing scores zero, so the metric can fail
    empty = evaluate_oft(s, np.full(s.n_frames, "", dtype=object))
    assert empty["supported"]["ours_mean"]["frame_f1"] == 0.0


def test_hold_rears_extends_rears_into_what_follows():
    model = [Segment(0, 9, "walk"), Segment(10, 19, "supported_rear"), Segment(20, 39, "walk"),
             Segment(40, 44, "unsupported_rear"), Segment(45, 46, "rest"),
             Segment(50, 54, "rear"), Segment(55, 56, "walk"), Segment(57, 60, "rear"),
             Segment(70, 74, "rear"), Segment(80, 90, "walk")]
    human = Segment(76, 79, "groom", source="human", score=1.0)
    table = SegmentTable(model + [human, Segment(10, 30, "rear", subject="mouse1")])
    before = table.to_records()
    held = hold_rears(table, 0.2, 25.0, 85)  # 5 frames
    assert table.to_records() == before  # input untouched
    got = {(s.subject, s.start, s.end, s.label, s.source) for s in held}
    assert ("mouse0", 10, 24, "supported_rear", "model") in got
    assert ("mouse0", 25, 39, "walk", "model") in got  # trimmed at its start
    assert ("mouse0", 40, 49, "unsupported_rear", "model") in got  # grew over the 2-frame rest
    assert not any(s.label == "rest" for s in held)
    assert ("mouse0", 50, 56, "rear", "model") in got  # stops before the next rear
    assert ("mouse0", 57, 60 + 5, "rear", "model") in got
    assert ("mouse0", 70, 75, "rear", "model") in got  # stops before the human segment
    assert ("mouse0", 76, 79, "groom", "human") in got
    assert ("mouse1", 10, 35, "rear", "model") in got  # each subject on its own
    assert ("mouse0", 0, 9, "walk", "model") in got and ("mouse0", 80, 90, "walk", "model") in got
    # frames stay covered once: no two segments of a subject overlap
    for subject in ("mouse0", "mouse1"):
        spans = sorted((s.start, s.end) for s in held if s.subject == subject)
        assert all(a[1] < b[0] for a, b in zip(spans, spans[1:]))
    assert hold_rears(table, 0.0, 25.0, 85).to_records() == before
    last = hold_rears(SegmentTable([Segment(0, 8, "rear")]), 0.2, 25.0, 10)
    assert [(s.start, s.end) for s in last] == [(0, 9)]  # never past the last frame


def test_rear_hold_was_chosen_on_the_tuning_video_and_helps_the_held_out_one(oft_root):
    tune = load_oft_session(oft_root, TUNED_ON)
    table, _ = oft._segment_oft(tune, None)

    def frame_f1_sum(session, tab, hold):
        r = evaluate_oft(session, oft._labels_after_hold(session, tab, hold))
        return r["supported"]["ours_mean"]["frame_f1"] + r["all"]["ours_mean"]["frame_f1"]

    # on the tuning video the hold is (within a near-tie of 0.015) the best of the grid and
    # better than none; the held-out video plays no part in this choice
    sums = {h: frame_f1_sum(tune, table, h) for h in (0.0, 0.08, 0.16, 0.24)}
    assert sums[REAR_HOLD_S] >= max(sums.values()) - 0.015
    assert sums[max(sums, key=sums.get)] > sums[0.0]
    held_out = load_oft_session(oft_root, HELD_OUT)
    without = evaluate_oft(held_out, predict_oft(held_out, rear_hold_s=0.0)[0])
    with_hold = evaluate_oft(held_out, predict_oft(held_out)[0])
    for task in ("supported", "all"):  # measured: +0.04 and +0.05
        assert (with_hold[task]["ours_mean"]["frame_f1"]
                > without[task]["ours_mean"]["frame_f1"] + 0.02)
    # all rearing (supported + free rears) on the held-out video: 0.784 (0.738 without hold)
    assert with_hold["all"]["ours_mean"]["frame_f1"] > 0.75


def test_grooming_is_scored_and_nan_where_nobody_grooms(oft_root):
    s = load_oft_session(oft_root, TUNED_ON)
    oliver = s.raters["Oliver"]
    assert (oliver == "groom").sum() == 3
    r = evaluate_oft(s, oliver)
    assert r["groom"]["ours_vs_rater"]["Oliver"]["frame_f1"] == 1.0
    assert r["groom"]["ours_vs_rater"]["Jin"]["frame_f1"] == 0.0  # Jin labeled no grooming
    assert np.isnan(r["groom"]["rater_vs_rater"]["Furkan-Jin"]["frame_f1"])  # neither did
    assert r["groom"]["raters_mean"]["frame_f1"] == 0.0  # the NaN pair is skipped
    held_out = load_oft_session(oft_root, HELD_OUT)
    nothing = evaluate_oft(held_out, np.full(held_out.n_frames, "", dtype=object))
    assert sum(nothing["groom"]["rater_frames"].values()) == 0
    assert np.isnan(nothing["groom"]["ours_mean"]["frame_f1"])


SMALL_GRID = {"n_clusters": (10, 16), "min_clip_s": (0.2,), "smooth_s": (0.1,),
              "window_s": (0.5,), "min_bout_s": (0.3,), "wall_length_ratio": (0.9,),
              "rear_hold_s": (0.0, 0.16)}


def test_cross_session_tunes_on_one_video_and_tests_on_the_other(oft_root, monkeypatch):
    monkeypatch.setattr(oft, "GRID", SMALL_GRID)
    folds = oft.cross_session(oft_root)
    assert {(f["tuned_on"], f["tested_on"]) for f in folds} == {
        (TUNED_ON, HELD_OUT), (HELD_OUT, TUNED_ON)}
    for f in folds:
        assert set(f["params"]) == set(SMALL_GRID)
        assert f["params"]["rear_hold_s"] in SMALL_GRID["rear_hold_s"]
        for task in ("supported", "all"):
            assert 0.0 < f["test"][task]["ours"]["frame_f1"] <= 1.0
            assert set(f["test"][task]["ours_vs_rater"]) == {"Furkan", "Jin", "Oliver"}

    # honest: the choice made on one video does not depend on the other video's labels
    real_load = oft.load_oft_session

    def scrambled(root, name, **kw):
        s = real_load(root, name, **kw)
        if name == HELD_OUT:
            s = attrs.evolve(s, raters={r: np.roll(lab, 400) for r, lab in s.raters.items()})
        return s

    monkeypatch.setattr(oft, "load_oft_session", scrambled)
    again = {f["tuned_on"]: f for f in oft.cross_session(oft_root)}
    fold = next(f for f in folds if f["tuned_on"] == TUNED_ON)
    assert again[TUNED_ON]["params"] == fold["params"]
    assert again[TUNED_ON]["test"]["all"]["ours"] != fold["test"]["all"]["ours"]
