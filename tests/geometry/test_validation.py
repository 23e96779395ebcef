"""Calibration validation: duplicates and implausible values."""

from __future__ import annotations

import numpy as np
import pytest

from napari_behaviorvlm.geometry.camera import Camera, CameraGroup, camera_ring, load_calibration
from napari_behaviorvlm.geometry.validation import calibration_quality, validate_calibration


def _copy(cam: Camera, name: str, **changes) -> Camera:
    values = dict(name=name, size=cam.size, matrix=cam.matrix.copy(), dist=cam.dist.copy(),
                  rvec=cam.rvec.copy(), tvec=cam.tvec.copy())
    values.update(changes)
    return Camera(**values)


def test_good_rig_has_no_issues():
    group = camera_ring(6)
    assert validate_calibration(group) == []
    quality = calibration_quality(group)
    assert quality["ok"] and quality["n_cameras"] == 6 and quality["errors"] == 0
    assert 500 < quality["baseline_mm"]["min"] < quality["baseline_mm"]["max"] < 1300


def test_shipped_minimal_session_has_side_copied_from_top(shared_datasets):
    group = load_calibration(shared_datasets / "sleap-anipose-minimal-session" / "calibration.toml")
    issues = validate_calibration(group)
    errors = [i for i in issues if i.severity == "error"]
    assert len(errors) == 1
    (issue,) = errors
    assert set(issue.cameras) == {"side", "top"} and "identical" in issue.message
    # the only warnings: its single-k1 model cannot be inverted near the image corners
    warnings = [i for i in issues if i.severity == "warning"]
    assert all("folds back" in i.message for i in warnings)
    assert {i.camera for i in warnings} <= set(group.names)
    quality = calibration_quality(group)
    assert not quality["ok"] and quality["errors"] == 1


def test_near_duplicate_and_same_position():
    group = camera_ring(3)
    near = _copy(group[0], "near", tvec=group[0].tvec + 0.5, rvec=group[0].rvec + 1e-4)
    turned = _copy(group[1], "turned", rvec=group[1].rvec + np.array([0.0, 0.3, 0.0]))
    turned.tvec = -turned.rotation @ group[1].center  # same centre, other orientation
    issues = validate_calibration(CameraGroup(list(group) + [near, turned]))
    by_pair = {frozenset(i.cameras): i for i in issues}
    assert by_pair[frozenset({"cam0", "near"})].severity == "error"
    assert "near-duplicate" in by_pair[frozenset({"cam0", "near"})].message
    assert by_pair[frozenset({"cam1", "turned"})].severity == "warning"
    assert len(issues) == 2


@pytest.mark.parametrize(
    ("change", "severity", "text"),
    [
        ({"matrix": [[-900.0, 0, 640], [0, -900.0, 512], [0, 0, 1]]}, "error", "focal length"),
        ({"matrix": [[900.0, 0, 4000], [0, 900.0, 512], [0, 0, 1]], "dist": [0.0] * 5}, "error",
         "outside"),
        ({"matrix": [[900.0, 0, 1000], [0, 900.0, 512], [0, 0, 1]]}, "warning", "far from"),
        ({"dist": [-2.5, 0, 0, 0, 0]}, "error", "folds back"),
        ({"dist": [-0.5, 0, 0, 0, 0]}, "warning", "folds back"),
        ({"dist": [0.9, 2.5, 0, 0, 0]}, "warning", "radial distortion"),
        ({"dist": [0.0, 0, 0.3, 0, 0]}, "warning", "tangential"),
        ({"tvec": [np.nan, 0, 0]}, "error", "non-finite"),
    ],
)
def test_implausible_values(change, severity, text):
    group = camera_ring(2)
    bad = _copy(group[1], "bad", **change)
    issues = validate_calibration(CameraGroup([group[0], bad]))
    assert [(i.cameras, i.severity) for i in issues] == [(("bad",), severity)]
    assert text in issues[0].message


def test_duplicate_names_and_single_camera():
    cam = camera_ring(2)
    issues = validate_calibration(CameraGroup([cam[0], _copy(cam[1], "cam0")]))
    assert any("used 2 times" in i.message for i in issues)
    assert any("fewer than 2" in i.message for i in validate_calibration(CameraGroup([cam[0]])))


def test_loading_logs_error_level_issues(shared_datasets, caplog):
    path = shared_datasets / "sleap-anipose-minimal-session" / "calibration.toml"
    with caplog.at_level("WARNING", logger="napari_behaviorvlm.geometry.camera"):
        load_calibration(path)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "identical to camera side" in messages[0]
    assert str(path) in messages[0]
