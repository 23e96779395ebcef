"""Captions of clips: what an animal does in a clip, as a validated structured record.

A :class:`Caption` has the fields the VLM is asked for: ``label`` (one of the vocabulary),
``description`` (one sentence), ``pose``, ``direction``, ``speed``, ``interaction``, ``subject``,
``target`` (empty when solitary) and ``confidence`` (0..1).

Two captioners produce them:

- :class:`KinematicCaptioner` (the embedded default, no network): per-frame rules on pose
  features with thresholds in body lengths (:class:`KinematicThresholds`), then the clip's
  majority label; deterministic. With video features only (no keypoints) it can only tell
  ``active`` from ``rest``.
- :class:`VLMCaptioner` (in :mod:`napari_behaviorvlm.behavior.vlm_backend`): frames sampled at
  about 10 fps from one or several cameras sent to an OpenAI-compatible endpoint.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np

from napari_behaviorvlm.behavior.features import FeatureSet, _smooth
from napari_behaviorvlm.behavior.overseg import Clip

__all__ = [
    "DEFAULT_LABELS",
    "Caption",
    "CaptionError",
    "KinematicCaptioner",
    "KinematicThresholds",
    "absorb_short_runs",
    "validate_caption",
]

DEFAULT_LABELS = ("walk", "run", "rear", "groom", "rest", "chase", "sniff")
"""Behavior vocabulary of the synthetic sessions and the default prompts."""

SOCIAL_LABELS = ("chase", "sniff")
CAPTION_FIELDS = ("label", "description", "pose", "direction", "speed", "interaction",
                  "subject", "target")


class CaptionError(ValueError):
    """A caption (e.g. a model's answer) does not follow the schema; the message says why."""


@attrs.define(frozen=True)
class Caption:
    """A structured description of one clip (see the module docstring)."""

    label: str
    description: str = ""
    pose: str = ""
    direction: str = ""
    speed: str = ""
    interaction: str = ""
    subject: str = "mouse0"
    target: str = ""
    confidence: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def text(self) -> str:
        """One-line caption text for a segment table row."""
        parts = [self.description or self.label]
        extra = [p for p in (self.pose, self.direction, self.speed, self.interaction) if p]
        if extra:
            parts.append("(" + "; ".join(extra) + ")")
        return " ".join(parts)


def validate_caption(obj: Any, labels: Sequence[str], individuals: Sequence[str],
                     subject: str | None = None) -> Caption:
    """Check an untrusted caption object strictly and return a :class:`Caption`.

    Rules: a JSON object; ``label`` one of ``labels``; every field in :data:`CAPTION_FIELDS`
    present and a string (at most 500 characters); ``subject`` one of ``individuals`` (and equal
    to ``subject`` when given); ``target`` empty or another individual; ``confidence`` (optional)
    a number in 0..1; no unknown keys.

    Raises:
        CaptionError: naming the first violated rule.
    """
    if not isinstance(obj, dict):
        raise CaptionError(f"the answer must be a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(CAPTION_FIELDS) - {"confidence"})
    if unknown:
        raise CaptionError(f"unknown keys {unknown}; allowed: {list(CAPTION_FIELDS) + ['confidence']}")
    for key in CAPTION_FIELDS:
        if key not in obj:
            raise CaptionError(f"missing key {key!r}")
        if not isinstance(obj[key], str):
            raise CaptionError(f"{key!r} must be a string, got {type(obj[key]).__name__}")
        if len(obj[key]) > 500:
            raise CaptionError(f"{key!r} is longer than 500 characters")
    label = obj["label"].strip().lower()
    if label not in labels:
        raise CaptionError(f"label {obj['label']!r} is not one of {list(labels)}")
    subj = obj["subject"].strip()
    if subj not in individuals:
        raise CaptionError(f"subject {subj!r} is not one of {list(individuals)}")
    if subject is not None and subj != subject:
        raise CaptionError(f"subject must be {subject!r} (the animal of this clip), got {subj!r}")
    target = obj["target"].strip()
    if target and (target not in individuals or target == subj):
        raise CaptionError(f"target {target!r} must be empty or another of {list(individuals)}")
    conf = obj.get("confidence", float("nan"))
    if conf is not None and (isinstance(conf, bool) or not isinstance(conf, (int, float))):
        raise CaptionError("'confidence' must be a number in 0..1")
    conf = float("nan") if conf is None else float(conf)
    if np.isfinite(conf) and not 0.0 <= conf <= 1.0:
        raise CaptionError(f"'confidence' must be in 0..1, got {conf}")
    return Caption(label=label, description=obj["description"].strip(), pose=obj["pose"].strip(),
                   direction=obj["direction"].strip(), speed=obj["speed"].strip(),
                   interaction=obj["interaction"].strip(), subject=subj, target=target,
                   confidence=conf)


@attrs.define(frozen=True)
class KinematicThresholds:
    """Thresholds of the kinematic captioner, in body lengths (BL), BL/s and rad/s.

    Defaults come from mouse physiology (head-to-tail-base length about 8 cm): walking about
    5-15 cm/s, running/trotting above about 18 cm/s; the head is 2-4 cm above the floor on all
    fours and 6-10 cm when reared; seen from above, a head raised against the wall projects
    beyond the floor border.

    Attributes:
        walk_speed: body-centre speed above which the animal moves (BL/s).
        run_speed: speed above which it runs (BL/s).
        rear_elevation: 3D: head higher above the lowest paw than this (BL) is a rear.
        wall_overshoot: 2D: head beyond the floor border by more than this (BL) is a supported
            rear.
        near_wall: 2D: head within this distance of the border (BL) with the body foreshortened
            below ``wall_length_ratio`` is also a supported rear (forepaws up on the wall).
        wall_length_ratio: see ``near_wall``.
        rear_length_ratio: 2D: body foreshortened below this fraction of its usual length while
            slower than ``walk_speed`` is an unsupported rear.
        groom_head_speed: head moving relative to the body faster than this while the body is
            still is grooming (BL/s).
        groom_paw_head: front paw closer to the head than this (BL) while still is grooming.
        social_dist: another animal closer than this (BL, centre to centre) can be chased.
        sniff_dist: the head point closer than this (BL) to another animal's body, while slow,
            is sniffing (a nose within about 2 cm; the head point of ear keypoints sits about
            2 cm behind the nose).
        sniff_speed: a sniffer has stopped: its body is slower than this (BL/s; an animal
            still closing in is walking up to the other).
        follow_window_s: a chaser follows the other animal: while both move faster than
            ``2 * walk_speed`` within ``social_dist``, its body velocity toward the other
            (``toward_other``), averaged over ``follow_window_s`` seconds, is at least
            ``follow_speed`` and above the other's toward it (the follower of the pair; a
            chaser that overtakes for a moment stays the follower). Without ``toward_other``
            (hand-made features), the follower is the one facing the other more (cosine above
            ``facing``).
        follow_speed: see ``follow_window_s`` (BL/s).
        facing: see ``follow_window_s``.
        crouch_ratio: 3D: a back lower than this fraction of its usual height above the floor
            (``back_height_ratio``) is a crouched, resting posture, not a sniff (a sniffer stands
            on all fours with its head stretched out).
        sniff_arrival_s: a sniff is a visit: a run of close, slow frames is ``sniff`` only when
            the animal itself came there, i.e. its mean speed over the ``sniff_arrival_s``
            seconds before the run began was at least ``sniff_arrival_speed`` (BL/s). The animal
            being sniffed was resting or grooming, so it keeps that label.
        sniff_arrival_speed: see ``sniff_arrival_s``.
        split_rearing: label rears ``supported_rear`` / ``unsupported_rear`` instead of ``rear``.
        active_motion_quantile: video-only features: frames whose motion energy is above this
            quantile of the session are ``active``.
    """

    walk_speed: float = 0.6
    run_speed: float = 2.2
    rear_elevation: float = 0.75
    wall_overshoot: float = 0.08
    near_wall: float = 0.2
    wall_length_ratio: float = 0.9
    rear_length_ratio: float = 0.78
    groom_head_speed: float = 0.6
    groom_paw_head: float = 0.3
    social_dist: float = 3.0
    sniff_dist: float = 0.45
    sniff_speed: float = 0.3
    follow_window_s: float = 1.5
    follow_speed: float = 0.6
    facing: float = 0.0
    crouch_ratio: float = 0.9
    sniff_arrival_s: float = 1.0
    sniff_arrival_speed: float = 0.3
    split_rearing: bool = False
    active_motion_quantile: float = 0.6


def absorb_short_runs(labels: np.ndarray, min_len: int) -> np.ndarray:
    """Per-frame labels ``(F,)`` with every run shorter than ``min_len`` frames absorbed,
    shortest first (ties: earliest): a run between two runs of one label joins them (A-b-A
    becomes A), otherwise it goes to its longer neighbour. Returns a new array."""
    labels = np.asarray(labels)
    n = len(labels)
    if n == 0:
        return labels.copy()
    cuts = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    start = list(np.r_[0, cuts])
    end = list(np.r_[cuts, n] - 1)
    lab = [labels[a] for a in start]
    k = len(start)
    prev = list(range(-1, k - 1))
    nxt = list(range(1, k + 1))
    nxt[-1] = -1
    alive = [True] * k
    heap = [(end[i] - start[i] + 1, start[i], i) for i in range(k)]
    heapq.heapify(heap)
    left_runs = k
    while heap and left_runs > 1:
        length, _, i = heapq.heappop(heap)
        if not alive[i] or length != end[i] - start[i] + 1:
            continue  # stale entry
        if length >= min_len:
            break
        a, b = prev[i], nxt[i]
        if a >= 0 and b >= 0 and lab[a] == lab[b]:  # A-b-A becomes A
            end[a] = end[b]
            alive[i] = alive[b] = False
            nxt[a] = nxt[b]
            if nxt[b] >= 0:
                prev[nxt[b]] = a
            left_runs -= 2
            heapq.heappush(heap, (end[a] - start[a] + 1, start[a], a))
            continue
        take_left = b < 0 or (a >= 0 and end[a] - start[a] >= end[b] - start[b])
        into = a if take_left else b
        start[into], end[into] = min(start[into], start[i]), max(end[into], end[i])
        alive[i] = False
        if a >= 0:
            nxt[a] = b
        if b >= 0:
            prev[b] = a
        left_runs -= 1
        heapq.heappush(heap, (end[into] - start[into] + 1, start[into], into))
    out = labels.copy()
    for i in range(k):
        if alive[i]:
            out[start[i]:end[i] + 1] = lab[i]
    return out


def _feature(features: FeatureSet, name: str) -> np.ndarray:
    if name in features.names:
        return features.get(name)
    return np.full((features.n_frames, len(features.individuals)), np.nan)


@attrs.define
class KinematicCaptioner:
    """The local, deterministic captioner (see the module docstring)."""

    thresholds: KinematicThresholds = attrs.field(factory=KinematicThresholds)

    def frame_labels(self, features: FeatureSet) -> np.ndarray:
        """Per-frame labels ``(F, M)`` (object array) by the threshold rules.

        Order of precedence: rear > social (chase, sniff) > run > walk > groom > rest. Video-only
        features give ``active`` / ``rest``.
        """
        t = self.thresholds
        n_f, n_m = features.n_frames, len(features.individuals)
        out = np.full((n_f, n_m), "rest", dtype=object)
        if "speed" not in features.names:  # video features only
            motion = np.nanmean(np.stack([features.get(n) for n in features.names
                                          if n.startswith("motion")], axis=-1), axis=-1)
            thr = np.nanquantile(motion, t.active_motion_quantile)
            out[motion > thr] = "active"
            return out
        speed = _feature(features, "speed")
        head = _feature(features, "head_speed")
        ratio = _feature(features, "body_length_ratio")
        elev = _feature(features, "elevation")
        wall = _feature(features, "wall")
        paw = _feature(features, "paw_head")
        dist = _feature(features, "other_dist")
        other_speed = _feature(features, "other_speed")
        with np.errstate(invalid="ignore"):
            still = speed < t.walk_speed
            groom = still & ((head > t.groom_head_speed) | (paw < t.groom_paw_head))
            out[groom] = "groom"
            out[speed >= t.walk_speed] = "walk"
            out[speed >= t.run_speed] = "run"
            head_other = _feature(features, "head_other")
            crouched = _feature(features, "back_height_ratio") < t.crouch_ratio
            close = ((head_other < t.sniff_dist) & (speed < t.sniff_speed)
                     & ~(paw < t.groom_paw_head) & ~crouched)
            out[self._arrived(close, speed, features.fps)] = "sniff"
            fast = ((dist < t.social_dist) & (speed >= t.walk_speed * 2)
                    & (other_speed >= t.walk_speed * 2))
            out[fast & self._follower(features)] = "chase"
            has3d = np.isfinite(elev)
            rear3d = has3d & (elev > t.rear_elevation)
            supported = ~has3d & ((wall < -t.wall_overshoot)
                                  | ((wall < t.near_wall) & (ratio < t.wall_length_ratio)))
            unsupported = ~has3d & ~supported & (ratio < t.rear_length_ratio) & still
            if t.split_rearing:
                near_wall = wall < t.wall_overshoot * 3
                out[rear3d & near_wall] = "supported_rear"
                out[rear3d & ~near_wall] = "unsupported_rear"
                out[supported] = "supported_rear"
                out[unsupported] = "unsupported_rear"
            else:
                out[rear3d | supported | unsupported] = "rear"
        return out

    def _follower(self, features: FeatureSet) -> np.ndarray:
        """``(F, M)`` bool: the animal is the follower of the pair with its nearest other: its
        velocity toward the other, averaged over ``follow_window_s``, is at least
        ``follow_speed`` and above the other's toward it; without ``toward_other``, it faces
        the other (cosine above ``facing``) more than the other faces it. True where the other
        is unknown."""
        t = self.thresholds
        if features.has("toward_other"):
            size = max(1, int(round(t.follow_window_s * features.fps)))
            score = _smooth(_feature(features, "toward_other"), size)
            floor = t.follow_speed
        else:
            score, floor = _feature(features, "other_facing"), t.facing
        if features.nearest is None:
            return np.ones(score.shape, dtype=bool)
        nearest = features.nearest
        frames = np.arange(score.shape[0])[:, None]
        back = np.where(nearest >= 0, score[frames, np.maximum(nearest, 0)], np.nan)
        with np.errstate(invalid="ignore"):
            return (score > floor) & ~(score <= back)

    def _arrived(self, close: np.ndarray, speed: np.ndarray, fps: float) -> np.ndarray:
        """Frames of runs of ``close`` ``(F, M)`` (gaps up to 0.2 s bridged) that the animal
        reached by moving: mean ``speed`` over ``sniff_arrival_s`` before the run start at
        least ``sniff_arrival_speed``. Returns a bool ``(F, M)`` mask inside ``close``."""
        t = self.thresholds
        before = max(1, int(round(t.sniff_arrival_s * fps)))
        gap = max(0, int(round(0.2 * fps)))
        out = np.zeros_like(close, dtype=bool)
        for m in range(close.shape[1]):
            idx = np.flatnonzero(close[:, m])
            if len(idx) == 0:
                continue
            cuts = np.flatnonzero(np.diff(idx) > gap + 1)
            starts = np.r_[idx[0], idx[cuts + 1]]
            ends = np.r_[idx[cuts], idx[-1]]
            for a, b in zip(starts, ends):
                pre = speed[max(0, a - before):a, m]
                pre = pre[np.isfinite(pre)]
                if a == 0 or (len(pre) and pre.mean() >= t.sniff_arrival_speed):
                    out[a:b + 1, m] = True
        return out & close

    def split_clips(self, clips: Sequence[Clip], features: FeatureSet,
                    min_run_s: float) -> list[Clip]:
        """Cut clips where the per-frame labels change for at least ``min_run_s`` seconds.

        The over-segmentation clusters features, so a clip can straddle a behavior change
        (e.g. a walk that slows into a sniff); its majority caption would then move or hide the
        boundary. Over each animal's whole timeline, runs of one per-frame label shorter than
        ``min_run_s`` are absorbed (:func:`absorb_short_runs`), and every clip is cut where the
        remaining runs change, also near its own edges: a change a few frames before a cluster
        edge keeps its frame instead of moving to that edge (the piece left between them may be
        shorter than the over-segmentation's minimum clip; it is captioned like any clip).
        Returns new clips (same subject and cluster) in the input order; a clip without such a
        change is kept as is.
        """
        labels = self.frame_labels(features)
        min_len = max(1, int(round(min_run_s * features.fps)))
        smooth = {name: absorb_short_runs(labels[:, m].astype(str), min_len)
                  for m, name in enumerate(features.individuals)}
        out: list[Clip] = []
        for clip in clips:
            seq = smooth[clip.subject][clip.start:clip.end + 1]
            cuts = np.flatnonzero(seq[1:] != seq[:-1]) + 1
            out.extend(attrs.evolve(clip, start=clip.start + int(a), end=clip.start + int(b) - 1)
                       for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(seq)]))
        return out

    def caption_clips(self, clips: Sequence[Clip], features: FeatureSet) -> list[Caption]:
        """One caption per clip: the majority label of its frames, confidence = that fraction."""
        labels = self.frame_labels(features)
        index = {name: i for i, name in enumerate(features.individuals)}
        out = []
        for clip in clips:
            m = index[clip.subject]
            span = slice(clip.start, clip.end + 1)
            values, counts = np.unique(labels[span, m].astype(str), return_counts=True)
            best = int(np.argmax(counts))
            label = str(values[best])
            conf = float(counts[best] / counts.sum())
            out.append(self._describe(clip, label, conf, features, m))
        return out

    def _describe(self, clip: Clip, label: str, conf: float, features: FeatureSet,
                  m: int) -> Caption:
        span = slice(clip.start, clip.end + 1)

        def med(name: str) -> float:
            if name not in features.names:
                return float("nan")
            v = features.get(name)[span, m]
            return float(np.nanmedian(v)) if np.isfinite(v).any() else float("nan")

        speed = med("speed")
        speed_text = ("unknown speed" if not np.isfinite(speed) else
                      f"{'still' if speed < self.thresholds.walk_speed else 'moving'} at "
                      f"{speed:.1f} body lengths/s")
        wall = _feature(features, "wall")[span, m]
        direction = ""
        if np.isfinite(wall).sum() >= 2:
            first, last = wall[np.isfinite(wall)][[0, -1]]
            direction = ("toward the wall" if last < first - 0.2 else
                         "toward the centre" if last > first + 0.2 else "staying in place"
                         if speed < self.thresholds.walk_speed else "along its course")
        pose = {
            "rear": "reared up on the hind legs",
            "supported_rear": "reared up, forepaws against the wall",
            "unsupported_rear": "reared up without support",
            "groom": "hunched, head and forepaws moving",
            "rest": "crouched, body still",
            "walk": "on all fours, stretched",
            "run": "on all fours, stretched",
            "chase": "on all fours, stretched",
            "sniff": "head extended toward the other animal",
            "active": "moving (video motion only, no keypoints)",
        }.get(label, "")
        target = ""
        interaction = "none"
        dist = med("other_dist")
        if np.isfinite(dist):
            if label in SOCIAL_LABELS:
                target = self._nearest_other(features, m, span)
                interaction = f"{label} {target} at {dist:.1f} body lengths"
            else:
                interaction = f"nearest animal {dist:.1f} body lengths away"
        subject = clip.subject
        seconds = clip.n_frames / features.fps
        description = f"{subject} {label.replace('_', ' ')}s for {seconds:.1f} s"
        if target:
            description += f" with {target}"
        return Caption(label=label, description=description, pose=pose, direction=direction,
                       speed=speed_text, interaction=interaction, subject=subject,
                       target=target, confidence=conf)

    @staticmethod
    def _nearest_other(features: FeatureSet, m: int, span: slice) -> str:
        """Name of the animal most often nearest to animal ``m`` over the clip."""
        if features.nearest is None:
            return ""
        near = features.nearest[span, m]
        near = near[near >= 0]
        if len(near) == 0:
            return ""
        return features.individuals[int(np.bincount(near).argmax())]
