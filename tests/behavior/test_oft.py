"""The OFT rearing benchmark on the real dataset (skips when ../shared/datasets is absent)."""

import numpy as np
import pytest

from napari_behaviorvlm.behavior.oft import (
    evaluate_oft,
    list_oft_sessions,
    load_oft_session,
    predict_oft,
)


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


def test_cross_session_tunes_on_one_video_and_tests_on_the_other(oft_root):
    from napari_behaviorvlm.behavior.oft import GRID, cross_session

    folds = cross_session(oft_root)
    assert {(f["tuned_on"], f["tested_on"]) for f in folds} == {
        ("12_01_A_190507144429", "8_01_A_190507134142"),
        ("8_01_A_190507134142", "12_01_A_190507144429")}
    for f in folds:
        assert set(f["params"]) == set(GRID)
        assert 0.0 < f["test"]["supported"]["ours"]["frame_f1"] <= 1.0
