import pytest

from napari_behaviorvlm.core.skeleton import Skeleton, default_qd_mouse_skeleton


def test_default_qd_mouse_has_12_keypoints_in_4_regions():
    sk = default_qd_mouse_skeleton()
    assert sk.n_keypoints == 12
    assert {r: len(k) for r, k in sk.regions.items()} == {"ears": 2, "back": 3, "paws": 4, "tail": 3}
    assert sk.region_of("paw_hind_left") == "paws"
    mirror = sk.mirror_index()
    assert mirror[sk.index("ear_left")] == sk.index("ear_right")
    assert mirror[sk.index("back_mid")] == sk.index("back_mid")


def test_skeleton_round_trips_through_dict():
    sk = default_qd_mouse_skeleton()
    assert Skeleton.from_dict(sk.to_dict()) == sk


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(keypoints=["a", "a"], regions={}), "unique"),
        (dict(keypoints=["a", "b"], regions={"r": ["a", "c"]}), "unknown keypoint 'c'"),
        (dict(keypoints=["a", "b"], regions={"r": ["a"], "s": ["a", "b"]}), "in regions"),
        (dict(keypoints=["a", "b"], regions={"r": ["a"]}), "not in any region"),
        (dict(keypoints=["a", "b"], regions={}, edges=[("a", "z")]), "unknown keypoint"),
    ],
)
def test_invalid_skeletons_are_rejected_with_a_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Skeleton(**kwargs)
