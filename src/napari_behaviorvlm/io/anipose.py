"""anipose: per-camera 2D predictions, the calibration and the 3D result, in anipose's layout.

:func:`export_anipose` writes an anipose project (``nesting = 1``) that ``anipose triangulate``
can run on, and the 3D result anipose itself would write (see docs/formats/anipose.md)::

    <out>/config.toml                                     project config with cam_regex
    <out>/<session>/calibration/calibration.toml          the cameras (same names as below)
    <out>/<session>/pose-2d/<group>-cam<camera>.h5        one DLC-style file per camera
    <out>/<session>/pose-3d/<group>.csv                   triangulated keypoints

``<group>`` is ``<session>`` for one animal and ``<session>_<individual>`` for several (anipose
is single-animal: each individual is its own triangulation group). Camera names are recovered
from file names with ``cam_regex = '-cam(.+)$'`` (written into ``config.toml``).

pose-2d files: pandas HDF5 (key ``df_with_missing``), columns ``scorer/bodyparts/coords`` with
``x, y, likelihood``, one row for **every** session frame (index 0..F-1); missing labels have
NaN x/y and likelihood 0. Likelihood is the label confidence (1 for seed/human labels).

pose-3d CSV: per keypoint ``<kp>_x, <kp>_y, <kp>_z`` (mm, calibration world frame),
``<kp>_error`` (mean reprojection error in px over the cameras with a label),
``<kp>_ncams`` (cameras used), ``<kp>_score`` (lowest confidence among them); then
``M_00 .. M_22`` (identity: no axis alignment) and ``center_0 .. center_2`` (zeros), and
``fnum`` (session frame). Untriangulated points are NaN (``ncams`` too), as anipose writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tomli_w

from napari_behaviorvlm.core.atomic import atomic_path, atomic_write_text
from napari_behaviorvlm.core.pose import PoseTable
from napari_behaviorvlm.core.project import Project
from napari_behaviorvlm.geometry.camera import Camera, CameraGroup, save_calibration
from napari_behaviorvlm.io._common import (
    FormatError, check_all_writable, project_stem, safe_name,
)
from napari_behaviorvlm.io.dlc import predictions_dataframe

__all__ = ["CAM_REGEX", "anipose_3d_dataframe", "export_anipose", "read_anipose_3d"]

CAM_REGEX = "-cam(.+)$"


def _anipose_names(project: Project) -> list[str]:
    names = [safe_name(n, fallback=f"cam{i}") for i, n in enumerate(project.session.camera_names)]
    if len(set(names)) != len(names):
        raise ValueError(f"camera names {project.session.camera_names} are not unique once "
                         "reduced to letters, digits, _ and .; rename the cameras")
    return names


def anipose_3d_dataframe(poses: PoseTable, individual: int) -> pd.DataFrame:
    """One individual's 3D points as anipose's triangulation CSV table (columns in the module
    docstring), one row per session frame."""
    pts = poses.points3d[:, individual]  # (F, K, 3)
    ok = np.isfinite(pts).all(axis=-1)
    labeled = poses.labeled_mask()[:, :, individual]  # (C, F, K)
    err = np.where(labeled, poses.reproj_error[:, :, individual], np.nan)
    n_err = np.sum(~np.isnan(err), axis=0)
    mean_err = np.where(n_err > 0, np.nansum(err, axis=0) / np.maximum(n_err, 1), np.nan)
    conf = np.where(poses.human_mask()[:, :, individual], 1.0, poses.confidence[:, :, individual])
    conf = np.where(labeled, conf, np.inf).min(axis=0)
    conf = np.where(np.isfinite(conf), conf, np.nan)
    ncams = np.where(ok, poses.n_views[:, individual].astype(float), np.nan)
    data = {}
    for k, name in enumerate(poses.keypoint_names):
        for a, axis in enumerate("xyz"):
            data[f"{name}_{axis}"] = pts[:, k, a]
        data[f"{name}_error"] = np.where(ok[:, k], mean_err[:, k], np.nan)
        data[f"{name}_ncams"] = ncams[:, k]
        data[f"{name}_score"] = np.where(ok[:, k], conf[:, k], np.nan)
    for i in range(3):
        for j in range(3):
            data[f"M_{i}{j}"] = float(i == j)
    for i in range(3):
        data[f"center_{i}"] = 0.0
    data["fnum"] = np.arange(poses.n_frames)
    return pd.DataFrame(data)


def read_anipose_3d(path: str | Path, keypoints: list[str] | None = None
                    ) -> tuple[list[str], np.ndarray, pd.DataFrame]:
    """Read an anipose 3D CSV: ``(keypoints, points (F, K, 3) mm, table)``, rows ordered by
    ``fnum``. Keypoints are in column order unless ``keypoints`` gives the order.

    Raises:
        FileNotFoundError: no file. FormatError: a keypoint lacks an x, y or z column.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"anipose 3D file not found: {path}")
    df = pd.read_csv(path, float_precision="round_trip")
    if "fnum" in df.columns:
        df = df.sort_values("fnum").reset_index(drop=True)
    if keypoints is None:
        keypoints = list(dict.fromkeys(c[:-2] for c in df.columns if c.endswith("_x")))
    missing = [f"{k}_{a}" for k in keypoints for a in "xyz" if f"{k}_{a}" not in df.columns]
    if missing:
        raise FormatError(f"{path} is not an anipose 3D table: lacks columns {missing[:5]}")
    points = np.stack([df[[f"{k}_x", f"{k}_y", f"{k}_z"]].to_numpy(float) for k in keypoints],
                      axis=1)
    return keypoints, points, df


def export_anipose(project: Project, out_dir: str | Path, overwrite: bool = False,
                   scorer: str = "behaviorvlm") -> list[Path]:
    """Write the anipose project described in the module docstring; returns the files written.

    Raises:
        ValueError: the session has no calibration.
        FileExistsError: a file exists and ``overwrite`` is False (nothing is written).
    """
    session, poses = project.session, project.poses
    if session.calibration is None:
        raise ValueError("anipose export needs a calibrated session (no calibration in project)")
    out_dir = Path(out_dir)
    stem = project_stem(project).replace("-cam", "_cam")
    names = _anipose_names(project)
    sess_dir = out_dir / stem
    groups = [stem] if poses.n_individuals == 1 else \
        [f"{stem}_{safe_name(i)}" for i in poses.individual_names]
    files = [out_dir / "config.toml", sess_dir / "calibration" / "calibration.toml"]
    pose2d = {(m, c): sess_dir / "pose-2d" / f"{g}-cam{n}.h5"
              for m, g in enumerate(groups) for c, n in enumerate(names)}
    pose3d = {m: sess_dir / "pose-3d" / f"{g}.csv" for m, g in enumerate(groups)}
    files += list(pose2d.values()) + list(pose3d.values())
    check_all_writable(files, overwrite)

    config = {
        "project": stem,
        "nesting": 1,
        "video_extension": Path(session.cameras[0].video).suffix.lstrip(".") or "mp4",
        "pipeline": {"pose_2d": "pose-2d", "pose_3d": "pose-3d", "calibration_videos":
                     "calibration", "calibration_results": "calibration"},
        "triangulation": {"triangulate": True, "cam_regex": CAM_REGEX, "ransac": False,
                          "optim": False, "score_threshold": 0.5},
    }
    atomic_write_text(files[0], tomli_w.dumps(config))
    calib = session.calibration.subset(session.camera_names)
    renamed = CameraGroup([Camera(name=n, size=c.size, matrix=c.matrix, dist=c.dist, rvec=c.rvec,
                                  tvec=c.tvec) for n, c in zip(names, calib)], calib.metadata)
    save_calibration(renamed, files[1])
    for (m, c), path in pose2d.items():
        with atomic_path(path) as tmp:
            predictions_dataframe(poses, c, [m], scorer).to_hdf(tmp, key="df_with_missing", mode="w")
    for m, path in pose3d.items():
        atomic_write_text(path, anipose_3d_dataframe(poses, m).to_csv(index=False))
    return files
