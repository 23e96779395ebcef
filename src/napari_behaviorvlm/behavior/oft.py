"""The open-field rearing/grooming benchmark (Sturman et al. 2020 OFT data, via DLC2action).

Files (``oft-rearing-grooming/``): ``annotations/<video>.csv`` with three raters' intervals in
seconds (``type``: ``Supported``, ``Unsupported``, ``Grooming``; ``StartEnd``/``Start/End`` mark
the scored period, ``_DEFAULT`` rows are empty markers), and
``pose/<video>DeepCut_*.csv``: DeepLabCut 2D pose (px) of the first 1998 frames at 25 fps, with
the arena corners ``tl, tr, bl, br`` tracked as bodyparts.

Evaluation: frames from the latest start of any rater's scored period to the end of the pose;
for each rater, frame F1 and segmental F1@0.25 of our labels against theirs, and every pair of
raters against each other with the same code (the human ceiling), for supported rearing, all
rearing (supported + unsupported) and grooming.

Rater convention this benchmark follows: a rear lasts until the forepaws are back on the floor,
while the pose cues of a rear (head beyond the floor border, body foreshortened) end as soon as
the head comes down; :func:`hold_rears` therefore extends every predicted rear by
:data:`REAR_HOLD_S` (chosen on :data:`TUNED_ON` only).

Two methods: the rule path (kinematic captions + merge + hold), and a per-frame rear classifier
stacked on it and trained on a tuning video's rater consensus
(:mod:`~napari_behaviorvlm.behavior.oft_model`). :func:`choose_method` picks one of them and
its parameters on one video only (time-block cross-fitting); :func:`cross_session` scores that
choice on the other video.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import attrs
import numpy as np
import pandas as pd

from napari_behaviorvlm.behavior import metrics, oft_model
from napari_behaviorvlm.behavior.captions import KinematicThresholds
from napari_behaviorvlm.behavior.oft_model import ModelParams, RearModel
from napari_behaviorvlm.behavior.overseg import OversegConfig
from napari_behaviorvlm.behavior.pipeline import (
    SegmentationConfig,
    SegmentationInputs,
    segment_inputs,
)
from napari_behaviorvlm.core.segments import Segment, SegmentTable

__all__ = ["OFT_FPS", "OftSession", "evaluate_oft", "list_oft_sessions", "load_oft_session",
           "oft_config", "predict_oft", "TUNED_ON", "REAR_HOLD_S", "hold_rears",
           "cross_session", "GRID", "MODEL_PARAMS", "choose_method", "rear_model_inputs"]

OFT_FPS = 25.0
ARENA_PARTS = ("tl", "tr", "br", "bl")  # polygon order
MOUSE_PARTS = ("nose", "headcentre", "neck", "earl", "earr", "bodycentre", "bcl", "bcr",
               "hipl", "hipr", "tailbase", "tailcentre", "tailtip")
REAR_TYPES = {"Supported": "supported_rear", "Unsupported": "unsupported_rear", "Grooming": "groom"}
REAR_LABELS = ("rear", "supported_rear", "unsupported_rear")
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
"""The session every default was chosen on (scored against its raters, :func:`choose_method`
with :data:`GRID` and :data:`~napari_behaviorvlm.behavior.oft_model.MODEL_GRID`): the
parameters of :func:`oft_config`, :data:`REAR_HOLD_S` and :data:`MODEL_PARAMS`; the other
session is held out. The captioner thresholds are the physical defaults of
:class:`KinematicThresholds` except the near-wall rule ratio, which is a grid parameter."""

REAR_HOLD_S = 0.24
"""Seconds every predicted rear is extended by (:func:`hold_rears`): the descent, which raters
count as part of the rear. Chosen on :data:`TUNED_ON` with the rest of :data:`GRID` (the
held-out video was not used)."""

MODEL_PARAMS = ModelParams(l2=0.01, threshold=0.4, median_frames=1, min_bout_frames=5)
"""Rear-model hyperparameters chosen on :data:`TUNED_ON` by block cross-fitting
(:func:`choose_method`); the rear model is the method chosen there."""


def hold_rears(table: SegmentTable, hold_s: float, fps: float, n_frames: int) -> SegmentTable:
    """Extend the end of every model rear segment by ``hold_s`` seconds (the descent).

    A rear (label in ``rear``, ``supported_rear``, ``unsupported_rear``) grows into the
    following frames of the same subject, up to ``round(hold_s * fps)`` frames, never past frame
    ``n_frames - 1``, the next rear or any human segment; model segments it now overlaps are
    trimmed at their start (dropped when nothing is left). Returns a new table; ``table`` is
    not changed.
    """
    hold = int(round(hold_s * fps))
    if hold <= 0:
        return SegmentTable(list(table))
    out: list[Segment] = []
    for subject in table.subjects():
        segs = sorted((s for s in table if s.subject == subject), key=lambda s: (s.start, s.end))
        limit = -1  # frames up to here are taken by an extended rear
        for i, seg in enumerate(segs):
            if seg.source == "model" and seg.start <= limit:
                if seg.end <= limit:
                    continue
                seg = attrs.evolve(seg, start=limit + 1)
            if seg.source == "model" and seg.label in REAR_LABELS:
                stop = n_frames - 1
                for nxt in segs[i + 1:]:
                    if nxt.start > seg.end and (nxt.source != "model" or nxt.label in REAR_LABELS):
                        stop = min(stop, nxt.start - 1)
                        break
                seg = attrs.evolve(seg, end=max(seg.end, min(seg.end + hold, stop)))
                limit = seg.end
            out.append(seg)
    return SegmentTable(out)


def oft_config(thresholds: KinematicThresholds | None = None) -> SegmentationConfig:
    """The local pipeline configuration used on this dataset: rears split by support, the
    near-wall rear rule at a length ratio of 0.8; clips of 0.2 s and more from K = 10 clusters
    (0.2 s smoothing) on 0.5 s windows, bouts under 0.3 s absorbed (the :data:`GRID` point
    chosen on :data:`TUNED_ON`). ``thresholds`` replaces the captioner thresholds as given."""
    thresholds = thresholds or KinematicThresholds(wall_length_ratio=0.8)
    return SegmentationConfig(
        thresholds=attrs.evolve(thresholds, split_rearing=True), window_s=0.5, min_bout_s=0.3,
        overseg=OversegConfig(n_clusters=10, min_clip_s=0.2, smooth_s=0.2))


def _segment_oft(session: OftSession, config: SegmentationConfig | None) -> tuple[SegmentTable, dict]:
    config = config or oft_config()
    inputs = SegmentationInputs(n_frames=session.n_frames, fps=OFT_FPS, individuals=["mouse0"],
                                points=session.points, keypoint_names=session.keypoint_names,
                                arena=session.arena)
    result = segment_inputs(inputs, config)
    return result.segments, result.stats


def _labels_after_hold(session: OftSession, table: SegmentTable, rear_hold_s: float) -> np.ndarray:
    held = hold_rears(table, rear_hold_s, OFT_FPS, session.n_frames)
    return held.frame_labels(session.n_frames, "mouse0")


def rear_model_inputs(session: OftSession, rule_labels: np.ndarray) -> dict[str, np.ndarray]:
    """What the rear model needs from one session: features ``x`` ``(F, D)`` stacked on the rule
    path's ``rule_labels`` ``(F,)`` (their pose part ``pose_x``), soft targets ``rear`` and
    ``supported`` ``(F,)`` (fraction of raters) and the scored ``frames``. Reading the targets
    reads the raters' labels: pass only a session whose labels may be used."""
    pose_x = oft_model.pose_frame_features(session.points, session.keypoint_names, session.arena,
                                           OFT_FPS)
    return {"x": np.concatenate([pose_x, oft_model.rule_frame_features(rule_labels, OFT_FPS)],
                                axis=1),
            "pose_x": pose_x,
            "rear": oft_model.consensus(session.raters, lambda lab: np.isin(lab, REAR_LABELS)),
            "supported": oft_model.consensus(session.raters, lambda lab: lab == "supported_rear"),
            "frames": np.arange(session.first_frame, session.n_frames)}


def _cross_fitted(inputs: dict[str, np.ndarray], params: ModelParams) -> np.ndarray:
    """Labels ``(F,)`` of the training video where each time block is predicted by a rear model
    fit on the other blocks (:func:`~napari_behaviorvlm.behavior.oft_model.cross_fitted_proba`)."""
    frames = inputs["frames"]
    pr, ps = oft_model.cross_fitted_proba(inputs["x"], inputs["rear"], inputs["supported"],
                                          frames, params.l2)
    out = np.full(len(pr), "", dtype=object)
    out[frames] = oft_model.labels_from_proba(pr[frames], ps[frames], params.threshold,
                                              params.median_frames, params.min_bout_frames)
    return out


def _with_rule_labels(rears: np.ndarray, rule: np.ndarray) -> np.ndarray:
    """The rear model's rears ``(F,)`` with the rule path's other labels (walk, groom ...)
    ``(F,)`` on the frames the model leaves empty."""
    keep = (rears == "") & ~np.isin(rule.astype(str), REAR_LABELS)
    return np.where(keep, rule, rears).astype(object)


def predict_oft(session: OftSession, training: OftSession | None = None,
                config: SegmentationConfig | None = None, rear_hold_s: float = REAR_HOLD_S,
                model: ModelParams | None = MODEL_PARAMS) -> tuple[np.ndarray, dict]:
    """Per-frame labels ``(F,)`` of our local path on one session, and run stats.

    The rule path (``config``, rears extended by ``rear_hold_s``, :func:`hold_rears`) runs
    first. With a ``training`` session and ``model`` parameters (the default method), a rear
    model (:class:`~napari_behaviorvlm.behavior.oft_model.RearModel`) trained on that session's
    rater consensus, stacked on the rule labels, gives the labels instead: when ``training`` is
    ``session`` itself, each time block is predicted by a model fit on the other blocks, so no
    frame is labelled by a model that saw its labels. Without ``training`` (or with ``model``
    None) the rule labels are returned; ``session``'s raters are never read unless it is the
    training session.
    """
    table, stats = _segment_oft(session, config)
    rule = _labels_after_hold(session, table, rear_hold_s)
    if training is None or model is None:
        return rule, stats | {"method": "rule"}
    if training.name == session.name:
        rears = _cross_fitted(rear_model_inputs(session, rule), model)
        return _with_rule_labels(rears, rule), stats | {"method": "model"}
    train_table, _ = _segment_oft(training, config)
    train_rule = _labels_after_hold(training, train_table, rear_hold_s)
    return _model_labels(training, train_rule, model, session, rule), stats | {"method": "model"}


def _model_labels(training: OftSession, train_rule: np.ndarray, params: ModelParams,
                  session: OftSession, rule: np.ndarray) -> np.ndarray:
    """Labels ``(F,)`` of ``session`` by a rear model fit on all scored frames of ``training``
    (rule labels ``train_rule``), stacked on ``session``'s rule labels ``rule``; ``session``'s
    raters are not read."""
    fit = rear_model_inputs(training, train_rule)
    f = fit["frames"]
    rear_model = RearModel.fit(fit["x"][f], fit["rear"][f], fit["supported"][f], params)
    x = oft_model.frame_features(session.points, session.keypoint_names, session.arena, OFT_FPS,
                                 rule)
    return _with_rule_labels(rear_model.predict(x), rule)


TASKS = ("supported", "all", "groom")
"""Evaluated tasks: supported rears, any rear, grooming."""


def _task(labels: np.ndarray, task: str) -> np.ndarray:
    """Binary frame labels (``"on"`` / ``""``) for a task: ``supported`` (supported rears),
    ``all`` (any rear) or ``groom``."""
    lab = labels.astype(str)
    if task == "supported":
        keep = lab == "supported_rear"
    elif task == "groom":
        keep = lab == "groom"
    else:
        keep = np.isin(lab, REAR_LABELS)
    return np.where(keep, "on", "").astype(object)


def _scores(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    return {"frame_f1": metrics.frame_f1(pred, ref, "on"),
            "seg_f1_25": metrics.segmental_f1(pred, ref, 0.25)}


def _mean(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    out = {}
    for k in ("frame_f1", "seg_f1_25"):
        vals = np.array([v[k] for v in scores.values()], dtype=float)
        out[k] = float(np.mean(vals[np.isfinite(vals)])) if np.isfinite(vals).any() else float("nan")
    return out


def evaluate_oft(session: OftSession, predicted: np.ndarray) -> dict:
    """Our labels against each rater and rater against rater, for ``supported`` and ``all``
    rearing and ``groom``, on the scored frames. Returns a JSON-ready dictionary; a score is NaN
    where neither side has the behavior (e.g. grooming that nobody labeled), and means skip NaN."""
    span = slice(session.first_frame, session.n_frames)
    out: dict = {"video": session.name, "frames": [session.first_frame, session.n_frames - 1]}
    for task in TASKS:
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
            "rater_frames": {r: int(np.sum(ref == "on")) for r, ref in refs.items()},
            "our_bouts": len(metrics.segments_from_labels(ours)),
            "our_frames": int(np.sum(ours == "on")),
        }
    return out


GRID = {"n_clusters": (6, 10, 16), "min_clip_s": (0.2, 0.4), "smooth_s": (0.1, 0.2),
        "window_s": (0.25, 0.5), "min_bout_s": (0.3, 0.5), "wall_length_ratio": (0.8, 0.9),
        "rear_hold_s": (0.0, 0.08, 0.16, 0.24)}
"""The small grid searched by :func:`cross_session` (384 points): over-segmentation/merge
parameters, the 2D near-wall rear rule (``KinematicThresholds.wall_length_ratio``) and the
rear hold."""


def _grid_configs() -> list[tuple[dict, SegmentationConfig]]:
    """One pipeline configuration per point of the grid without ``rear_hold_s`` (the hold is a
    post-processing of the same segments)."""
    out = []
    keys = [k for k in GRID if k != "rear_hold_s"]
    for values in itertools.product(*(GRID[k] for k in keys)):
        params = dict(zip(keys, values))
        base = oft_config(KinematicThresholds(wall_length_ratio=params["wall_length_ratio"]))
        out.append((params, attrs.evolve(
            base, window_s=params["window_s"], min_bout_s=params["min_bout_s"],
            overseg=OversegConfig(n_clusters=params["n_clusters"], min_clip_s=params["min_clip_s"],
                                  smooth_s=params["smooth_s"]))))
    return out


def _objective(session: OftSession, predicted: np.ndarray, frames: np.ndarray) -> float:
    """What :func:`choose_method` maximises on the tuning video: frame F1 + segmental F1@0.25
    (mean over its raters) of supported rearing plus the same of all rearing, on ``frames``
    (sorted indices; blocks that are not contiguous are scored as one sequence)."""
    total = 0.0
    for task in ("supported", "all"):
        ours = _task(predicted[frames], task)
        mean = _mean({r: _scores(ours, _task(lab[frames], task))
                      for r, lab in session.raters.items()})
        total += mean["frame_f1"] + mean["seg_f1_25"]
    return total


def choose_method(session: OftSession, points: list[dict], rule_labels: list[np.ndarray]) -> dict:
    """Choose the method and its parameters on one video against its raters only.

    Args:
        session: the tuning video.
        points: grid points (:data:`GRID` keys) of the rule path.
        rule_labels: the rule path's labels ``(F,)`` on ``session`` at each point.

    Every candidate is scored by :func:`_objective` on labels that did not see the labels of
    the frames they label: the scored frames are cut into
    :data:`~napari_behaviorvlm.behavior.oft_model.N_BLOCKS` time blocks; for the rule path, the
    grid point is chosen on the other blocks and applied to each block; for the rear model
    (every :data:`~napari_behaviorvlm.behavior.oft_model.MODEL_GRID` point), it is stacked on
    that same point and fit on the other blocks. The better method wins. Returns ``method``
    (``rule`` or ``model``), ``rule`` (the grid point best on the whole video, which the model is
    stacked on too), ``model`` (the best :class:`ModelParams` or None) and both ``scores``.
    """
    frames = np.arange(session.first_frame, session.n_frames)
    blocks = np.array_split(frames, oft_model.N_BLOCKS)
    whole = [_objective(session, lab, frames) for lab in rule_labels]
    best = int(np.argmax(whole))
    rule_cv = np.full(session.n_frames, "", dtype=object)
    per_block = []
    for block in blocks:
        rest = np.setdiff1d(frames, block)
        j = int(np.argmax([_objective(session, lab, rest) for lab in rule_labels]))
        rule_cv[block] = rule_labels[j][block]
        per_block.append(j)
    rule_score = _objective(session, rule_cv, frames)
    inputs = rear_model_inputs(session, rule_labels[best])
    block_x = [np.concatenate([inputs["pose_x"], oft_model.rule_frame_features(
        rule_labels[j], OFT_FPS)], axis=1) for j in per_block]
    params, model_score = oft_model.cross_fit(
        block_x, inputs["rear"], inputs["supported"], frames,
        lambda lab: _objective(session, lab, frames))
    method = "model" if model_score > rule_score else "rule"
    return {"method": method, "rule": points[best], "model": params if method == "model" else None,
            "scores": {"rule": rule_score, "model": model_score}}


def cross_session(root: str | Path) -> list[dict]:
    """Two-fold cross-validation over the two videos: on one video, :func:`choose_method`
    chooses the method (rule path or rear model) and every parameter against its raters; the
    choice is then applied to the *other* video, whose labels are read only by
    :func:`evaluate_oft` after the choice. Both directions. Captioner thresholds other than the
    near-wall ratio stay the physical defaults."""
    sessions = {n: load_oft_session(root, n) for n in list_oft_sessions(root)}
    points: list[dict] = []
    labels: dict[str, list[np.ndarray]] = {name: [] for name in sessions}
    for params, config in _grid_configs():
        tables = {name: _segment_oft(session, config)[0] for name, session in sessions.items()}
        for hold in GRID["rear_hold_s"]:
            points.append(params | {"rear_hold_s": hold})
            for name, session in sessions.items():
                labels[name].append(_labels_after_hold(session, tables[name], hold))
    out = []
    for tune, test in itertools.permutations(sessions, 2):
        choice = choose_method(sessions[tune], points, labels[tune])
        best = points.index(choice["rule"])
        pred = labels[test][best]
        if choice["method"] == "model":
            pred = _model_labels(sessions[tune], labels[tune][best], choice["model"],
                                 sessions[test], pred)
        tuned = evaluate_oft(sessions[tune], labels[tune][best])
        held = evaluate_oft(sessions[test], pred)
        model_params = attrs.asdict(choice["model"]) if choice["model"] is not None else None
        out.append({"tuned_on": tune, "tested_on": test, "method": choice["method"],
                    "params": choice["rule"], "model_params": model_params,
                    "tune_scores": choice["scores"],
                    "tune": {task: tuned[task]["ours_mean"] for task in ("supported", "all")},
                    "test": {task: {"ours": held[task]["ours_mean"],
                                    "ours_vs_rater": held[task]["ours_vs_rater"],
                                    "raters": held[task]["raters_mean"]}
                             for task in ("supported", "all")}})
    return out
