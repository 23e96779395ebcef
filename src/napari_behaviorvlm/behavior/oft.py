"""The open-field rearing/grooming benchmark (Sturman et al. 2020 OFT data, via DLC2action).

Files (``oft-rearing-grooming/``): ``annotations/<video>.csv`` with three raters' intervals in
seconds (``type``: ``Supported``, ``Unsupported``, ``Grooming``; ``StartEnd``/``Start/End`` mark
the scored period, ``_DEFAULT`` rows are empty markers), and
``pose/<video>DeepCut_*.csv``: DeepLabCut 2D pose (px) of the first 1998 frames at 25 fps, with
the arena corners ``tl, tr, bl, br`` tracked as bodyparts.

Evaluation: frames from the latest start of any rater's scored period to the end of the pose;
for each rater, frame F1 and segmental F1@0.25 of our labels against theirs, and every pair of
raters against each other with the same code (the human ceiling).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import attrs
import numpy as np
import pandas as pd

from napari_behaviorvlm.behavior import metrics
from napari_behaviorvlm.behavior.captions import KinematicThresholds
from napari_behaviorvlm.behavior.overseg import OversegConfig
from napari_behaviorvlm.behavior.pipeline import (
    SegmentationConfig,
    SegmentationInputs,
    segment_inputs,
)

__all__ = ["OFT_FPS", "OftSession", "evaluate_oft", "list_oft_sessions", "load_oft_session",
           "oft_config", "predict_oft", "TUNED_ON",
           "cross_session", "GRID"]

OFT_FPS = 25.0
ARENA_PARTS = ("tl", "tr", "br", "bl")  # polygon order
MOUSE_PARTS = ("nose", "headcentre", "neck", "earl", "earr", "bodycentre", "bcl", "bcr",
               "hipl", "hipr", "tailbase", "tailcentre", "tailtip")
REAR_TYPES = {"Supported": "supported_rear", "Unsupported": "unsupported_rear", "Grooming": "groom"}
START_TYPES = ("StartEnd", "Start/End")


@attrs.define(eq=False)
class OftSession:
    """One video of the dataset.

    Attributes:
        name: video name (``8_01_A_190507134142``).
        points: ``(F, 1, K, 2)`` px, NaN where DLC likelihood < ``min_likelihood``.
        keypoint_names: ``(K,)`` mouse bodyparts.
        arena: ``(4, 2)`` floor corners (median DLC position of tl, tr, br, bl).
        raters: rater name -> per-frame labels ``(F,)`` (``supported_rear``,
            ``unsupported_rear``, ``groom`` or ``""``).
        first_frame: first scored frame (latest start marker of any rater).
    """

    name: str
    points: np.ndarray
    keypoint_names: list[str]
    arena: np.ndarray
    raters: dict[str, np.ndarray]
    first_frame: int

    @property
    def n_frames(self) -> int:
        return int(self.points.shape[0])


def list_oft_sessions(root: str | Path) -> list[str]:
    """Video names with both an annotation file and a pose file under ``root``."""
    root = Path(root)
    ann = root / "annotations"
    if not ann.is_dir() or not (root / "pose").is_dir():
        raise FileNotFoundError(
            f"{root} is not the oft-rearing-grooming dataset (expected annotations/ and pose/ "
            "folders inside)")
    names = sorted(p.stem for p in ann.glob("*.csv"))
    return [n for n in names if any((root / "pose").glob(f"{n}DeepCut*.csv"))]


def _read_dlc(path: Path) -> tuple[list[str], np.ndarray]:
    raw = pd.read_csv(path, header=None, index_col=0, low_memory=False)
    parts = raw.iloc[1, 1:].tolist()
    coords = raw.iloc[2, 1:].tolist()
    data = raw.iloc[3:, 1:].astype(float).to_numpy()
    names = list(dict.fromkeys(parts))
    arr = np.full((data.shape[0], len(names), 3), np.nan)
    for col, (part, coord) in enumerate(zip(parts, coords)):
        arr[:, names.index(part), {"x": 0, "y": 1, "likelihood": 2}[coord]] = data[:, col]
    return names, arr


def load_oft_session(root: str | Path, name: str, min_likelihood: float = 0.6) -> OftSession:
    """Read one video's pose and the three raters' labels (frames at 25 fps)."""
    root = Path(root)
    pose_files = sorted((root / "pose").glob(f"{name}DeepCut*.csv"))
    ann_file = root / "annotations" / f"{name}.csv"
    if not pose_files or not ann_file.exists():
        raise FileNotFoundError(f"no pose or annotation file for video {name!r} under {root}")
    names, arr = _read_dlc(pose_files[0])
    missing = [p for p in MOUSE_PARTS + ARENA_PARTS if p not in names]
    if missing:
        raise ValueError(f"{pose_files[0]} lacks bodyparts {missing}")
    xy = arr[..., :2].copy()
    xy[arr[..., 2] < min_likelihood] = np.nan
    mouse = [names.index(p) for p in MOUSE_PARTS]
    points = xy[:, mouse][:, None]
    arena = np.array([np.nanmedian(arr[:, names.index(p), :2], axis=0) for p in ARENA_PARTS])
    n_frames = points.shape[0]
    ann = pd.read_csv(ann_file, index_col=0)
    raters: dict[str, np.ndarray] = {}
    starts = []
    for rater, rows in ann.groupby("Experimenter", sort=True):
        labels = np.full(n_frames, "", dtype=object)
        start_rows = rows[rows["type"].isin(START_TYPES)]
        if len(start_rows):
            starts.append(float(start_rows["from"].min()))
        for _, row in rows[rows["type"].isin(list(REAR_TYPES))].sort_values("from").iterrows():
            s = int(round(float(row["from"]) * OFT_FPS))
            e = int(round(float(row["to"]) * OFT_FPS)) - 1
            if s < n_frames and e >= s:
                labels[max(s, 0): min(e, n_frames - 1) + 1] = REAR_TYPES[row["type"]]
        raters[str(rater)] = labels
    first = int(np.ceil(max(starts) * OFT_FPS)) if starts else 0
    return OftSession(name, points, list(MOUSE_PARTS), arena, raters, first)


TUNED_ON = "12_01_A_190507144429"
"""The session the over-segmentation/merge parameters of :func:`oft_config` were chosen on (a
small grid, scored against its raters); the other session is held out. The captioner thresholds
are the physical defaults of :class:`KinematicThresholds`, not fitted."""


def oft_config(thresholds: KinematicThresholds | None = None) -> SegmentationConfig:
    """The local pipeline configuration used on this dataset: rears split by support; clips of
    0.2 s and more from K = 16 clusters on 0.5 s windows, bouts under 0.3 s absorbed (chosen on
    :data:`TUNED_ON` only)."""
    thresholds = thresholds or KinematicThresholds()
    return SegmentationConfig(
        thresholds=attrs.evolve(thresholds, split_rearing=True), window_s=0.5, min_bout_s=0.3,
        overseg=OversegConfig(n_clusters=16, min_clip_s=0.2, smooth_s=0.1))


def predict_oft(session: OftSession, config: SegmentationConfig | None = None) -> tuple[np.ndarray, dict]:
    """Per-frame labels ``(F,)`` of our local pipeline on one session, and run stats."""
    config = config or oft_config()
    inputs = SegmentationInputs(n_frames=session.n_frames, fps=OFT_FPS, individuals=["mouse0"],
                                points=session.points, keypoint_names=session.keypoint_names,
                                arena=session.arena)
    result = segment_inputs(inputs, config)
    return result.segments.frame_labels(session.n_frames, "mouse0"), result.stats


def _task(labels: np.ndarray, task: str) -> np.ndarray:
    """Binary frame labels for a task: ``supported`` (supported rears) or ``all`` (any rear)."""
    lab = labels.astype(str)
    if task == "supported":
        keep = lab == "supported_rear"
    else:
        keep = np.char.endswith(lab, "_rear") | (lab == "rear")
    return np.where(keep, "rear", "").astype(object)


def _scores(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    return {"frame_f1": metrics.frame_f1(pred, ref, "rear"),
            "seg_f1_25": metrics.segmental_f1(pred, ref, 0.25)}


def _mean(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    return {k: float(np.nanmean([v[k] for v in scores.values()])) for k in ("frame_f1", "seg_f1_25")}


def evaluate_oft(session: OftSession, predicted: np.ndarray) -> dict:
    """Our labels against each rater and rater against rater, for ``supported`` and ``all``
    rearing, on the scored frames. Returns a JSON-ready dictionary."""
    span = slice(session.first_frame, session.n_frames)
    out: dict = {"video": session.name, "frames": [session.first_frame, session.n_frames - 1]}
    for task in ("supported", "all"):
        ours = _task(predicted[span], task)
        refs = {r: _task(lab[span], task) for r, lab in session.raters.items()}
        vs_raters = {r: _scores(ours, ref) for r, ref in refs.items()}
        pairs = {f"{a}-{b}": _scores(refs[a], refs[b]) for a, b in itertools.combinations(refs, 2)}
        out[task] = {
            "ours_vs_rater": vs_raters,
            "rater_vs_rater": pairs,
            "ours_mean": _mean(vs_raters),
            "raters_mean": _mean(pairs),
            "rater_bouts": {r: len(metrics.segments_from_labels(ref)) for r, ref in refs.items()},
            "our_bouts": len(metrics.segments_from_labels(ours)),
        }
    return out


GRID = {"n_clusters": (6, 10, 16), "min_clip_s": (0.2, 0.4), "smooth_s": (0.1, 0.2),
        "window_s": (0.25, 0.5), "min_bout_s": (0.3, 0.5)}
"""The small grid of over-segmentation/merge parameters searched by :func:`cross_session`."""


def _grid_configs() -> list[tuple[dict, SegmentationConfig]]:
    out = []
    for k, clip, smooth, window, bout in itertools.product(*GRID.values()):
        params = {"n_clusters": k, "min_clip_s": clip, "smooth_s": smooth, "window_s": window,
                  "min_bout_s": bout}
        base = oft_config()
        out.append((params, attrs.evolve(
            base, window_s=window, min_bout_s=bout,
            overseg=OversegConfig(n_clusters=k, min_clip_s=clip, smooth_s=smooth))))
    return out


def cross_session(root: str | Path) -> list[dict]:
    """Two-fold cross-validation over the two videos: for each, pick the grid point with the
    best supported-rearing frame F1 + segmental F1@0.25 (mean over its raters), then score that
    configuration on the *other* video. Captioner thresholds stay the physical defaults."""
    sessions = {n: load_oft_session(root, n) for n in list_oft_sessions(root)}
    configs = _grid_configs()
    scores: dict[str, list[dict]] = {}
    for name, session in sessions.items():
        scores[name] = []
        for _params, config in configs:
            pred, _ = predict_oft(session, config)
            scores[name].append(evaluate_oft(session, pred))
    out = []
    for tune, test in itertools.permutations(sessions, 2):
        def objective(r: dict) -> float:
            return r["supported"]["ours_mean"]["frame_f1"] + r["supported"]["ours_mean"]["seg_f1_25"]

        best = max(range(len(configs)), key=lambda i: objective(scores[tune][i]))
        held = scores[test][best]
        out.append({"tuned_on": tune, "tested_on": test, "params": configs[best][0],
                    "test": {task: {"ours": held[task]["ours_mean"],
                                    "raters": held[task]["raters_mean"]}
                             for task in ("supported", "all")}})
    return out
