"""The VLM path of the behavior pipeline: clip captions from video frames, LLM merging.

Both talk to an OpenAI-compatible endpoint through :class:`napari_behaviorvlm.vlm.VLMClient`
(retries with backoff, content-addressed cache, strict validation, accounting):

- :class:`VLMCaptioner` sends, per clip, frames sampled at about ``sample_fps`` (at most
  ``max_frames`` per camera, downscaled to ``image_width`` px) from the chosen cameras with the
  ``caption_clip_v1`` prompt; the answer is validated by
  :func:`~napari_behaviorvlm.behavior.captions.validate_caption` (label in the vocabulary,
  subject = the clip's animal, ...). An answer still invalid after the client's re-asks is
  *flagged*: the clip gets the local kinematic caption with confidence 0 and a
  ``[flagged: ...]`` description, and is counted in the stats.
- :class:`LLMMerger` sends each animal's captioned clips (in chunks of ``max_clips``) with the
  ``merge_segments_v1`` prompt and checks that the segments cover every clip exactly once, in
  order, with known labels; a chunk whose answer stays invalid falls back to the local merger
  (counted in the stats).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import cv2
import numpy as np

from napari_behaviorvlm.behavior.captions import (
    Caption,
    CaptionError,
    KinematicCaptioner,
    validate_caption,
)
from napari_behaviorvlm.behavior.features import FeatureSet
from napari_behaviorvlm.behavior.merge import LocalMerger
from napari_behaviorvlm.behavior.overseg import Clip
from napari_behaviorvlm.core.segments import Segment

__all__ = ["LLMMerger", "VLMCaptioner", "run_vlm_backend", "sample_frames"]

CAPTION_PROMPT = "caption_clip_v1"
MERGE_PROMPT = "merge_segments_v1"


def sample_frames(start: int, end: int, fps: float, sample_fps: float, max_frames: int) -> list[int]:
    """Frames of ``start..end`` (inclusive) about ``1 / sample_fps`` s apart, at most
    ``max_frames`` (evenly thinned), always including the first frame."""
    step = max(1.0, fps / max(sample_fps, 1e-9))
    frames = sorted({min(int(round(f)), end) for f in np.arange(start, end + 1, step)})
    if len(frames) > max_frames:
        idx = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
        frames = [frames[i] for i in sorted(set(idx))]
    return frames


def _shrink(image: np.ndarray, width: int) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    h, w = image.shape[:2]
    if w <= width:
        return image
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


@attrs.define
class VLMCaptioner:
    """Captions clips with a VLM (see the module docstring).

    Attributes:
        client: a ``VLMClient``.
        labels: the vocabulary the label must come from.
        individuals: animal names (subjects/targets must be among them).
        frames: ``frame -> [image per camera]`` (uint8).
        fps: session frames per second.
        sample_fps: frames per second sent from each clip.
        cameras: camera indices sent.
        max_frames: cap of frames per camera and clip.
        image_width: images are downscaled to this width (px).
    """

    client: Any
    labels: Sequence[str]
    individuals: Sequence[str]
    frames: Callable[[int], list[np.ndarray]]
    fps: float
    sample_fps: float = 10.0
    cameras: Sequence[int] = (0,)
    max_frames: int = 16
    image_width: int = 320

    def request(self, clip: Clip, context: str = ""):
        """The ``VLMRequest`` of one clip (frames in time order, cameras interleaved)."""
        from napari_behaviorvlm.vlm import load_prompt

        prompt = load_prompt(CAPTION_PROMPT)
        images = []
        picked = sample_frames(clip.start, clip.end, self.fps, self.sample_fps, self.max_frames)
        for f in picked:
            views = self.frames(f)
            for c in self.cameras:
                if c >= len(views):
                    raise ValueError(f"camera index {c} does not exist (the session has "
                                     f"{len(views)} cameras)")
                images.append(_shrink(views[c], self.image_width))
        others = [n for n in self.individuals if n != clip.subject]
        values = {
            "labels": ", ".join(self.labels), "start": clip.start, "end": clip.end,
            "fps": f"{self.fps:g}", "subject": clip.subject,
            "others": ", ".join(others) if others else "none",
            "context": (context + " " if context else "") +
            f"{len(picked)} time points x {len(self.cameras)} camera(s), frames {picked}.",
        }

        def validate(obj: Any) -> Caption:
            return validate_caption(obj, self.labels, self.individuals, subject=clip.subject)

        return prompt.request(values, images=images, validate=validate, tag=clip)

    def caption_clips(self, clips: Sequence[Clip], fallback: Sequence[Caption],
                      on_result: Callable[[int, int], None] | None = None,
                      should_stop: Callable[[], bool] | None = None) -> tuple[list[Caption], dict]:
        """Captions for ``clips``; ``fallback`` (one per clip) is used, flagged, for clips whose
        answer failed. Returns the captions and ``{"flagged": n, "errors": [...]}``."""
        from napari_behaviorvlm.vlm import VLMCancelledError

        requests = [self.request(c) for c in clips]
        done = [0]

        def progress(_i: int, _result: Any) -> None:
            done[0] += 1
            if on_result is not None:
                on_result(done[0], len(requests))

        results = self.client.ask_many(requests, on_result=progress, should_stop=should_stop)
        captions: list[Caption] = []
        errors: list[str] = []
        for clip, result, fb in zip(clips, results, fallback):
            if isinstance(result, VLMCancelledError):
                from napari_behaviorvlm.behavior.pipeline import SegmentationCancelled

                raise SegmentationCancelled("segmentation cancelled; nothing was written")
            if isinstance(result, Exception):
                reason = str(result).splitlines()[0][:200]
                errors.append(f"{clip.subject} frames {clip.start}-{clip.end}: {reason}")
                captions.append(attrs.evolve(
                    fb, confidence=0.0,
                    description=f"[flagged: VLM answer invalid, kinematic caption] {fb.description}"))
            else:
                captions.append(result.value)
        return captions, {"flagged": len(errors), "errors": errors}


def _merge_validator(clips: Sequence[Clip], labels: Sequence[str], individuals: Sequence[str]):
    """Validator of a merge answer for ``clips`` (one subject, numbered 0..n-1)."""
    subject = clips[0].subject

    def validate(obj: Any) -> list[Segment]:
        if not isinstance(obj, dict) or not isinstance(obj.get("segments"), list):
            raise CaptionError('the answer must be {"segments": [...]}')
        expected = 0
        out = []
        for k, seg in enumerate(obj["segments"]):
            if not isinstance(seg, dict):
                raise CaptionError(f"segment {k} is not an object")
            first, last = seg.get("first"), seg.get("last")
            if not isinstance(first, int) or not isinstance(last, int) or isinstance(first, bool):
                raise CaptionError(f"segment {k}: first and last must be integers")
            if first != expected:
                raise CaptionError(f"segment {k} starts at clip {first}, expected clip {expected} "
                                   "(segments must cover clips 0..n-1 in order, no gap, no overlap)")
            if last < first or last >= len(clips):
                raise CaptionError(f"segment {k}: last={last} must be in {first}..{len(clips) - 1}")
            label = str(seg.get("label", "")).strip().lower()
            if label not in labels:
                raise CaptionError(f"segment {k}: label {seg.get('label')!r} is not one of {list(labels)}")
            if seg.get("subject") != subject:
                raise CaptionError(f"segment {k}: subject must be {subject!r}")
            target = str(seg.get("target", "")).strip()
            if target and (target not in individuals or target == subject):
                raise CaptionError(f"segment {k}: target {target!r} must be empty or another animal")
            conf = seg.get("confidence")
            if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0 <= conf <= 1:
                raise CaptionError(f"segment {k}: confidence must be a number in 0..1")
            out.append(Segment(start=clips[first].start, end=clips[last].end, label=label,
                               subject=subject, target=target,
                               caption=str(seg.get("caption", ""))[:500], source="model",
                               score=float(conf)))
            expected = last + 1
        if expected != len(clips):
            raise CaptionError(f"clips {expected}..{len(clips) - 1} are in no segment")
        return out

    return validate


@attrs.define
class LLMMerger:
    """Merges captioned clips with an LLM (see the module docstring).

    Attributes:
        client: a ``VLMClient``.
        labels: vocabulary.
        individuals: animal names.
        max_clips: clips per request (longer sequences are sent in chunks; equal-label
            segments that meet at a chunk border are joined).
        fallback: the local merger used when an answer stays invalid.
    """

    client: Any
    labels: Sequence[str]
    individuals: Sequence[str]
    max_clips: int = 40
    fallback: LocalMerger = attrs.field(factory=LocalMerger)

    def request(self, clips: Sequence[Clip], captions: Sequence[Caption]):
        from napari_behaviorvlm.vlm import load_prompt

        lines = [
            f"{i}: frames {c.start}-{c.end}, subject {c.subject}: {cap.label} - {cap.text()}"
            + (f" [target {cap.target}]" if cap.target else "")
            for i, (c, cap) in enumerate(zip(clips, captions))
        ]
        values = {"labels": ", ".join(self.labels), "clips": "\n".join(lines)}
        return load_prompt(MERGE_PROMPT).request(
            values, validate=_merge_validator(clips, self.labels, self.individuals),
            tag=(clips[0].subject, clips[0].start))

    def merge(self, clips: Sequence[Clip], captions: Sequence[Caption], fps: float,
              should_stop: Callable[[], bool] | None = None) -> tuple[list[Segment], dict]:
        """Segments for all subjects and ``{"merge_fallbacks": n, "merge_errors": [...]}``."""
        chunks: list[tuple[list[Clip], list[Caption]]] = []
        by_subject: dict[str, list[tuple[Clip, Caption]]] = {}
        for clip, cap in zip(clips, captions):
            by_subject.setdefault(clip.subject, []).append((clip, cap))
        for subject in sorted(by_subject):
            pairs = sorted(by_subject[subject], key=lambda p: p[0].start)
            for i in range(0, len(pairs), self.max_clips):
                part = pairs[i:i + self.max_clips]
                chunks.append(([p[0] for p in part], [p[1] for p in part]))
        results = self.client.ask_many([self.request(c, k) for c, k in chunks],
                                       should_stop=should_stop)
        segments: list[Segment] = []
        errors: list[str] = []
        for (c, k), result in zip(chunks, results):
            if isinstance(result, Exception):
                errors.append(f"{c[0].subject} frames {c[0].start}-{c[-1].end}: "
                              f"{str(result).splitlines()[0][:200]}")
                part = self.fallback.merge(c, k, fps)
            else:
                part = result.value
            prev = segments[-1] if segments else None
            if part and prev is not None and prev.subject == part[0].subject \
                    and prev.label == part[0].label and prev.target == part[0].target \
                    and prev.end + 1 == part[0].start:
                w1, w2 = prev.n_frames, part[0].n_frames
                score = (prev.score * w1 + part[0].score * w2) / (w1 + w2) \
                    if not (math.isnan(prev.score) or math.isnan(part[0].score)) else math.nan
                segments[-1] = attrs.evolve(prev, end=part[0].end, score=score)
                part = part[1:]
            segments.extend(part)
        return segments, {"merge_fallbacks": len(errors), "merge_errors": errors}


def run_vlm_backend(inputs, features: FeatureSet, clips: list[Clip], config, client,
                    on_progress: Callable[[float, str], None],
                    should_stop: Callable[[], bool] | None) -> tuple[list[Caption], list[Segment], dict]:
    """Captions (VLM) and segments (LLM merge, or local when ``config.llm_merge`` is False) for
    :func:`~napari_behaviorvlm.behavior.pipeline.segment_inputs`."""
    if inputs.frames is None:
        raise ValueError("the VLM backend needs the session's video frames; none can be read "
                         "(use --backend local, or check the session's video paths)")
    own_client = client is None
    if own_client:
        if config.vlm is None:
            raise ValueError("backend 'vlm' needs a VLM configuration (base URL and model)")
        from napari_behaviorvlm.vlm import VLMClient

        client = VLMClient(config.vlm)
    try:
        labels = tuple(config.labels)
        local = KinematicCaptioner(config.thresholds).caption_clips(clips, features)
        captioner = VLMCaptioner(client, labels, features.individuals, inputs.frames, features.fps,
                                 config.sample_fps, config.cameras, config.max_frames_per_clip,
                                 config.image_width)
        on_progress(0.0, f"captioning {len(clips)} clips (VLM)")
        captions, cap_stats = captioner.caption_clips(
            clips, local, lambda d, n: on_progress(0.8 * d / max(n, 1), f"captioned {d}/{n} clips"),
            should_stop)
        on_progress(0.8, "merging")
        if config.llm_merge:
            segments, merge_stats = LLMMerger(client, labels, features.individuals,
                                              fallback=LocalMerger(config.min_bout_s, config.compatible)
                                              ).merge(clips, captions, features.fps, should_stop)
        else:
            segments = LocalMerger(config.min_bout_s, config.compatible).merge(clips, captions, features.fps)
            merge_stats = {}
        stats = {**cap_stats, **merge_stats, "usage": client.usage.as_dict()}
        return captions, segments, stats
    finally:
        if own_client:
            client.close()
