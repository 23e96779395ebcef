import math

import numpy as np
import pytest

from napari_behaviorvlm.behavior.captions import (
    Caption,
    CaptionError,
    KinematicCaptioner,
    validate_caption,
)
from napari_behaviorvlm.behavior.features import pose_features
from napari_behaviorvlm.behavior.merge import LocalMerger
from napari_behaviorvlm.behavior.overseg import Clip

FPS = 25.0
GOOD = {"label": "rear", "description": "a rears", "pose": "upright", "direction": "none",
        "speed": "still", "interaction": "none", "subject": "a", "target": ""}


def test_validate_caption_accepts_and_rejects():
    cap = validate_caption(dict(GOOD, label=" Rear ", confidence=0.5), ["rear", "walk"], ["a", "b"])
    assert cap.label == "rear" and cap.confidence == 0.5
    bad_cases = [
        ([], "JSON object"),
        (dict(GOOD, label="fly"), "not one of"),
        ({k: v for k, v in GOOD.items() if k != "pose"}, "missing key 'pose'"),
        (dict(GOOD, speed=3), "must be a string"),
        (dict(GOOD, subject="zz"), "subject"),
        (dict(GOOD, target="a"), "target"),
        (dict(GOOD, confidence=2), "0..1"),
        (dict(GOOD, extra="x"), "unknown keys"),
    ]
    for obj, msg in bad_cases:
        with pytest.raises(CaptionError, match=msg):
            validate_caption(obj, ["rear", "walk"], ["a", "b"])
    with pytest.raises(CaptionError, match="animal of this clip"):
        validate_caption(GOOD, ["rear"], ["a", "b"], subject="b")


def test_kinematic_captioner_labels_the_script(scripted):
    pts, truth, names = scripted
    fs = pose_features(pts, names, FPS)
    frame = KinematicCaptioner().frame_labels(fs)[:, 0]
    for label in ("walk", "rear", "rest", "run"):
        assert np.mean(frame[truth == label] == label) > 0.8, label
    # one clip per scripted phase
    edges = np.flatnonzero(truth[1:] != truth[:-1]) + 1
    bounds = np.r_[0, edges, len(truth)]
    clips = [Clip(int(a), int(b) - 1, "mouse0") for a, b in zip(bounds[:-1], bounds[1:])]
    caps = KinematicCaptioner().caption_clips(clips, fs)
    assert [c.label for c in caps] == ["walk", "rear", "rest", "run"]
    assert all(0.8 <= c.confidence <= 1.0 for c in caps)
    assert "body lengths/s" in caps[0].speed and caps[1].pose
    again = KinematicCaptioner().caption_clips(clips, fs)
    assert again == caps  # deterministic


def _cap(label, conf=1.0, subject="m"):
    return Caption(label=label, description=label, subject=subject, confidence=conf)


def test_local_merger_joins_and_absorbs():
    clips = [Clip(0, 9, "m"), Clip(10, 19, "m"), Clip(20, 22, "m"), Clip(23, 40, "m"),
             Clip(41, 60, "m"), Clip(61, 63, "m"), Clip(64, 80, "m")]
    caps = [_cap("walk"), _cap("walk", 0.5), _cap("rear"), _cap("walk"), _cap("rest"),
            _cap("run"), _cap("walk")]
    segs = LocalMerger(min_bout_s=0.2).merge(clips, caps, fps=25.0)  # 5 frames
    # walk(0-19) + rear(20-22, short, both sides walk -> walk) + walk(23-40) -> one walk 0-40
    assert [(s.start, s.end, s.label) for s in segs] == [
        (0, 40, "walk"), (41, 63, "rest"), (64, 80, "walk")]
    assert segs[0].source == "model"
    # frame-weighted confidence of the first segment: (10*1 + 10*0.5 + 3 + 18) / 41
    assert segs[0].score == pytest.approx((10 + 5 + 3 + 18) / 41)
    compat = LocalMerger(min_bout_s=0.0, compatible=[("walk", "run")]).merge(
        [Clip(0, 9, "m"), Clip(10, 30, "m")], [_cap("walk"), _cap("run")], fps=25.0)
    assert [(s.start, s.end, s.label) for s in compat] == [(0, 30, "run")]


def test_merger_keeps_subjects_apart_and_nan_scores():
    clips = [Clip(0, 9, "a"), Clip(0, 9, "b")]
    segs = LocalMerger().merge(clips, [_cap("walk", math.nan, "a"), _cap("walk", 1, "b")], 25.0)
    assert [s.subject for s in segs] == ["a", "b"] and math.isnan(segs[0].score)
    with pytest.raises(ValueError):
        LocalMerger().merge(clips, [_cap("walk")], 25.0)
