from __future__ import annotations

import numpy as np
import pytest

from napari_behaviorvlm.core.pose import Flag, Source
from napari_behaviorvlm.core.review import (
    accept_labels, next_flagged_frame, review_counts, review_items,
)


def _flag(poses, c, f, k, bits, conf=0.4):
    poses.set_label(c, f, 0, k, (10.0 + k, 20.0 + f), source=Source.MODEL, confidence=conf)
    poses.flags[c, f, 0, k] = bits


def test_review_items_ordered_with_reasons(make_tiny_project):
    project, _ = make_tiny_project(n_frames=10)
    poses = project.poses
    _flag(poses, 2, 7, 3, Flag.SWAP)
    _flag(poses, 0, 7, 5, Flag.HIGH_REPROJ_ERROR | Flag.JUMP)
    _flag(poses, 1, 2, 0, Flag.FEW_VIEWS)
    items = review_items(poses)
    assert [(i.frame, i.camera, i.keypoint) for i in items] == [
        (2, "cam1", "ear_left"), (7, "cam0", "paw_front_left"), (7, "cam2", "back_mid")]
    assert items[1].reasons == ("high reprojection error", "jump against the previous frame")
    assert "frame 7 cam0" in items[1].describe()
    assert [i.frame for i in review_items(poses, frames=[7])] == [7, 7]
    assert review_counts(poses).labels == 3 and review_counts(poses).frames == 2
    poses.flags[0, 5, 0, 0] = Flag.FEW_VIEWS  # a flag on a missing label: nothing to review
    assert len(review_items(poses)) == 3 and review_counts(poses).frames == 2
    assert next_flagged_frame(poses, 2) == 7


def test_next_previous_flagged_frame_wraps(make_tiny_project):
    project, _ = make_tiny_project(n_frames=10)
    poses = project.poses
    assert next_flagged_frame(poses, 0) is None
    for f in (2, 5, 8):
        _flag(poses, 0, f, 1, Flag.JUMP)
    assert next_flagged_frame(poses, 2) == 5
    assert next_flagged_frame(poses, 8) == 2
    assert next_flagged_frame(poses, 8, wrap=False) is None
    assert next_flagged_frame(poses, 5, -1) == 2
    assert next_flagged_frame(poses, 2, -1) == 8
    with pytest.raises(ValueError):
        next_flagged_frame(poses, 2, 0)


def test_accept_makes_flagged_labels_human_and_final(make_tiny_project):
    project, _ = make_tiny_project(n_frames=6)
    project.session.calibration = None  # no 3D: accept only changes provenance
    poses = project.poses
    _flag(poses, 0, 3, 1, Flag.JUMP)
    _flag(poses, 1, 3, 2, Flag.SWAP)
    _flag(poses, 1, 4, 2, Flag.SWAP)
    xy_before = poses.points2d[0, 3, 0, 1].copy()
    assert accept_labels(project, 3, camera="cam0") == 1
    assert poses.source[0, 3, 0, 1] == Source.HUMAN and poses.confidence[0, 3, 0, 1] == 1
    assert poses.flags[0, 3, 0, 1] == 0 and poses.flags[1, 3, 0, 2] != 0
    np.testing.assert_array_equal(poses.points2d[0, 3, 0, 1], xy_before)
    assert accept_labels(project, 3) == 1
    assert review_counts(poses).labels == 1
    assert accept_labels(project, 3) == 0
