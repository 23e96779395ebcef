"""Merge captioned clips into labeled segments (the local, deterministic merger).

Per animal, in time order:

1. adjacent clips with the same label (and target), or with labels in one ``compatible``
   group, join into one bout; a joined bout takes the label covering most of its frames;
2. bouts shorter than ``min_bout_s`` are absorbed, shortest first: into both neighbours when
   those agree (A-b-A becomes A); between two different bouts (A-b-C) into the next one, C: a
   short bout there is the transition into C (per-frame labels lag a behavior change, e.g. a
   mouse that stops before it rears looks at rest for a moment); at either end of the timeline
   into its only neighbour. A short bout whose clips were sure of their label (mean confidence
   >= ``keep_confident``) stays when it lasts at least ``keep_min_s`` (A-b-A, e.g. a brief
   sniff during a walk) or ``transition_keep_s`` (A-b-C);
3. an interaction starts and ends for both animals at once: where a bout with a target (chase,
   sniff) starts or ends and the target animal's own bouts change within ``pair_window_s``, both
   boundaries move to the earlier of the two frames (each animal's labels lag the event by its
   own reaction, so the earlier change is the closer one);
4. each bout becomes a :class:`~napari_behaviorvlm.core.segments.Segment` with source
   ``"model"``, score = frame-weighted mean clip confidence, caption = the caption of its longest
   clip.

The LLM merger (same input and output) is :class:`~napari_behaviorvlm.behavior.vlm_backend.LLMMerger`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import numpy as np

from napari_behaviorvlm.behavior.captions import Caption
from napari_behaviorvlm.behavior.overseg import Clip
from napari_behaviorvlm.core.segments import Segment

__all__ = ["Bout", "LocalMerger", "bouts_from_clips"]


@attrs.define
class Bout:
    """A run of clips of one animal being merged (frames ``start..end`` inclusive)."""

    start: int
    end: int
    subject: str
    label: str
    target: str
    caption: str
    frames_by_label: dict[str, int]
    conf_frames: float  # sum of confidence x frames over clips with a finite confidence
    conf_weight: int
    longest: int  # frames of the clip whose caption is kept

    @property
    def n_frames(self) -> int:
        return self.end - self.start + 1

    def absorb(self, other: Bout) -> None:
        """Take ``other`` (adjacent) into this bout; the label stays this bout's unless a
        majority of frames says otherwise (decided by the caller through ``relabel``)."""
        self.start, self.end = min(self.start, other.start), max(self.end, other.end)
        for k, v in other.frames_by_label.items():
            self.frames_by_label[k] = self.frames_by_label.get(k, 0) + v
        self.conf_frames += other.conf_frames
        self.conf_weight += other.conf_weight
        if other.longest > self.longest:
            self.caption, self.longest = other.caption, other.longest

    def relabel_by_majority(self, allowed: Sequence[str]) -> None:
        best = max(allowed, key=lambda k: (self.frames_by_label.get(k, 0), k == self.label))
        self.label = best

    def to_segment(self) -> Segment:
        score = self.conf_frames / self.conf_weight if self.conf_weight else math.nan
        return Segment(start=self.start, end=self.end, label=self.label, subject=self.subject,
                       target=self.target, caption=self.caption, source="model", score=score)


def bouts_from_clips(clips: Sequence[Clip], captions: Sequence[Caption]) -> dict[str, list[Bout]]:
    """One bout per clip, grouped by subject and sorted by start."""
    if len(clips) != len(captions):
        raise ValueError(f"{len(clips)} clips but {len(captions)} captions")
    out: dict[str, list[Bout]] = {}
    for clip, cap in zip(clips, captions):
        finite = not math.isnan(cap.confidence)
        out.setdefault(clip.subject, []).append(Bout(
            start=clip.start, end=clip.end, subject=clip.subject, label=cap.label,
            target=cap.target, caption=cap.text(), frames_by_label={cap.label: clip.n_frames},
            conf_frames=cap.confidence * clip.n_frames if finite else 0.0,
            conf_weight=clip.n_frames if finite else 0, longest=clip.n_frames,
        ))
    for bouts in out.values():
        bouts.sort(key=lambda b: b.start)
    return out


@attrs.define
class LocalMerger:
    """Deterministic merger (see the module docstring).

    Attributes:
        min_bout_s: bouts shorter than this (seconds) are absorbed by their neighbours.
        compatible: groups of labels merged as one when adjacent, e.g. ``[("walk", "run")]``.
        keep_confident: a short bout is still kept when its clips were sure of their label
            (frame-weighted mean confidence at least this) and it lasts at least ``keep_min_s``:
            a brief sniff or rest the captions agree on is a real bout, not noise.
        keep_min_s: see ``keep_confident`` (s).
        transition_keep_s: a sure short bout between two different labels stays only from
            this length (s); shorter, it is a transition (see the module docstring).
        pair_window_s: the start/end of a bout with a target and a change of the target's
            bouts at most this far apart (s) are one event: both move to the earlier frame
            (0: off).
    """

    min_bout_s: float = 0.5
    compatible: list[tuple[str, ...]] = attrs.field(factory=list)
    keep_confident: float = 0.95
    keep_min_s: float = 0.3
    transition_keep_s: float = 0.4
    pair_window_s: float = 0.5

    def _absorbable(self, bouts: list[Bout], k: int, min_len: int, keep_len: int,
                    transition_len: int) -> bool:
        """``bouts[k]`` is shorter than ``min_len`` frames and not a sure short bout (see the
        class; a bout between two different labels must last ``transition_len`` to be kept)."""
        bout = bouts[k]
        if bout.n_frames >= min_len:
            return False
        between = 0 < k < len(bouts) - 1 and bouts[k - 1].label != bouts[k + 1].label
        sure = (bout.conf_weight > 0 and bout.n_frames >= (transition_len if between else keep_len)
                and bout.conf_frames / bout.conf_weight >= self.keep_confident)
        return not sure

    def _group(self, label: str) -> tuple[str, ...]:
        for group in self.compatible:
            if label in group:
                return tuple(group)
        return (label,)

    def _join_same(self, bouts: list[Bout]) -> list[Bout]:
        out: list[Bout] = []
        for b in bouts:
            prev = out[-1] if out else None
            if (prev is not None and prev.target == b.target
                    and b.label in self._group(prev.label) and prev.end + 1 >= b.start):
                group = self._group(prev.label)
                prev.absorb(b)
                prev.relabel_by_majority(group)
            else:
                out.append(attrs.evolve(b, frames_by_label=dict(b.frames_by_label)))
        return out

    def merge(self, clips: Sequence[Clip], captions: Sequence[Caption], fps: float) -> list[Segment]:
        """Segments (source ``"model"``) from clips and their captions, sorted by subject, start."""
        min_len = max(1, int(round(self.min_bout_s * fps)))
        keep_len = max(1, int(round(self.keep_min_s * fps)))
        transition_len = max(1, int(round(self.transition_keep_s * fps)))
        merged: dict[str, list[Bout]] = {}
        for subject, bouts in sorted(bouts_from_clips(clips, captions).items()):
            bouts = self._join_same(bouts)
            while len(bouts) > 1:
                short = [k for k in range(len(bouts))
                         if self._absorbable(bouts, k, min_len, keep_len, transition_len)]
                if not short:
                    break
                i = min(short, key=lambda k: (bouts[k].n_frames, k))
                left = bouts[i - 1] if i > 0 else None
                right = bouts[i + 1] if i + 1 < len(bouts) else None
                if left is not None and right is not None and left.label == right.label \
                        and left.target == right.target:
                    left.absorb(bouts[i])
                    left.absorb(right)
                    del bouts[i:i + 2]
                    continue
                into = left if right is None else right  # between two others: the next one
                label, target = into.label, into.target
                into.absorb(bouts[i])
                into.label, into.target = label, target
                del bouts[i]
            merged[subject] = bouts
        window = int(round(self.pair_window_s * fps))
        if window > 0:
            _align_pairs(merged, window)
        return [b.to_segment() for _subject, bouts in sorted(merged.items()) for b in bouts]


def _move_boundary(bouts: list[Bout], k: int, frame: int) -> bool:
    """Move the boundary between ``bouts[k - 1]`` and ``bouts[k]`` (adjacent) to ``frame`` (the
    new first frame of ``bouts[k]``) when both keep at least one frame; True when moved."""
    before, after = bouts[k - 1], bouts[k]
    if before.end + 1 != after.start or not before.start < frame <= after.end:
        return False
    before.end, after.start = frame - 1, frame
    return True


def _align_pairs(merged: dict[str, list[Bout]], window: int) -> None:
    """Step 3 of the module docstring, in place on each subject's bouts (sorted, adjacent)."""
    for bouts in merged.values():
        for k, bout in enumerate(bouts):
            partner = merged.get(bout.target) if bout.target else None
            if not partner or len(partner) < 2:
                continue
            edges = [j for j in (k, k + 1) if 0 < j < len(bouts)]  # boundaries before bouts[j]
            for j in edges:
                own = bouts[j].start
                starts = np.array([b.start for b in partner[1:]])
                p = int(np.argmin(np.abs(starts - own))) + 1
                other = int(starts[p - 1])
                if other == own or abs(other - own) > window:
                    continue
                if other < own:
                    _move_boundary(bouts, j, other)
                else:
                    _move_boundary(partner, p, own)
