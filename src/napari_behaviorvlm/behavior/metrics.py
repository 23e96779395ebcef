"""Metrics that compare two labelings of the same frames (a prediction against a reference).

Inputs are per-frame label arrays ``(F,)`` (strings; ``background`` = no behavior, default
``""``) such as :meth:`SegmentTable.frame_labels` returns. Definitions:

- **frame accuracy**: fraction of frames whose labels are equal (background included).
- **frame F1 of class c**: ``2 TP / (2 TP + FP + FN)`` counting frames labeled ``c``.
- **segments**: maximal runs of one non-background label.
- **segmental F1@τ** (Lea et al. 2017, as in MS-TCN): a predicted segment is a true positive
  when its intersection-over-union with a reference segment of the same label is >= τ and that
  reference segment is not already matched (each prediction takes its best-IoU reference);
  otherwise a false positive. Unmatched reference segments are false negatives.
- **edit score**: ``1 - Levenshtein(pred, ref) / max(len(pred), len(ref))`` on the sequences of
  segment labels (1 when both are empty).
- **boundary F1 within tol frames**: boundaries are the frames where the label changes; a
  predicted boundary matches an unmatched reference boundary at most ``tol`` frames away
  (closest pairs first, one-to-one).
- **segments per minute**: number of segments / duration in minutes.

Everything returns floats in 0..1 (NaN when undefined, e.g. F1 of a class absent from both).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "boundaries",
    "boundary_f1",
    "edit_score",
    "evaluate",
    "frame_accuracy",
    "frame_f1",
    "segmental_f1",
    "segments_from_labels",
    "segments_per_minute",
]


def _labels(x: Sequence) -> np.ndarray:
    return np.asarray(x, dtype=object)


def _check(pred: np.ndarray, ref: np.ndarray) -> None:
    if pred.shape != ref.shape or pred.ndim != 1:
        raise ValueError(f"label arrays must be 1-D and of equal length, got {pred.shape} and {ref.shape}")


def frame_accuracy(pred: Sequence, ref: Sequence) -> float:
    """Fraction of frames with equal labels."""
    p, r = _labels(pred), _labels(ref)
    _check(p, r)
    return float(np.mean(p == r)) if len(p) else float("nan")


def frame_f1(pred: Sequence, ref: Sequence, label: str) -> float:
    """Frame-wise F1 of one class (NaN when the class is absent from both)."""
    p, r = _labels(pred) == label, _labels(ref) == label
    _check(p, r)
    tp = int(np.sum(p & r))
    denom = int(p.sum() + r.sum())
    return float(2 * tp / denom) if denom else float("nan")


def segments_from_labels(labels: Sequence, background: str = "") -> list[tuple[int, int, str]]:
    """Runs ``(start, end inclusive, label)`` of non-background labels."""
    x = _labels(labels)
    out = []
    start = 0
    for i in range(1, len(x) + 1):
        if i == len(x) or x[i] != x[start]:
            if x[start] != background:
                out.append((start, i - 1, str(x[start])))
            start = i
    return out


def segmental_f1(pred: Sequence, ref: Sequence, iou: float, background: str = "",
                 label: str | None = None) -> float:
    """Segmental F1 at IoU threshold ``iou`` over all classes, or over one ``label``."""
    p_seg = segments_from_labels(pred, background)
    r_seg = segments_from_labels(ref, background)
    if label is not None:
        p_seg = [s for s in p_seg if s[2] == label]
        r_seg = [s for s in r_seg if s[2] == label]
    if not p_seg and not r_seg:
        return float("nan")
    hit = np.zeros(len(r_seg), dtype=bool)
    tp = fp = 0
    for ps, pe, pl in p_seg:
        best, best_j = 0.0, -1
        for j, (rs, re, rl) in enumerate(r_seg):
            if rl != pl:
                continue
            inter = min(pe, re) - max(ps, rs) + 1
            if inter <= 0:
                continue
            union = max(pe, re) - min(ps, rs) + 1
            if inter / union > best:
                best, best_j = inter / union, j
        if best >= iou and best_j >= 0 and not hit[best_j]:
            tp += 1
            hit[best_j] = True
        else:
            fp += 1
    fn = len(r_seg) - int(hit.sum())
    return float(2 * tp / (2 * tp + fp + fn))


def _levenshtein(a: Sequence[str], b: Sequence[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, start=1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def edit_score(pred: Sequence, ref: Sequence, background: str = "") -> float:
    """Normalised edit score of the segment label sequences (1 = identical order)."""
    a = [s[2] for s in segments_from_labels(pred, background)]
    b = [s[2] for s in segments_from_labels(ref, background)]
    if not a and not b:
        return 1.0
    return float(1.0 - _levenshtein(a, b) / max(len(a), len(b)))


def boundaries(labels: Sequence) -> np.ndarray:
    """Frames ``i`` where ``labels[i] != labels[i - 1]`` (the first frame of a new run)."""
    x = _labels(labels)
    return np.flatnonzero(x[1:] != x[:-1]) + 1


def boundary_f1(pred: Sequence, ref: Sequence, tol: int) -> dict[str, float]:
    """Boundary precision, recall and F1 within ``tol`` frames (one-to-one, closest first)."""
    p, r = boundaries(pred), boundaries(ref)
    if len(p) == 0 and len(r) == 0:
        return {"precision": float("nan"), "recall": float("nan"), "f1": float("nan")}
    pairs = sorted((abs(int(a) - int(b)), i, j) for i, a in enumerate(p) for j, b in enumerate(r)
                   if abs(int(a) - int(b)) <= tol)
    used_p, used_r = set(), set()
    for _, i, j in pairs:
        if i not in used_p and j not in used_r:
            used_p.add(i)
            used_r.add(j)
    m = len(used_p)
    precision = m / len(p) if len(p) else float("nan")
    recall = m / len(r) if len(r) else float("nan")
    f1 = 2 * m / (len(p) + len(r))
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def segments_per_minute(labels: Sequence, fps: float, background: str | None = None) -> float:
    """Number of runs (excluding ``background`` runs when given) per minute."""
    x = _labels(labels)
    if len(x) == 0:
        return float("nan")
    n = len(segments_from_labels(x, background)) if background is not None else len(boundaries(x)) + 1
    return float(n / (len(x) / fps / 60.0))


def evaluate(pred: Sequence, ref: Sequence, fps: float, labels: Sequence[str] | None = None,
             background: str = "", tol_frames: int | None = None) -> dict:
    """All metrics in one dictionary (per-class frame F1 for ``labels`` or every label seen).

    ``tol_frames`` defaults to 0.5 s worth of frames.
    """
    p, r = _labels(pred), _labels(ref)
    _check(p, r)
    classes = list(labels) if labels is not None else sorted(
        {str(v) for v in np.concatenate([p, r]) if v != background})
    tol = int(round(0.5 * fps)) if tol_frames is None else int(tol_frames)
    return {
        "frame_accuracy": frame_accuracy(p, r),
        "frame_f1": {c: frame_f1(p, r, c) for c in classes},
        "segmental_f1": {f"{t:.2f}": segmental_f1(p, r, t, background) for t in (0.10, 0.25, 0.50)},
        "edit_score": edit_score(p, r, background),
        "boundary": boundary_f1(p, r, tol) | {"tol_frames": tol},
        "segments_per_minute": segments_per_minute(p, fps),
        "reference_segments_per_minute": segments_per_minute(r, fps),
    }
