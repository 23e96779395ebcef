import numpy as np
import pytest

from napari_behaviorvlm.core.pose import Flag, PoseTable, Source, flag_reasons


def make_table(frames=5):
    return PoseTable.empty(["cam0", "cam1"], frames, ["mouse0", "mouse1"], ["a", "b", "c"])


def test_empty_table_shapes_and_dtypes():
    t = make_table()
    assert t.points2d.shape == (2, 5, 2, 3, 2) and t.points2d.dtype == np.float64
    assert t.points3d.shape == (5, 2, 3, 3)
    assert t.source.dtype == np.int8 and t.flags.dtype == np.uint16
    assert not t.labeled_mask().any()
    assert (t.n_cameras, t.n_frames, t.n_individuals, t.n_keypoints) == (2, 5, 2, 3)


def test_wrong_shape_is_rejected_naming_the_array():
    t = make_table()
    arrays = t.to_arrays()
    arrays["confidence"] = np.zeros((2, 5, 2, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="confidence"):
        PoseTable.from_arrays(t.names(), arrays)


def test_set_label_human_gets_full_confidence_and_clears_flags():
    t = make_table()
    t.flags[1, 2, 0, 1] = Flag.SWAP
    t.set_label("cam1", 2, "mouse0", "b", (10.5, 20.25), Source.HUMAN)
    assert t.points2d[1, 2, 0, 1].tolist() == [10.5, 20.25]
    assert t.confidence[1, 2, 0, 1] == 1.0
    assert t.flags[1, 2, 0, 1] == 0
    assert t.human_frames() == [2]
    t.set_label(1, 2, 0, 1, None)
    assert t.source[1, 2, 0, 1] == Source.NONE and np.isnan(t.points2d[1, 2, 0, 1]).all()


def test_merge_model_results_keeps_human_labels():
    t = make_table()
    t.set_label(0, 1, 0, 0, (1.0, 1.0), Source.SEED)
    model = make_table()
    model.points2d[:] = 50.0
    model.source[:] = Source.MODEL
    model.confidence[:] = 0.5
    t.merge_model_results(model, frames=[1, 2])
    assert t.points2d[0, 1, 0, 0].tolist() == [1.0, 1.0]
    assert t.source[0, 1, 0, 0] == Source.SEED
    assert t.points2d[0, 1, 0, 1].tolist() == [50.0, 50.0]
    assert t.source[1, 2, 1, 2] == Source.MODEL
    assert np.isnan(t.points2d[0, 3]).all()  # frame not merged


def test_flag_reasons_and_equality():
    assert flag_reasons(Flag.HIGH_REPROJ_ERROR | Flag.FEW_VIEWS) == [
        "high reprojection error", "seen in fewer than 2 views",
    ]
    t = make_table()
    c = t.copy()
    assert t.equals(c)
    c.flags[0, 0, 0, 0] = Flag.JUMP
    assert not t.equals(c)
    assert t.flagged_frames() == [] and c.flagged_frames() == [0]
