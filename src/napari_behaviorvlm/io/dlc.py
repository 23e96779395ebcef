"""DeepLabCut: export a labeling project, import CollectedData (single and multi-animal).

Project layout written by :func:`export_dlc_project` (see docs/formats/dlc.md)::

    <out>/config.yaml                                  DLC project config (keys as DLC writes)
    <out>/labeled-data/<video stem>/imgNNNN.png        one image per exported frame
    <out>/labeled-data/<video stem>/CollectedData_<scorer>.h5 / .csv   seed + human labels
    <out>/labeled-data/<video stem>/machinelabels-iter0.h5 / machinelabels.csv
                                                       model labels (with likelihood) of the
                                                       frames flagged for review

One DLC "video" per camera. Image numbers are *video* frames (session frame + the camera's frame
offset), zero-padded to ``ceil(log10(n_video_frames))`` digits as DLC's frame extraction does.
Tables are pandas DataFrames: columns ``scorer/bodyparts/coords`` (one animal) or
``scorer/individuals/bodyparts/coords`` (several), coords ``x, y`` (CollectedData, no
likelihood) or ``x, y, likelihood`` (machine labels); rows a MultiIndex
``("labeled-data", <video stem>, "imgNNNN.png")`` as DLC >= 2.2 writes; HDF5 key
``df_with_missing``. Missing points are NaN (empty cells in the CSV).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from napari_behaviorvlm.core.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from napari_behaviorvlm.core.pose import PoseTable, Source
from napari_behaviorvlm.core.project import Project
from napari_behaviorvlm.io._common import (
    FormatError, check_all_writable, project_stem, read_frames, video_stems,
)

__all__ = [
    "dlc_config", "export_dlc_project", "import_dlc", "predictions_dataframe", "read_dlc_table",
    "write_dlc_table",
]

DLC_KEY = "df_with_missing"


# ----------------------------------------------------------------------------- names
def image_name(video_frame: int, n_video_frames: int) -> str:
    """DLC's image name for a video frame: ``img`` + index zero-padded to
    ``ceil(log10(n_video_frames))`` digits (DLC's ``extract_frames``) + ``.png``."""
    digits = max(1, int(math.ceil(math.log10(max(n_video_frames, 2)))))
    return f"img{int(video_frame):0{digits}d}.png"


def dlc_config(project: Project, scorer: str, task: str, project_path: Path,
               date: _dt.date | None = None) -> dict:
    """The ``config.yaml`` content of a DLC project for ``project`` (key order as DLC's
    ``create_config_template``)."""
    date = date or _dt.date.today()
    session, sk, poses = project.session, project.skeleton, project.poses
    multi = poses.n_individuals > 1
    video_sets = {}
    calib = session.calibration
    for cam, path in zip(session.cameras, session.video_paths()):
        w, h = (calib[cam.name].size if calib is not None and cam.name in calib.names else (0, 0))
        video_sets[str(path.resolve())] = {"crop": f"0, {int(w)}, 0, {int(h)}"}
    cfg = {
        "Task": task,
        "scorer": scorer,
        "date": date.strftime("%B")[:3] + str(date.day),
        "multianimalproject": multi,
        "identity": False if multi else None,
        "project_path": str(Path(project_path).resolve()),
        "engine": "pytorch",
        "video_sets": video_sets,
    }
    if multi:
        cfg.update({
            "individuals": list(poses.individual_names),
            "uniquebodyparts": [],
            "multianimalbodyparts": list(sk.keypoints),
            "bodyparts": "MULTI!",
        })
    else:
        cfg["bodyparts"] = list(sk.keypoints)
    cfg.update({
        "start": 0,
        "stop": 1,
        "numframes2pick": 20,
        "skeleton": [list(e) for e in sk.edges],
        "skeleton_color": "black",
        "pcutoff": 0.6,
        "dotsize": 12,
        "alphavalue": 0.7,
        "colormap": "rainbow",
        "TrainingFraction": [0.95],
        "iteration": 0,
        "default_net_type": "resnet_50",
        "default_augmenter": "default",
    })
    if multi:
        cfg["default_track_method"] = "ellipse"
    cfg.update({
        "snapshotindex": -1,
        "detector_snapshotindex": -1,
        "batch_size": 8,
        "detector_batch_size": 1,
        "cropping": False,
        "x1": 0,
        "x2": 640,
        "y1": 277,
        "y2": 624,
        "corner2move2": [50, 50],
        "move2corner": True,
        "SuperAnimalConversionTables": None,
    })
    return cfg


# ----------------------------------------------------------------------------- tables
def _columns(scorer: str, individuals: Sequence[str] | None, bodyparts: Sequence[str],
             coords: Sequence[str]) -> pd.MultiIndex:
    if individuals is None:
        return pd.MultiIndex.from_product([[scorer], list(bodyparts), list(coords)],
                                          names=["scorer", "bodyparts", "coords"])
    return pd.MultiIndex.from_product([[scorer], list(individuals), list(bodyparts), list(coords)],
                                      names=["scorer", "individuals", "bodyparts", "coords"])


def camera_dataframe(poses: PoseTable, camera: int, frames: Sequence[int], scorer: str,
                     video_stem: str, n_video_frames: int, frame_offset: int = 0,
                     likelihood: bool = False, only_human: bool = False) -> pd.DataFrame:
    """A DLC table of one camera's labels on session ``frames``.

    Args:
        likelihood: Add a ``likelihood`` coordinate (= confidence; 1 for seed/human labels).
        only_human: Keep only seed and human labels (model labels become NaN), as
            CollectedData must hold nothing but ground truth.

    Returns:
        A DataFrame ``(len(frames), [M x] K x coords)``, rows indexed
        ``("labeled-data", video_stem, imgNNNN.png)``.
    """
    frames = [int(f) for f in frames]
    multi = poses.n_individuals > 1
    coords = ["x", "y", "likelihood"] if likelihood else ["x", "y"]
    block = poses.points2d[camera][frames]  # (n, M, K, 2)
    if only_human:
        block = np.where(poses.human_mask()[camera][frames][..., None], block, np.nan)
    if likelihood:
        conf = poses.confidence[camera][frames].astype(np.float64)[..., None]
        conf = np.where(np.isnan(block[..., :1]), np.nan, conf)
        block = np.concatenate([block, conf], axis=-1)
    values = block.reshape(len(frames), -1) if multi else block[:, 0].reshape(len(frames), -1)
    index = pd.MultiIndex.from_tuples(
        [("labeled-data", video_stem, image_name(f + frame_offset, n_video_frames))
         for f in frames])
    columns = _columns(scorer, poses.individual_names if multi else None, poses.keypoint_names,
                       coords)
    return pd.DataFrame(values, index=index, columns=columns)


def predictions_dataframe(poses: PoseTable, camera: int,
                          individuals: Sequence[int] | None = None,
                          scorer: str = "behaviorvlm") -> pd.DataFrame:
    """One camera's labels on **every** session frame as a DLC prediction table (what DLC's
    ``analyze_videos`` writes): index ``0 .. F-1``, coords ``x, y, likelihood``; columns
    ``scorer/bodyparts/coords`` for one individual, ``scorer/individuals/bodyparts/coords`` for
    several. Likelihood is the confidence (1 for seed/human labels) and 0 where there is no label
    (x, y NaN).

    Args:
        individuals: Individual indices to include (default all).
    """
    individuals = list(range(poses.n_individuals)) if individuals is None else list(individuals)
    pts = poses.points2d[camera][:, individuals]  # (F, M', K, 2)
    conf = np.where(poses.human_mask()[camera][:, individuals], 1.0,
                    poses.confidence[camera][:, individuals]).astype(np.float64)
    conf = np.where(np.isnan(pts[..., 0]), 0.0, np.nan_to_num(conf, nan=0.0))
    values = np.concatenate([pts, conf[..., None]], axis=-1).reshape(poses.n_frames, -1)
    names = [poses.individual_names[i] for i in individuals]
    columns = _columns(scorer, names if len(names) > 1 else None, poses.keypoint_names,
                       ["x", "y", "likelihood"])
    return pd.DataFrame(values, columns=columns, index=np.arange(poses.n_frames))


def write_dlc_table(df: pd.DataFrame, h5_path: Path | None, csv_path: Path | None) -> None:
    """Write a DLC table as HDF5 (key ``df_with_missing``) and/or CSV, atomically."""
    if h5_path is not None:
        with atomic_path(h5_path) as tmp:
            df.to_hdf(tmp, key=DLC_KEY, mode="w")
    if csv_path is not None:
        atomic_write_text(csv_path, df.to_csv())


def _csv_layout(path: Path) -> tuple[int, int]:
    """(number of header rows, number of index columns) of a DLC CSV."""
    with open(path, encoding="utf-8") as handle:
        lines = [handle.readline() for _ in range(5)]
    first = [cell.strip() for cell in lines[0].rstrip("\r\n").split(",")]
    if not first or first[0] != "scorer":
        raise FormatError(f"{path} is not a DeepLabCut table: its first cell is {first[0]!r}, "
                          "expected 'scorer'")
    n_header = 1
    while n_header < len(lines) and lines[n_header].split(",")[0].strip() in (
            "individuals", "bodyparts", "coords"):
        n_header += 1
    n_index = 1
    while n_index < len(first) and first[n_index] == "":
        n_index += 1
    return n_header, n_index


def read_dlc_table(path: str | Path) -> pd.DataFrame:
    """Read a DLC table (``.h5`` key ``df_with_missing`` or ``.csv``) exactly as DLC stores it:
    columns with level names ``scorer, [individuals,] bodyparts, coords``.

    Raises:
        FileNotFoundError: no file. FormatError: not a DLC table.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"DeepLabCut file not found: {path}")
    if path.suffix.lower() in (".h5", ".hdf5"):
        try:
            df = pd.read_hdf(path, DLC_KEY)
        except KeyError:
            with pd.HDFStore(path, mode="r") as store:
                keys = store.keys()
            if not keys:
                raise FormatError(f"{path} holds no table") from None
            df = pd.read_hdf(path, keys[0])
    elif path.suffix.lower() == ".csv":
        n_header, n_index = _csv_layout(path)
        df = pd.read_csv(path, header=list(range(n_header)), index_col=list(range(n_index)),
                         float_precision="round_trip")
        names = ["scorer", "individuals", "bodyparts", "coords"] if n_header == 4 else \
            ["scorer", "bodyparts", "coords"]
        df.columns = df.columns.set_names(names)
    else:
        raise FormatError(f"{path}: DeepLabCut tables are .h5 or .csv files")
    if not isinstance(df.columns, pd.MultiIndex) or "bodyparts" not in df.columns.names:
        raise FormatError(f"{path} is not a DeepLabCut table (column levels "
                          f"{list(df.columns.names)})")
    return df


_DIGITS = re.compile(r"(\d+)(?!.*\d)")


def _row_key(index_value, path: Path) -> tuple[str | None, int]:
    """(video folder or None, video frame) of one table row."""
    if isinstance(index_value, (int, np.integer)):
        return None, int(index_value)
    parts = list(index_value) if isinstance(index_value, tuple) else \
        re.split(r"[\\/]", str(index_value))
    parts = [str(p) for p in parts if str(p) != ""]
    video = parts[-2] if len(parts) >= 2 and parts[-2] != "labeled-data" else None
    match = _DIGITS.search(Path(parts[-1]).stem)
    if match is None:
        raise FormatError(f"{path}: row {index_value!r} names no frame number")
    return video, int(match.group(1))


def _long_form(path: Path) -> pd.DataFrame:
    """A DLC table as rows (camera, video frame, individual, bodypart, x, y, likelihood)."""
    df = read_dlc_table(path)
    multi = "individuals" in df.columns.names
    keys = [_row_key(v, path) for v in df.index]
    cameras = np.array([v if v is not None else path.parent.name for v, _ in keys], dtype=object)
    frames = np.array([f for _, f in keys], dtype=int)
    values = df.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    individuals = df.columns.get_level_values("individuals") if multi else [""] * df.shape[1]
    position = {(i, b, c): j for j, (i, b, c) in enumerate(zip(
        individuals, df.columns.get_level_values("bodyparts"),
        df.columns.get_level_values("coords")))}
    parts = []
    for individual, bodypart in dict.fromkeys((i, b) for i, b, _ in position):
        if any((individual, bodypart, axis) not in position for axis in "xy"):
            raise FormatError(f"{path}: bodypart {bodypart!r} lacks an x or y column")
        lik = position.get((individual, bodypart, "likelihood"))
        parts.append(pd.DataFrame({
            "camera": cameras, "frame": frames, "individual": individual, "bodypart": bodypart,
            "x": values[:, position[(individual, bodypart, "x")]],
            "y": values[:, position[(individual, bodypart, "y")]],
            "likelihood": values[:, lik] if lik is not None else np.nan,
        }))
    return pd.concat(parts, ignore_index=True)


def import_dlc(path: str | Path, project: Project | None = None, source: Source = Source.SEED,
               camera: str | None = None) -> PoseTable:
    """Read DeepLabCut labels (CollectedData or machine labels; ``.h5`` or ``.csv``; single or
    multi-animal; a file, or a DLC project folder whose ``labeled-data/*/CollectedData_*``
    files are all read) into a :class:`PoseTable`.

    Args:
        project: When given, the result has the project's cameras/frames/individuals/keypoints:
            each ``labeled-data/<video>`` folder is matched to the camera whose video stem (or
            name) it is, and image numbers (video frames) are shifted by the camera's offset.
            Without it: one camera per video folder (``camera`` names a table without one, else
            the file's folder name), frames ``0 .. highest image number``.
        source: Source of labels without likelihood (``SEED`` or ``HUMAN`` = ground truth).
            Tables with a likelihood column (machine labels) come in as ``MODEL`` labels with
            ``confidence = likelihood``.

    Raises:
        FileNotFoundError: no file. FormatError: unreadable layout, or names not in ``project``.
    """
    path = Path(path)
    source = Source(source)
    if path.is_dir():
        files = sorted(path.glob("labeled-data/*/CollectedData_*.h5")) or \
            sorted(path.glob("labeled-data/*/CollectedData_*.csv"))
        if not files:
            raise FormatError(f"{path} is not a DeepLabCut project with labels: no "
                              "labeled-data/*/CollectedData_*.h5 or .csv")
        long = pd.concat([_long_form(f) for f in files], ignore_index=True)
    else:
        long = _long_form(path)
        if camera is not None:
            long["camera"] = camera
    if project is not None:
        return _long_to_project_table(long, project, source, path)
    cameras = list(dict.fromkeys(long["camera"]))
    individuals = [i for i in dict.fromkeys(long["individual"])]
    individuals = [i or "individual0" for i in individuals]
    long["individual"] = long["individual"].replace("", "individual0")
    keypoints = list(dict.fromkeys(long["bodypart"]))
    n_frames = int(long["frame"].max()) + 1 if len(long) else 0
    table = PoseTable.empty(cameras, n_frames, individuals, keypoints)
    _fill(table, long, {c: 0 for c in cameras}, source)
    return table


def _long_to_project_table(long: pd.DataFrame, project: Project, source: Source,
                           path: Path) -> PoseTable:
    poses, session = project.poses, project.session
    table = PoseTable.empty(poses.camera_names, session.n_frames, poses.individual_names,
                            poses.keypoint_names)
    stems = video_stems(project)
    mapping = {}
    for name in dict.fromkeys(long["camera"]):
        for cam, stem in zip(session.cameras, stems):
            if name in (stem, cam.name, Path(cam.video).stem):
                mapping[name] = cam.name
        if name not in mapping:
            if len(session.cameras) == 1:
                mapping[name] = session.cameras[0].name
            else:
                raise FormatError(f"{path}: labels of video {name!r} match no camera of the "
                                  f"project ({session.camera_names}); rename the folder")
    long = long.assign(camera=long["camera"].map(mapping))
    if set(long["individual"]) == {""}:
        long["individual"] = poses.individual_names[0]
    for what, known, column in (("individuals", poses.individual_names, "individual"),
                                ("keypoints", poses.keypoint_names, "bodypart")):
        unknown = sorted(set(long[column]) - set(known))
        if unknown:
            raise FormatError(f"{path}: {what} {unknown} are not in the project ({known})")
    offsets = {c.name: c.frame_offset for c in session.cameras}
    _fill(table, long, offsets, source)
    return table


def _fill(table: PoseTable, long: pd.DataFrame, offsets: dict, source: Source) -> None:
    long = long[np.isfinite(long["x"]) & np.isfinite(long["y"])]
    if not len(long):
        return
    c = long["camera"].map({n: i for i, n in enumerate(table.camera_names)}).to_numpy(int)
    f = long["frame"].to_numpy(int) - long["camera"].map(offsets).to_numpy(int)
    m = long["individual"].map({n: i for i, n in enumerate(table.individual_names)}).to_numpy(int)
    k = long["bodypart"].map({n: i for i, n in enumerate(table.keypoint_names)}).to_numpy(int)
    ok = (f >= 0) & (f < table.n_frames)
    c, f, m, k = c[ok], f[ok], m[ok], k[ok]
    lik = long["likelihood"].to_numpy(float)[ok]
    table.points2d[c, f, m, k] = long[["x", "y"]].to_numpy(float)[ok]
    model = np.isfinite(lik)
    table.source[c, f, m, k] = np.where(model, int(Source.MODEL), int(source))
    table.confidence[c, f, m, k] = np.where(model, lik, 1.0)


# ----------------------------------------------------------------------------- export
def export_dlc_project(
    project: Project,
    out_dir: str | Path,
    scorer: str = "behaviorvlm",
    task: str | None = None,
    images: bool = True,
    machine_labels: bool = True,
    max_machine_frames: int | None = 50,
    overwrite: bool = False,
    date: _dt.date | None = None,
) -> list[Path]:
    """Write a DeepLabCut labeling project (layout in the module docstring).

    Args:
        scorer: DLC scorer name (``CollectedData_<scorer>``).
        task: DLC ``Task`` (default: the project's name).
        images: Write ``imgNNNN.png`` for every exported frame (needs the videos).
        machine_labels: Also write model labels of frames with unreviewed flags as
            ``machinelabels-iter0`` files, for DLC's refine-labels step.
        max_machine_frames: At most this many machine-label frames per camera (those with the
            most flagged labels, then the earliest); None for all.

    Returns:
        Every file written.

    Raises:
        FileExistsError: one of the files exists and ``overwrite`` is False (nothing written).
        FileNotFoundError: ``images`` and a video is missing.
    """
    out_dir = Path(out_dir)
    task = task or project_stem(project)
    poses, session = project.poses, project.session
    stems = video_stems(project)
    human = poses.human_mask().any(axis=(2, 3))  # (C, F)
    n_flagged = np.where(human, 0, np.count_nonzero(poses.flags, axis=(2, 3)))  # (C, F)
    plan = []  # (camera index, stem, human frames, machine frames)
    for c, stem in enumerate(stems):
        h = np.nonzero(human[c])[0].tolist()
        mflags = []
        if machine_labels:
            candidates = np.nonzero(n_flagged[c])[0]
            order = np.lexsort((candidates, -n_flagged[c][candidates]))
            mflags = sorted(candidates[order][:max_machine_frames].tolist())
        if h or mflags:
            plan.append((c, stem, h, mflags))
    files = [out_dir / "config.yaml"]
    for c, stem, h, mflags in plan:
        folder = out_dir / "labeled-data" / stem
        n_video = session.n_frames + session.cameras[c].frame_offset
        if images:
            files += [folder / image_name(f + session.cameras[c].frame_offset, n_video)
                      for f in sorted(set(h) | set(mflags))]
        if h:
            files += [folder / f"CollectedData_{scorer}.h5", folder / f"CollectedData_{scorer}.csv"]
        if mflags:
            files += [folder / "machinelabels-iter0.h5", folder / "machinelabels.csv"]
    check_all_writable(files, overwrite)

    cfg = dlc_config(project, scorer, task, out_dir, date=date)
    atomic_write_text(out_dir / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    for c, stem, h, mflags in plan:
        cam = session.cameras[c]
        folder = out_dir / "labeled-data" / stem
        n_video = session.n_frames + cam.frame_offset
        if images:
            wanted = [f + cam.frame_offset for f in sorted(set(h) | set(mflags))]
            for index, frame in read_frames(session.video_paths()[c], wanted):
                atomic_write_bytes(folder / image_name(index, n_video), _png(frame))
        if h:
            df = camera_dataframe(poses, c, h, scorer, stem, n_video, cam.frame_offset,
                                  only_human=True)
            write_dlc_table(df, folder / f"CollectedData_{scorer}.h5",
                            folder / f"CollectedData_{scorer}.csv")
        if mflags:
            df = camera_dataframe(poses, c, mflags, f"{scorer}_model", stem, n_video,
                                  cam.frame_offset, likelihood=True)
            write_dlc_table(df, folder / "machinelabels-iter0.h5", folder / "machinelabels.csv")
    return files


def _png(frame: np.ndarray) -> bytes:
    arr = np.asarray(frame)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr)
    if not ok:
        raise ValueError("could not encode a frame as PNG")
    return buf.tobytes()
