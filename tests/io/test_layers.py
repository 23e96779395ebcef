"""Keypoint-layer content (napari form) back to a pose table: the inverse of points_layer_data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_behaviorvlm.core.labeling import points_layer_data
from napari_behaviorvlm.io._common import FormatError
from napari_behaviorvlm.io.layers import pose_table_from_points


def test_layer_round_trip(small_project):
    poses = small_project.poses
    table = points_layer_data(poses, "camB")
    back = pose_table_from_points(table.data, table.features, "camB", n_frames=poses.n_frames)
    assert back.individual_names == poses.individual_names
    assert back.keypoint_names == poses.keypoint_names
    np.testing.assert_array_equal(back.points2d[0], poses.points2d[1])
    np.testing.assert_array_equal(back.source[0], poses.source[1])
    np.testing.assert_allclose(back.confidence[0], poses.confidence[1])


def test_layer_errors():
    with pytest.raises(FormatError, match="keypoint"):
        pose_table_from_points(np.zeros((1, 3)), pd.DataFrame({"x": [1]}), "c")
    with pytest.raises(FormatError, match="source"):
        pose_table_from_points(np.zeros((1, 3)), pd.DataFrame({"keypoint": ["a"],
                                                               "source": ["robot"]}), "c")
