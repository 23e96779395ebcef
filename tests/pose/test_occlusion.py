"""Body occlusion: which dots a camera cannot see, learned from the seeds."""

from __future__ import annotations

import numpy as np
import pytest

from napari_behaviorvlm.core.skeleton import Skeleton, default_qd_mouse_skeleton
from napari_behaviorvlm.geometry.camera import Camera, CameraGroup, look_at
from napari_behaviorvlm.pose.occlusion import BodyOccluders, fit_body_occluders
from napari_behaviorvlm.pose.pipeline import SETTINGS_KEY, LabelingConfig, run_labeling
from napari_behaviorvlm.pose.refine import BodyModel
from tests.pose.pose_fixtures import new_project, small_sim

SKELETON = default_qd_mouse_skeleton()
K = {name: i for i, name in enumerate(SKELETON.keypoints)}


def _camera(name: str, position, target=(10.0, 0.0, 10.0), up=(0.0, 0.0, 1.0)) -> Camera:
    rvec, tvec = look_at(position, target, up)
    return Camera(name, (1000, 1000), np.array([[800.0, 0, 500], [0, 800.0, 500], [0, 0, 1]]),
                  rvec=rvec, tvec=tvec)


def _mouse(shift=(0.0, 0.0, 0.0)) -> np.ndarray:
    """(K, 3) mm: a mouse along +x with its back 20 mm above the floor and its paws on it."""
    x = np.full((len(SKELETON.keypoints), 3), np.nan)
    x[K["back_front"]], x[K["back_mid"]], x[K["back_rear"]] = (20, 0, 20), (10, 0, 21), (0, 0, 20)
    x[K["ear_left"]], x[K["ear_right"]] = (30, 4, 20), (30, -4, 20)
    x[K["paw_front_left"]], x[K["paw_front_right"]] = (18, 3, 1), (18, -3, 1)
    x[K["paw_hind_left"]], x[K["paw_hind_right"]] = (2, 6, 1), (2, -6, 1)
    x[K["tail_base"]], x[K["tail_mid"]], x[K["tail_tip"]] = (-10, 0, 15), (-45, 0, 2), (-80, 0, 2)
    return x + np.asarray(shift)


TOP = _camera("top", (10.0, 0.0, 600.0), up=(1.0, 0.0, 0.0))
LOW_SIDE = _camera("low_side", (10.0, -600.0, 1.0), target=(10.0, 0.0, 1.0))
MODEL = BodyOccluders(trunk=(K["back_front"], K["back_mid"], K["back_rear"]), up=(0.0, 0.0, 1.0),
                      depth_mm=9.0, head=(K["ear_left"], K["ear_right"]), head_mm=5.0)


def test_a_paw_under_the_belly_is_hidden_from_above_and_seen_from_the_floor():
    group = CameraGroup([TOP, LOW_SIDE])
    hidden = MODEL.hidden(group, _mouse()[None])
    for paw in ("paw_front_left", "paw_front_right", "paw_hind_left", "paw_hind_right"):
        assert hidden[0, 0, K[paw]], paw
        assert not hidden[1, 0, K[paw]], paw
    # the dots the volume is built from, and the tail behind it, are never hidden from above
    for name in ("back_front", "back_mid", "back_rear", "ear_left", "ear_right", "tail_tip"):
        assert not hidden[0, 0, K[name]], name


def test_an_uncertain_position_is_hidden_only_when_its_whole_ball_is():
    group = CameraGroup([TOP])
    x = _mouse()[None]
    sigma = np.zeros(x.shape[:2])
    assert MODEL.hidden(group, x, sigma)[0, 0, K["paw_hind_left"]]
    # the hind paw's ray passes 3.0 mm inside the rear sphere, 2.0 mm deeper than the edge:
    # with half the uncertainty counted, 1 mm keeps it hidden, 6 mm do not, and an unknown
    # uncertainty never hides
    sigma[0, K["paw_hind_left"]] = 1.0
    assert MODEL.hidden(group, x, sigma)[0, 0, K["paw_hind_left"]]
    sigma[0, K["paw_hind_left"]] = 6.0
    assert not MODEL.hidden(group, x, sigma)[0, 0, K["paw_hind_left"]]
    sigma[0, K["paw_hind_left"]] = np.nan
    assert not MODEL.hidden(group, x, sigma)[0, 0, K["paw_hind_left"]]
    assert MODEL.hidden(group, x, sigma)[0, 0, K["paw_hind_right"]]


def test_the_other_mouse_hides_what_lies_behind_it():
    near, far = _mouse(), _mouse(shift=(0.0, 60.0, 0.0))
    side = _camera("side", (10.0, -600.0, 5.0), target=(10.0, 0.0, 10.0))  # below the backs
    group = CameraGroup([side])
    both = MODEL.hidden(group, np.stack([near, far]))
    alone = MODEL.hidden(group, far[None])
    # the far mouse's back is behind the near mouse's body only when the near mouse is there
    assert both[0, 1, K["back_mid"]] and not alone[0, 0, K["back_mid"]]
    assert not both[0, 0, K["back_mid"]]


def test_missing_points_hide_nothing_and_are_not_hidden():
    group = CameraGroup([TOP])
    x = _mouse()
    x[K["back_mid"]] = np.nan
    x[K["paw_front_left"]] = (31, 0, 5)  # under the head
    assert not MODEL.hidden(group, x[None]).any()
    x = _mouse()
    x[K["paw_hind_left"]] = np.nan
    hidden = MODEL.hidden(group, x[None])
    assert not hidden[0, 0, K["paw_hind_left"]] and hidden[0, 0, K["paw_hind_right"]]


def _ring(up=(0.0, 0.0, 1.0), rotate=np.eye(3)) -> CameraGroup:
    cams = []
    for i, angle in enumerate(np.linspace(0, 2 * np.pi, 6, endpoint=False)):
        pos = rotate @ np.array([400 * np.cos(angle), 400 * np.sin(angle), 150 + 150 * (i % 2)])
        cams.append(_camera(f"c{i}", pos, target=rotate @ np.array([10.0, 0.0, 10.0]), up=up))
    cams.append(_camera("top", rotate @ np.array([10.0, 0.0, 600.0]),
                        target=rotate @ np.array([10.0, 0.0, 10.0]), up=rotate @ np.array([1.0, 0, 0])))
    return CameraGroup(cams)


def _seed_views(group: CameraGroup, seeds: list[np.ndarray], truth: BodyOccluders):
    """Seed labels as a person gives them: every keypoint the true volume does not hide."""
    return [~truth.hidden(group, x) for x in seeds]


@pytest.mark.parametrize("flip", [False, True])
def test_the_volume_and_the_up_direction_are_learned_from_the_seeds(flip):
    # a world whose "up" is -y (a calibration board standing on its edge) when flipped
    rotate = np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]) if flip else np.eye(3)
    up = tuple(rotate @ np.array([0.0, 0.0, 1.0]))
    group = _ring(up=up, rotate=rotate)
    seeds = [(rotate @ _mouse(shift=s).T).T[None] for s in ((0, 0, 0), (5, 10, 0), (-8, -5, 0))]
    truth = BodyOccluders(MODEL.trunk, up, 9.0, MODEL.head, 5.0)
    body = BodyModel.from_seeds(SKELETON, seeds)
    fit = fit_body_occluders(SKELETON, body.midline, group, seeds, _seed_views(group, seeds, truth))
    assert fit is not None
    assert np.allclose(fit.up, up)
    assert fit.trunk == MODEL.trunk and fit.head == MODEL.head
    # a volume that explains the seeds exactly as the truth does
    for x, labeled in zip(seeds, _seed_views(group, seeds, truth)):
        assert np.array_equal(fit.hidden(group, x), ~labeled)


def test_no_volume_without_a_back_line_or_anything_to_explain():
    group = _ring()
    seeds = [_mouse()[None]]
    body = BodyModel.from_seeds(SKELETON, seeds)
    everything = [np.ones((len(group), 1, len(SKELETON.keypoints)), bool)]
    assert fit_body_occluders(SKELETON, body.midline, group, seeds, everything) is None
    two = Skeleton(["a", "b"], {"all": ["a", "b"]}, [("a", "b")], [])
    assert fit_body_occluders(two, [0, 1], group, [np.zeros((1, 2, 3))],
                              [np.ones((len(group), 1, 2), bool)]) is None


def test_labeling_takes_fewer_labels_where_the_body_hides_the_dot():
    sim, seeds, source = small_sim()
    frames = [f for f in range(sim.n_frames) if f not in seeds]
    at_hidden, at_visible = {}, {}
    for use in (False, True):
        project = new_project(sim, seeds)
        run_labeling(project, frame_source=source, config=LabelingConfig(use_occlusion=use))
        labeled = np.isfinite(project.poses.points2d[..., 0])[:, frames]
        at_hidden[use] = int((labeled & sim.occluded[:, frames]).sum())
        at_visible[use] = int((labeled & sim.visible[:, frames]).sum())
        # what was learned is recorded in the project's settings
        volume = project.settings[SETTINGS_KEY]["body_volume"]
        assert (volume is not None and volume["depth_mm"] > 0) == use
        # the seeds' labels are kept either way
        assert np.array_equal(project.poses.points2d[:, seeds],
                              new_project(sim, seeds).poses.points2d[:, seeds], equal_nan=True)
    # (44 -> 36 labels on dots the body hides, 1,287 -> 1,280 on visible ones when written)
    assert at_hidden[True] < at_hidden[False]
    assert at_visible[True] > 0.99 * at_visible[False]
