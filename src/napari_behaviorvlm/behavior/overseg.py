"""Deliberate over-segmentation: cut each animal's timeline into short clips (~0.5-4 s).

Two methods on windowed features ``(F, M, D)`` (see :func:`features.windowed`):

- ``kmeans``: per animal, robust-standardise the features, cluster the frames into ``K`` clusters
  (k-means++, fixed seed), smooth the per-frame cluster labels with a majority filter; each run of
  one cluster is a clip.
- ``changepoint``: per animal, a novelty score (distance between the mean feature vector of the
  ``window`` frames before and after each frame); peaks above ``penalty`` (in robust standard
  deviations) spaced at least ``min_clip`` apart are boundaries.

Either way clips then get bounded lengths: runs shorter than ``min_clip_s`` are absorbed into
the neighbour with the closest mean features, runs longer than ``max_clip_s`` are split evenly.
Clips are inclusive frame spans that tile ``0..F-1`` for every animal.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import numpy as np
from scipy.cluster.vq import kmeans2
from scipy.ndimage import uniform_filter1d

__all__ = ["Clip", "OversegConfig", "oversegment", "oversegment_animal"]


@attrs.define(frozen=True)
class Clip:
    """Frames ``start..end`` (inclusive) of one animal, with its cluster id (-1: change-point)."""

    start: int
    end: int
    subject: str
    cluster: int = -1

    @property
    def n_frames(self) -> int:
        return self.end - self.start + 1


@attrs.define
class OversegConfig:
    """Over-segmentation parameters (times in seconds).

    Attributes:
        method: ``"kmeans"`` or ``"changepoint"``.
        n_clusters: K per animal (k-means).
        smooth_s: majority-filter width on the per-frame cluster labels.
        min_clip_s: shorter runs are absorbed by a neighbour.
        max_clip_s: longer runs are split evenly.
        window_s: half-window of the change-point novelty score.
        penalty: change-point threshold in robust standard deviations of the novelty score.
        seed: random seed of k-means++ (results are deterministic for a given seed).
    """

    method: str = attrs.field(default="kmeans", validator=attrs.validators.in_(("kmeans", "changepoint")))
    n_clusters: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    smooth_s: float = 0.2
    min_clip_s: float = 0.2
    max_clip_s: float = 4.0
    window_s: float = 0.5
    penalty: float = 2.0
    seed: int = 0


def _standardise(x: np.ndarray) -> np.ndarray:
    """Robust z-score per column (median / IQR), NaN -> 0 (the median), constant columns -> 0."""
    med = np.nanmedian(x, axis=0)
    iqr = np.nanpercentile(x, 75, axis=0) - np.nanpercentile(x, 25, axis=0)
    std = np.nanstd(x, axis=0)
    scale = np.where(iqr > 1e-9, iqr / 1.349, np.where(std > 1e-9, std, 1.0))
    z = (x - med) / scale
    z = np.clip(np.nan_to_num(z, nan=0.0), -6.0, 6.0)
    return z


def _majority_filter(labels: np.ndarray, size: int, n_labels: int) -> np.ndarray:
    if size <= 1 or len(labels) == 0:
        return labels
    onehot = np.zeros((len(labels), n_labels))
    onehot[np.arange(len(labels)), labels] = 1.0
    votes = uniform_filter1d(onehot, size, axis=0, mode="nearest")
    return votes.argmax(axis=1)


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, end inclusive, label) runs of equal values."""
    if len(labels) == 0:
        return []
    cuts = np.flatnonzero(np.diff(labels)) + 1
    starts = np.r_[0, cuts]
    ends = np.r_[cuts - 1, len(labels) - 1]
    return [(int(s), int(e), int(labels[s])) for s, e in zip(starts, ends)]


def _bound_lengths(runs: list[tuple[int, int, int]], z: np.ndarray, min_len: int,
                   max_len: int) -> list[tuple[int, int, int]]:
    runs = list(runs)
    # absorb short runs, shortest first, into the neighbour with the closest mean features
    while len(runs) > 1:
        lengths = [e - s + 1 for s, e, _ in runs]
        i = int(np.argmin(lengths))
        if lengths[i] >= min_len:
            break
        s, e, _ = runs[i]
        mean = z[s:e + 1].mean(axis=0)
        best, best_d = None, np.inf
        for j in (i - 1, i + 1):
            if 0 <= j < len(runs):
                sj, ej, _ = runs[j]
                d = float(np.linalg.norm(z[sj:ej + 1].mean(axis=0) - mean))
                if d < best_d:
                    best, best_d = j, d
        sj, ej, lj = runs[best]
        runs[best] = (min(s, sj), max(e, ej), lj)
        del runs[i]
    out = []
    for s, e, lab in runs:
        n = e - s + 1
        pieces = int(np.ceil(n / max_len)) if max_len > 0 else 1
        edges = np.linspace(s, e + 1, pieces + 1).round().astype(int)
        out.extend((int(a), int(b) - 1, lab) for a, b in zip(edges[:-1], edges[1:]))
    return out


def _changepoints(z: np.ndarray, window: int, penalty: float, min_len: int) -> np.ndarray:
    n = len(z)
    csum = np.vstack([np.zeros((1, z.shape[1])), np.cumsum(z, axis=0)])
    score = np.zeros(n)
    for f in range(1, n):
        a, b = max(0, f - window), min(n, f + window)
        left = (csum[f] - csum[a]) / (f - a)
        right = (csum[b] - csum[f]) / (b - f)
        score[f] = np.linalg.norm(right - left)
    med = np.median(score)
    mad = np.median(np.abs(score - med)) * 1.4826 + 1e-9
    strength = (score - med) / mad
    order = np.argsort(-strength)
    chosen: list[int] = []
    for f in order:
        if strength[f] < penalty:
            break
        if f < min_len or n - f < min_len:
            continue
        if all(abs(int(f) - c) >= min_len for c in chosen):
            chosen.append(int(f))
    labels = np.zeros(n, dtype=int)
    for k, f in enumerate(sorted(chosen), start=1):
        labels[f:] = k
    return labels


def oversegment_animal(x: np.ndarray, fps: float, config: OversegConfig, subject: str) -> list[Clip]:
    """Clips for one animal from its windowed features ``x`` ``(F, D)``."""
    n = len(x)
    if n == 0:
        return []
    z = _standardise(x)
    min_len = max(1, int(round(config.min_clip_s * fps)))
    max_len = max(min_len, int(round(config.max_clip_s * fps)))
    if config.method == "kmeans":
        k = min(config.n_clusters, n)
        if k <= 1 or not np.any(z.std(axis=0) > 0):
            labels = np.zeros(n, dtype=int)
        else:
            _, labels = kmeans2(z, k, minit="++", seed=config.seed)
        labels = _majority_filter(labels, max(1, int(round(config.smooth_s * fps))), max(k, 1))
        clusters = True
    else:
        labels = _changepoints(z, max(1, int(round(config.window_s * fps))), config.penalty, min_len)
        clusters = False
    runs = _bound_lengths(_runs(labels), z, min_len, max_len)
    return [Clip(s, e, subject, lab if clusters else -1) for s, e, lab in runs]


def oversegment(
    windowed_features: np.ndarray,
    fps: float,
    individuals: list[str],
    config: OversegConfig | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[Clip]:
    """Clips for every animal.

    Args:
        windowed_features: ``(F, M, D)`` from :func:`features.windowed`.
        fps: frames per second.
        individuals: ``(M,)`` animal names (clip subjects).
        config: parameters (defaults: k-means, K = 10).
        should_stop: polled between animals; when it returns True the clips so far are returned.

    Returns:
        Clips sorted by subject then start; each animal's clips tile ``0..F-1``.
    """
    config = config or OversegConfig()
    x = np.asarray(windowed_features, dtype=float)
    if x.ndim != 3 or x.shape[1] != len(individuals):
        raise ValueError(f"windowed features must be (frames, {len(individuals)} animals, D), got {x.shape}")
    clips: list[Clip] = []
    for m, name in enumerate(individuals):
        if should_stop is not None and should_stop():
            break
        clips.extend(oversegment_animal(x[:, m], fps, config, name))
    return clips
