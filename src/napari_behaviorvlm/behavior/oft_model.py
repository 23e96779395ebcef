"""A per-frame rear classifier for the OFT benchmark, learned from one video's raters.

The rule path of :mod:`~napari_behaviorvlm.behavior.oft` (kinematic captions + merge + rear hold)
reads a rear from physical cues; the raters' own convention (when a rear starts and ends, which
still poses at the wall they call a rear) is learned here from the rater consensus of a training
video, on top of the rule path's labels:

- Frame features (:func:`frame_features`): the pose features of
  :func:`~napari_behaviorvlm.behavior.features.pose_features` used for rears (speed, head speed,
  body-length ratio, turn rate, head-to-wall distance), keypoint geometry in body lengths (hip,
  body and ear widths, nose-to-neck, neck-to-tail-base, tail, nose-to-tail-base lengths, spread of
  the head keypoints relative to the neck-to-tail-base length, nose / tail-base / body-centre to
  wall distances), the centred moving mean and standard deviation of each over
  :data:`CONTEXT_S`, and the rule path's rear / supported-rear labels smoothed over the same
  windows.
- Two L2-regularised logistic regressions (:class:`LogisticModel`): any rear, and supported rear,
  trained on the *fraction* of raters labelling the frame (soft labels).
- Decoding (:func:`labels_from_proba`): rear where P(rear) > threshold, a median filter, runs
  shorter than a minimum bout absorbed, and each rear bout supported when its mean
  P(supported) is at least half its mean P(rear).

Hyperparameters (:data:`MODEL_GRID`) are chosen by :func:`cross_fit`, which predicts every
frame of the training video from a model fit on the other :data:`N_BLOCKS` time blocks only.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import attrs
import numpy as np
from scipy.ndimage import median_filter
from scipy.optimize import minimize

from napari_behaviorvlm.behavior.features import (
    FeatureSet,
    _signed_polygon_distance,
    interpolate_gaps,
    pose_features,
    windowed,
)

__all__ = ["CONTEXT_S", "MODEL_GRID", "N_BLOCKS", "LogisticModel", "ModelParams", "RearModel",
           "consensus", "cross_fit", "cross_fitted_proba", "frame_features", "labels_from_proba",
           "pose_frame_features", "rule_frame_features"]

CONTEXT_S = (0.2, 0.5, 1.0, 2.0)
"""Window lengths (s) of the centred moving statistics added to every frame feature."""

N_BLOCKS = 4
"""Contiguous time blocks of the training video's scored frames used by :func:`cross_fit`."""

MODEL_GRID = {"l2": (0.001, 0.003, 0.01, 0.03, 0.1), "threshold": (0.3, 0.4, 0.5),
              "median_frames": (1, 5, 9), "min_bout_frames": (5, 10)}
"""Hyperparameters searched by :func:`cross_fit` (90 points)."""

_BASE = ("speed", "head_speed", "body_length_ratio", "turn_rate", "wall")
_LENGTHS = {"hip_width": ("hipl", "hipr"), "body_width": ("bcl", "bcr"),
            "ear_width": ("earl", "earr"), "nose_neck": ("nose", "neck"),
            "neck_tail": ("neck", "tailbase"), "tail": ("tailbase", "tailtip"),
            "nose_tail": ("nose", "tailbase")}
_REAR_LABELS = ("rear", "supported_rear", "unsupported_rear")


@attrs.define
class ModelParams:
    """One point of :data:`MODEL_GRID`: ``l2`` penalty on standardised weights, P(rear)
    ``threshold``, ``median_frames`` (median filter, odd, 1 = none), ``min_bout_frames``."""

    l2: float
    threshold: float
    median_frames: int
    min_bout_frames: int

    @classmethod
    def grid(cls) -> list[ModelParams]:
        """Every point of :data:`MODEL_GRID`."""
        return [cls(**dict(zip(MODEL_GRID, values)))
                for values in itertools.product(*MODEL_GRID.values())]


def _context(cols: dict[str, np.ndarray], fps: float) -> np.ndarray:
    """``(F, D * (1 + 2 * len(CONTEXT_S)))``: each column, then its moving mean and standard
    deviation over every window of :data:`CONTEXT_S`."""
    raw = np.stack(list(cols.values()), axis=-1)[:, None]  # (F, 1, D)
    feats = FeatureSet(raw, list(cols), ["mouse0"], fps)
    return np.concatenate([raw[:, 0]] + [windowed(feats, w)[:, 0] for w in CONTEXT_S], axis=1)


def pose_frame_features(points: np.ndarray, keypoint_names: Sequence[str], arena: np.ndarray,
                        fps: float) -> np.ndarray:
    """The pose part of :func:`frame_features`, ``(F, D_pose)``."""
    fs = pose_features(points, keypoint_names, fps, arena=arena)
    bl = float(fs.body_length[0])
    pts = interpolate_gaps(points[:, 0], max(1, int(round(0.5 * fps))))
    part = {name: pts[:, i] for i, name in enumerate(keypoint_names)}
    cols = {name: fs.get(name)[:, 0] for name in _BASE}
    for name, (a, b) in _LENGTHS.items():
        cols[name] = np.linalg.norm(part[a] - part[b], axis=1) / bl
    head = (np.linalg.norm(part["nose"] - part["earl"], axis=1)
            + np.linalg.norm(part["nose"] - part["earr"], axis=1)) / bl + cols["ear_width"]
    cols["head_spread"] = head / np.maximum(cols["neck_tail"], 1e-3)
    for name in ("nose", "tailbase", "bodycentre"):
        cols[f"wall_{name}"] = _signed_polygon_distance(part[name], arena) / bl
    return _context(cols, fps)


def rule_frame_features(rule_labels: np.ndarray, fps: float) -> np.ndarray:
    """The rule part of :func:`frame_features`, ``(F, D_rule)``: rear and supported-rear
    indicators of the rule path's labels ``(F,)`` and their moving statistics."""
    lab = np.asarray(rule_labels).astype(str)
    return _context({"rule_rear": np.isin(lab, _REAR_LABELS).astype(float),
                     "rule_supported": (lab == "supported_rear").astype(float)}, fps)


def frame_features(points: np.ndarray, keypoint_names: Sequence[str], arena: np.ndarray,
                   fps: float, rule_labels: np.ndarray) -> np.ndarray:
    """Per-frame features ``(F, D)`` of one mouse (NaN where undefined): the pose part
    (:func:`pose_frame_features`) then the rule part (:func:`rule_frame_features`).

    Args:
        points: ``(F, 1, K, 2)`` px, NaN where missing.
        keypoint_names: ``(K,)`` DLC bodyparts of the OFT data (``nose``, ``neck``, ``earl`` ...).
        arena: ``(P, 2)`` px floor border polygon.
        fps: frames per second.
        rule_labels: ``(F,)`` labels of the rule path (``supported_rear`` ... or other labels).
    """
    return np.concatenate([pose_frame_features(points, keypoint_names, arena, fps),
                           rule_frame_features(rule_labels, fps)], axis=1)


@attrs.define(eq=False)
class LogisticModel:
    """``P(y) = sigmoid(((x - mean) / scale) @ weights + bias)``; NaN inputs count as the mean."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, l2: float) -> LogisticModel:
        """Cross-entropy fit to soft targets ``y`` ``(N,)`` in [0, 1] from ``x`` ``(N, D)``,
        plus ``l2`` times the squared weights (the bias is not penalised)."""
        mean = np.nanmean(x, axis=0)
        mean = np.where(np.isfinite(mean), mean, 0.0)
        scale = np.nanstd(x, axis=0)
        scale = np.where(np.isfinite(scale) & (scale > 1e-9), scale, 1.0)
        z = np.nan_to_num((x - mean) / scale)
        n = len(y)

        def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
            t = z @ w[1:] + w[0]
            p = 1.0 / (1.0 + np.exp(-t))
            value = np.sum(np.logaddexp(0.0, t) - y * t) / n + l2 * np.sum(w[1:] ** 2)
            grad = np.concatenate([[np.mean(p - y)], z.T @ (p - y) / n + 2 * l2 * w[1:]])
            return value, grad

        w = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B").x
        return cls(mean, scale, w[1:], float(w[0]))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """``(N,)`` probabilities for ``x`` ``(N, D)``."""
        z = np.nan_to_num((x - self.mean) / self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ self.weights + self.bias)))


@attrs.define(eq=False)
class RearModel:
    """Any-rear and supported-rear classifiers with their decoding parameters."""

    rear: LogisticModel
    supported: LogisticModel
    params: ModelParams

    @classmethod
    def fit(cls, x: np.ndarray, rear: np.ndarray, supported: np.ndarray,
            params: ModelParams) -> RearModel:
        """Fit on features ``x`` ``(N, D)`` and soft targets ``(N,)`` (fraction of raters)."""
        return cls(LogisticModel.fit(x, rear, params.l2),
                   LogisticModel.fit(x, supported, params.l2), params)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Per-frame labels ``(N,)`` for consecutive frames ``x`` ``(N, D)``."""
        p = self.params
        return labels_from_proba(self.rear.predict(x), self.supported.predict(x), p.threshold,
                                 p.median_frames, p.min_bout_frames)


def consensus(raters: dict[str, np.ndarray], keep: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Fraction of raters ``(F,)`` whose labels satisfy ``keep`` (a per-frame boolean test)."""
    return np.mean([keep(np.asarray(lab).astype(str)) for lab in raters.values()], axis=0)


def _runs(on: np.ndarray) -> list[tuple[int, int, bool]]:
    """Inclusive ``(start, end, value)`` runs of a boolean array."""
    edges = np.flatnonzero(np.diff(on.astype(int))) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges - 1, [len(on) - 1]])
    return [(int(s), int(e), bool(on[s])) for s, e in zip(starts, ends)]


def labels_from_proba(p_rear: np.ndarray, p_supported: np.ndarray, threshold: float,
                      median_frames: int, min_bout_frames: int) -> np.ndarray:
    """Rear labels ``(F,)`` (``supported_rear``, ``unsupported_rear`` or ``""``) from per-frame
    probabilities ``(F,)``: threshold, median filter of ``median_frames``, then inner runs (rear or
    not) shorter than ``min_bout_frames`` take the value around them (rears first)."""
    on = p_rear > threshold
    if median_frames > 1:
        on = median_filter(on.astype(np.uint8), median_frames, mode="nearest") > 0
    for value in (True, False):
        runs = _runs(on)
        for i, (s, e, v) in enumerate(runs):
            if v == value and e - s + 1 < min_bout_frames and 0 < i < len(runs) - 1:
                on[s:e + 1] = not value
    out = np.full(len(on), "", dtype=object)
    if not len(on):
        return out
    for s, e, v in _runs(on):
        if v:
            sup = np.mean(p_supported[s:e + 1]) >= 0.5 * np.mean(p_rear[s:e + 1])
            out[s:e + 1] = "supported_rear" if sup else "unsupported_rear"
    return out


def cross_fitted_proba(x: np.ndarray | Sequence[np.ndarray], rear: np.ndarray,
                       supported: np.ndarray, frames: np.ndarray,
                       l2: float) -> tuple[np.ndarray, np.ndarray]:
    """P(rear) and P(supported) ``(F,)`` where each of :data:`N_BLOCKS` contiguous blocks of the
    scored ``frames`` (sorted indices) is predicted by models fit on the other blocks only (0
    outside ``frames``).

    Args:
        x: ``(F, D)`` features, or one ``(F, D)`` array per block (e.g. stacked on a rule
            configuration chosen without that block's labels).
        rear, supported: ``(F,)`` soft targets.
        frames: scored frame indices.
        l2: penalty of :meth:`LogisticModel.fit`.
    """
    frames = np.asarray(frames)
    blocks = np.array_split(frames, N_BLOCKS)
    feats = [x] * len(blocks) if isinstance(x, np.ndarray) else list(x)
    pr, ps = np.zeros(len(rear)), np.zeros(len(rear))
    for block, xb in zip(blocks, feats):
        train = np.setdiff1d(frames, block)
        pr[block] = LogisticModel.fit(xb[train], rear[train], l2).predict(xb[block])
        ps[block] = LogisticModel.fit(xb[train], supported[train], l2).predict(xb[block])
    return pr, ps


def cross_fit(x: np.ndarray | Sequence[np.ndarray], rear: np.ndarray, supported: np.ndarray,
              frames: np.ndarray, objective: Callable[[np.ndarray], float],
              grid: Sequence[ModelParams] | None = None) -> tuple[ModelParams, float]:
    """Choose model hyperparameters on one video by time-block cross-fitting: at every grid
    point, the labels ``(F,)`` decoded from :func:`cross_fitted_proba` (``""`` outside
    ``frames``) are scored by ``objective`` (to maximise); ``grid`` defaults to
    :meth:`ModelParams.grid`. Returns the best hyperparameters and their score."""
    grid = list(grid) if grid is not None else ModelParams.grid()
    frames = np.asarray(frames)
    best: tuple[float, ModelParams] | None = None
    for l2 in sorted({p.l2 for p in grid}):
        pr, ps = cross_fitted_proba(x, rear, supported, frames, l2)
        for p in (q for q in grid if q.l2 == l2):
            labels = np.full(len(rear), "", dtype=object)
            labels[frames] = labels_from_proba(pr[frames], ps[frames], p.threshold,
                                               p.median_frames, p.min_bout_frames)
            score = objective(labels)
            if best is None or score > best[0]:
                best = (score, p)
    if best is None:
        raise ValueError("cross_fit needs at least one point in the model grid")
    return best[1], best[0]
