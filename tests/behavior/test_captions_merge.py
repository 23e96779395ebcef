import math

import numpy as np
import pytest

from napari_behaviorvlm.behavior.captions import (
    Caption,
    CaptionError,
    KinematicCaptioner,
    absorb_short_runs,
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
    # walk(0-19) + rear(20-22, short, both sides walk -> walk) + walk(23-40) -> one walk 0-40;
    # run(61-63) between rest and walk is the transition into the walk: it joins the walk
    assert [(s.start, s.end, s.label) for s in segs] == [
        (0, 40, "walk"), (41, 60, "rest"), (61, 80, "walk")]
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


def _features(n_frames, **per_animal):
    """Hand-made 2-animal FeatureSet: every pose feature neutral (still, on all fours, away
    from the wall and from each other) unless given as a ``(F, 2)`` array."""
    from napari_behaviorvlm.behavior.features import POSE_FEATURES, FeatureSet

    neutral = {"speed": 0.02, "head_speed": 0.0, "body_length_ratio": 1.0, "turn_rate": 0.0,
               "elevation": np.nan, "paw_head": np.nan, "wall": 5.0, "other_dist": 5.0,
               "head_other": 4.0, "other_facing": 0.0, "approach": 0.0, "other_speed": 0.0,
               "toward_other": np.nan, "other_away": np.nan, "relative_heading": np.nan,
               "head_other_head": 4.0, "head_other_rear": 4.0, "back_height_ratio": np.nan}
    cols = [np.broadcast_to(np.asarray(per_animal.get(n, neutral[n]), float), (n_frames, 2))
            for n in POSE_FEATURES]
    nearest = np.tile([[1, 0]], (n_frames, 1))
    return FeatureSet(np.stack(cols, axis=-1).copy(), list(POSE_FEATURES), ["a", "b"], FPS,
                      np.array([80.0, 80.0]), nearest)


def test_sniff_only_for_the_animal_that_came():
    speed = np.full((100, 2), 0.02)
    speed[:40, 0] = 1.0  # a walks up to b, which rests
    head_other = np.full((100, 2), 3.0)
    head_other[45:] = 0.2  # from frame 45 on, each head is near the other's body
    labels = KinematicCaptioner().frame_labels(_features(100, speed=speed, head_other=head_other))
    assert set(labels[45:, 0]) == {"sniff"}
    assert set(labels[:, 1]) == {"rest"}  # the sniffed animal keeps resting


def test_chase_is_the_follower_and_the_leader_runs():
    facing = np.tile([0.9, -0.9], (50, 1))  # a behind b, facing it; b faces away
    labels = KinematicCaptioner().frame_labels(_features(
        50, speed=3.0, other_speed=3.0, other_dist=1.0, other_facing=facing))
    assert set(labels[:, 0]) == {"chase"} and set(labels[:, 1]) == {"run"}


def test_split_clips_cuts_at_sustained_label_changes():
    speed = np.full((60, 2), 0.02)
    speed[:30] = 1.0  # walk, then rest
    speed[45:48] = 1.0  # a 3-frame blip inside the rest: shorter than min_run, no cut
    fs = _features(60, speed=speed)
    cap = KinematicCaptioner()
    clips = [Clip(0, 59, "a", cluster=3), Clip(0, 29, "b")]
    out = cap.split_clips(clips, fs, min_run_s=0.3)
    assert [(c.start, c.end, c.subject, c.cluster) for c in out] == [
        (0, 29, "a", 3), (30, 59, "a", 3), (0, 29, "b", -1)]
    assert [c.label for c in cap.caption_clips(out, fs)] == ["walk", "rest", "walk"]


def test_merger_keeps_a_short_bout_its_captions_are_sure_of():
    clips = [Clip(0, 29, "m"), Clip(30, 39, "m"), Clip(40, 69, "m")]  # sniff: 0.4 s at 25 fps
    merger = LocalMerger(min_bout_s=0.5)
    sure = merger.merge(clips, [_cap("walk"), _cap("sniff", 1.0), _cap("walk")], fps=25.0)
    assert [(s.start, s.end, s.label) for s in sure] == [
        (0, 29, "walk"), (30, 39, "sniff"), (40, 69, "walk")]
    unsure = merger.merge(clips, [_cap("walk"), _cap("sniff", 0.6), _cap("walk")], fps=25.0)
    assert [(s.start, s.end, s.label) for s in unsure] == [(0, 69, "walk")]
    too_short = merger.merge([Clip(0, 29, "m"), Clip(30, 34, "m"), Clip(35, 69, "m")],
                             [_cap("walk"), _cap("sniff", 1.0), _cap("walk")], fps=25.0)
    assert [s.label for s in too_short] == ["walk"]  # 0.2 s < keep_min_s


def test_sniff_needs_a_stop_on_all_fours():
    speed = np.full((100, 2), 0.02)
    speed[:40, 0] = 1.0  # a walks up to b
    speed[45:60, 0] = 0.45  # still closing in (slower than walking, not stopped)
    head_other = np.full((100, 2), 3.0)
    head_other[45:, 0] = 0.2
    crouch = np.ones((100, 2))
    crouch[80:, 0] = 0.8  # a crouches down next to b: resting, no longer sniffing
    labels = KinematicCaptioner().frame_labels(_features(
        100, speed=speed, head_other=head_other, back_height_ratio=crouch))[:, 0]
    assert "sniff" not in set(labels[45:60])
    assert set(labels[60:80]) == {"sniff"}
    assert set(labels[80:]) == {"rest"}


def test_chase_follower_by_velocity_over_a_window():
    toward = np.tile([2.5, -2.5], (60, 1))  # a runs toward b, b away from a
    toward[28:33] = [-1.0, 1.0]  # a overtakes for a moment: it stays the follower
    labels = KinematicCaptioner().frame_labels(_features(
        60, speed=3.0, other_speed=3.0, other_dist=1.0, toward_other=toward))
    assert set(labels[:, 0]) == {"chase"} and set(labels[:, 1]) == {"run"}
    side = np.tile([0.2, 0.2], (60, 1))  # both run side by side: nobody follows
    labels = KinematicCaptioner().frame_labels(_features(
        60, speed=3.0, other_speed=3.0, other_dist=1.0, toward_other=side))
    assert "chase" not in set(labels.ravel())


def test_absorb_short_runs():
    seq = np.array(list("aaaaabaaaacccccdddddd"))
    out = "".join(absorb_short_runs(seq, 3))
    assert out == "aaaaaaaaaacccccdddddd"  # a-b-a -> a; runs of >= 3 stay
    # a-b-c: into the longer neighbour
    assert "".join(absorb_short_runs(np.array(list("aaaabccccccc")), 2)) == "aaaacccccccc"
    assert "".join(absorb_short_runs(np.array(list("aaaaaaabcc")), 2)) == "aaaaaaaacc"
    assert "".join(absorb_short_runs(np.array(list("abbbbb")), 2)) == "bbbbbb"
    assert len(absorb_short_runs(np.array([], dtype=str), 3)) == 0


def test_split_clips_cuts_at_a_change_near_a_clip_edge():
    speed = np.full((60, 2), 0.02)
    speed[:25] = 1.0  # walk until frame 24, then rest; the cluster edge is at frame 30
    fs = _features(60, speed=speed)
    out = KinematicCaptioner().split_clips([Clip(0, 29, "a"), Clip(30, 59, "a")], fs, 0.3)
    assert [(c.start, c.end) for c in out] == [(0, 24), (25, 29), (30, 59)]


def test_merger_transitions_and_pairs():
    merger = LocalMerger(min_bout_s=0.5)
    # a sure 0.32 s bout between two different labels is a transition (< 0.4 s): into the next
    clips = [Clip(0, 29, "m"), Clip(30, 37, "m"), Clip(38, 69, "m")]
    segs = merger.merge(clips, [_cap("walk"), _cap("rest"), _cap("rear")], fps=25.0)
    assert [(s.start, s.end, s.label) for s in segs] == [(0, 29, "walk"), (30, 69, "rear")]
    longer = [Clip(0, 29, "m"), Clip(30, 40, "m"), Clip(41, 69, "m")]  # 0.44 s: kept
    segs = merger.merge(longer, [_cap("walk"), _cap("rest"), _cap("rear")], fps=25.0)
    assert [s.label for s in segs] == ["walk", "rest", "rear"]
    # a's chase of b ends at frame 50, b stops running at 45: one event, both at frame 45
    clips = [Clip(0, 49, "a"), Clip(50, 99, "a"), Clip(0, 44, "b"), Clip(45, 99, "b")]
    caps = [Caption("chase", subject="a", target="b", confidence=1.0), _cap("walk", 1.0, "a"),
            _cap("run", 1.0, "b"), _cap("rest", 1.0, "b")]
    segs = merger.merge(clips, caps, fps=25.0)
    assert [(s.subject, s.start, s.end, s.label, s.target) for s in segs] == [
        ("a", 0, 44, "chase", "b"), ("a", 45, 99, "walk", ""),
        ("b", 0, 44, "run", ""), ("b", 45, 99, "rest", "")]
    far = LocalMerger(pair_window_s=0.1).merge(clips, caps, fps=25.0)  # 5 frames > 2.5
    assert [s.end for s in far if s.subject == "a"] == [49, 99]
