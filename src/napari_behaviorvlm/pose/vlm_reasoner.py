"""Stages 1-2 through a vision-language model (VLM), and the hybrid of local and VLM.

:class:`VLMReasoner`

- stage 1 (regions) comes from geometry: the region's predicted keypoints after the local
  reasoner's translation fit give a crop centre and radius (no model call);
- stage 2 asks the model, one request per (individual, region) of the view, with the prompt
  ``pose_assign_v1`` (``vlm/prompts/pose_assign_v1.txt``): the region crop (upscaled 2x) with
  every candidate inside circled and numbered, the candidates' numbers and full-image
  positions in the text, and the few-shot window (the last accepted frames of the same view
  and the nearest seed frame) as earlier turns: the same crop of that frame with its labeled
  keypoints circled and numbered, and the right answer. Requests of a view go out concurrently
  (``VLMConfig.concurrency``) through :class:`napari_behaviorvlm.vlm.VLMClient`, which retries,
  caches and counts;
- every answer is untrusted input: the JSON schema, then :func:`validate_assignment` (each
  keypoint exactly once, candidate numbers that were drawn, no number twice, confidence 0..1).
  A malformed answer is re-asked by the client; one still malformed (or a failed request) is
  *not used*: its keypoints keep the geometric costs, confidence 0, flag LOW_MODEL_CONFIDENCE;
- the model's choice costs 0 in stage 3 (a model "not visible" makes "none" free); other
  candidates keep their geometric cost, so stage 3 still resolves a candidate claimed twice and
  stage 4 still rejects a choice that the other views contradict.

With ``use_regions=False`` (the naive ablation) one request per individual names every keypoint
on a crop of the whole animal.

:class:`HybridReasoner` runs the local reasoner, harmonizes, and asks the model only about the
regions whose smallest stage-3 margin is below ``margin`` (ambiguous geometry).
"""

from __future__ import annotations

import attrs
import cv2
import numpy as np

from napari_behaviorvlm.core.pose import Flag

from napari_behaviorvlm.pose.reasoner import (
    LocalReasoner,
    RegionAnswer,
    RegionEstimate,
    ViewContext,
)

__all__ = ["HybridReasoner", "VLMReasoner", "draw_candidates", "validate_assignment"]

_LOW = int(Flag.LOW_MODEL_CONFIDENCE)

PROMPT = "pose_assign_v1"
SCALE = 2
MIN_RADIUS, MAX_RADIUS = 24.0, 110.0


def validate_assignment(data: dict, keypoints: list[str], n_candidates: int) -> dict[str, tuple[int | None, float]]:
    """Check a model's answer strictly; return ``keypoint -> (candidate or None, confidence)``.

    Raises:
        ValueError: with a message the model can act on (unknown or repeated keypoint, a
            missing keypoint, a candidate number that was not drawn or used twice, a confidence
            outside 0..1).
    """
    if not isinstance(data, dict) or not isinstance(data.get("assignments"), list):
        raise ValueError('the answer must be {"assignments": [...]}')
    out: dict[str, tuple[int | None, float]] = {}
    used: set[int] = set()
    for item in data["assignments"]:
        if not isinstance(item, dict):
            raise ValueError("each assignment must be an object")
        name = item.get("keypoint")
        if name not in keypoints:
            raise ValueError(f"unknown keypoint {name!r}; the keypoints are {keypoints}")
        if name in out:
            raise ValueError(f"keypoint {name!r} is assigned twice")
        cand = item.get("candidate")
        if cand is not None:
            if isinstance(cand, bool) or not isinstance(cand, int) or not 0 <= cand < n_candidates:
                raise ValueError(f"candidate {cand!r} for {name!r} was not drawn; the numbers are "
                                 f"0..{n_candidates - 1} or null")
            if cand in used:
                raise ValueError(f"candidate {cand} is used for two keypoints")
            used.add(cand)
        conf = item.get("confidence")
        if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0 <= conf <= 1:
            raise ValueError(f"confidence of {name!r} must be a number between 0 and 1")
        out[name] = (cand, float(conf))
    missing = [k for k in keypoints if k not in out]
    if missing:
        raise ValueError(f"keypoints missing from the answer: {missing}")
    return out


def _crop_box(center: np.ndarray, radius: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    w, h = size
    r = int(np.clip(radius, MIN_RADIUS, MAX_RADIUS))
    cx, cy = (int(round(v)) for v in center)
    x0, y0 = max(cx - r, 0), max(cy - r, 0)
    x1, y1 = min(cx + r + 1, w), min(cy + r + 1, h)
    return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)


def draw_candidates(image: np.ndarray, box: tuple[int, int, int, int], xy: np.ndarray,
                    numbers: list[int]) -> np.ndarray:
    """RGB crop ``box`` (x0, y0, x1, y1) of ``image``, upscaled ``SCALE`` x, with each point of
    ``xy`` (full-image px) circled and labeled with its number."""
    x0, y0, x1, y1 = box
    crop = np.asarray(image)[y0:y1, x0:x1]
    if crop.ndim == 2:
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB)
    crop = cv2.resize(crop, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_NEAREST)
    for (x, y), n in zip(xy, numbers):
        px, py = int(round((x - x0 + 0.5) * SCALE)), int(round((y - y0 + 0.5) * SCALE))
        cv2.circle(crop, (px, py), 7, (255, 200, 0), 1, cv2.LINE_AA)
        cv2.putText(crop, str(n), (px + 7, py - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 0),
                    1, cv2.LINE_AA)
    return np.ascontiguousarray(crop)


def _format_candidates(xy: np.ndarray, numbers: list[int]) -> str:
    if not numbers:
        return "none"
    return ", ".join(f"{n} at (x={x:.1f}, y={y:.1f})" for n, (x, y) in zip(numbers, xy))


@attrs.define(eq=False)
class VLMReasoner:
    """Stage 2 by a vision-language model (see the module docstring).

    Attributes:
        client: A :class:`napari_behaviorvlm.vlm.VLMClient`.
        use_regions: One request per region (False: one per individual, all keypoints).
        geometry: The local reasoner used for stage 1 and the geometric costs.
        max_examples: Few-shot example frames per request.
    """

    client: object
    use_regions: bool = True
    geometry: LocalReasoner = attrs.field(factory=LocalReasoner)
    max_examples: int = 3
    last_calls: int = 0
    needs_examples: bool = True

    def __attrs_post_init__(self) -> None:
        self.geometry.use_regions = self.use_regions

    @classmethod
    def from_config(cls, config, use_regions: bool = True, cache_dir=None) -> VLMReasoner:
        """A reasoner with a new client for ``config`` (a ``VLMConfig``)."""
        from napari_behaviorvlm.vlm import VLMClient

        if cache_dir is not None:
            config = attrs.evolve(config, cache_dir=cache_dir)
        return cls(client=VLMClient(config), use_regions=use_regions)

    def usage(self) -> dict:
        return self.client.usage.as_dict()

    def locate_regions(self, ctx: ViewContext) -> list[RegionEstimate]:
        self.last_calls = 0
        return self.geometry.locate_regions(ctx)

    def assign_regions(self, ctx: ViewContext, regions: list[RegionEstimate]) -> list[RegionAnswer]:
        self.last_calls = 0
        local = self.geometry.assign_regions(ctx, regions)
        return self.ask(ctx, regions, local)

    def ask(self, ctx: ViewContext, regions: list[RegionEstimate], local: list[RegionAnswer]
            ) -> list[RegionAnswer]:
        """Ask the model about ``regions``; ``local`` holds their geometric answers (fallback)."""
        from napari_behaviorvlm.vlm import VLMAnswer, load_prompt

        self.last_calls = 0
        prompt = load_prompt(PROMPT)
        requests, meta = [], []
        image = ctx.image() if ctx.image is not None else None
        for est, loc in zip(regions, local):
            if image is None or not np.isfinite(est.center).all():
                continue
            h, w = image.shape[:2]
            box = _crop_box(est.center, est.radius, (w, h))
            x0, y0, x1, y1 = box
            xy = ctx.candidates.xy
            inside = np.flatnonzero((xy[:, 0] >= x0) & (xy[:, 0] < x1) & (xy[:, 1] >= y0) & (xy[:, 1] < y1))
            names = [ctx.skeleton.keypoints[k] for k in est.keypoints]
            region = self._region_label(ctx, est)
            numbers = list(range(len(inside)))
            values = {"frame": ctx.frame, "camera": ctx.camera_name, "region": region,
                      "keypoints": ", ".join(names),
                      "candidates": _format_candidates(xy[inside], numbers)}
            examples = self._examples(ctx, est, prompt, names, region)
            n_cand = len(inside)
            requests.append(prompt.request(
                values, images=[draw_candidates(image, box, xy[inside], numbers)],
                examples=examples,
                validate=lambda data, names=names, n=n_cand: validate_assignment(data, names, n),
                tag=(ctx.frame, ctx.camera, est.individual, est.region)))
            meta.append((len(meta), est, loc, inside, names))
        if not requests:
            return local
        results = self.client.ask_many(requests)
        out = list(local)
        position = {id(loc): i for i, loc in enumerate(local)}
        for (_, est, loc, inside, names), result in zip(meta, results):
            i = position[id(loc)]
            if isinstance(result, VLMAnswer):
                self.last_calls += int(result.calls)
                out[i] = self._to_answer(est, loc, inside, names, result.value)
            else:
                self.last_calls += 1
                out[i] = attrs.evolve(loc, confidence=np.zeros(len(names)),
                                      flags=np.full(len(names), _LOW, np.uint16), source="vlm-failed")
        return out

    def _region_label(self, ctx: ViewContext, est: RegionEstimate) -> str:
        name = est.region if self.use_regions else "whole animal"
        if ctx.n_individuals > 1:
            name = f"{name} of {ctx.individual_names[est.individual]}"
        return name

    def _examples(self, ctx: ViewContext, est: RegionEstimate, prompt, names, region):
        from napari_behaviorvlm.vlm import FewShotExample

        if ctx.example_image is None:
            return []
        out = []
        for ex in ctx.examples[: self.max_examples]:
            pts = ex.points2d[est.individual, est.keypoints]
            ok = np.isfinite(pts).all(axis=1)
            if not ok.any():
                continue
            centre = pts[ok].mean(axis=0)
            img = ctx.example_image(ex.frame)
            h, w = img.shape[:2]
            ex_box = _crop_box(centre, est.radius, (w, h))
            order = np.argsort(pts[ok][:, 0], kind="stable")  # numbered left to right
            shown = pts[ok][order]
            numbers = list(range(len(shown)))
            kp_names = [n for n, good in zip(names, ok) if good]
            answer_of = {kp_names[o]: n for n, o in zip(numbers, order)}
            user = prompt.render(frame=ex.frame, camera=ctx.camera_name, region=region,
                                 keypoints=", ".join(names),
                                 candidates=_format_candidates(shown, numbers))[1]
            answer = {"assignments": [{"keypoint": n, "candidate": answer_of.get(n),
                                       "confidence": 1.0} for n in names]}
            out.append(FewShotExample(user=user, answer=answer,
                                      images=[draw_candidates(img, ex_box, shown, numbers)]))
        return out

    def _to_answer(self, est: RegionEstimate, loc: RegionAnswer, inside: np.ndarray,
                   names: list[str], value: dict) -> RegionAnswer:
        choice = np.full(len(names), -1)
        conf = np.zeros(len(names))
        cost = loc.cost.copy()
        none_cost = loc.none_cost.copy()
        for i, name in enumerate(names):
            cand, c = value[name]
            conf[i] = c
            if cand is not None:
                choice[i] = int(inside[cand])
                cost[i, choice[i]] = 0.0
            else:
                none_cost[i] = 0.0
        flags = np.where(conf < 0.5, _LOW, 0).astype(np.uint16)
        return RegionAnswer(est.individual, est.region, list(est.keypoints), cost, none_cost,
                            choice, conf, flags, "vlm")



@attrs.define(eq=False)
class HybridReasoner:
    """Local first; the model only where the local answer turned out doubtful.

    Stages 1-3 of the first pass are the local reasoner's (:meth:`locate_regions`,
    :meth:`assign_regions`); the pipeline then runs stage 4 and hands back, per view, the
    keypoints stage 4 flagged (a small stage-3 margin without a third view confirming it is one
    of the flag rules, AMBIGUOUS). :meth:`second_opinion` asks the model about the regions
    holding such a keypoint (nothing else), and stages 3-4 run again.

    Attributes:
        local: The local reasoner (decides the clear cases).
        vlm: The VLM reasoner (asked about the doubtful regions).
    """

    local: LocalReasoner
    vlm: VLMReasoner
    use_regions: bool = True
    last_calls: int = 0
    needs_examples: bool = True

    def usage(self) -> dict:
        return self.vlm.usage()

    def locate_regions(self, ctx: ViewContext) -> list[RegionEstimate]:
        self.last_calls = 0
        return self.local.locate_regions(ctx)

    def assign_regions(self, ctx: ViewContext, regions: list[RegionEstimate]) -> list[RegionAnswer]:
        self.last_calls = 0
        return self.local.assign_regions(ctx, regions)

    def second_opinion(self, ctx: ViewContext, regions: list[RegionEstimate],
                       answers: list[RegionAnswer], doubtful: np.ndarray) -> list[RegionAnswer] | None:
        """Ask the model about the regions holding a ``doubtful`` ``(M, K)`` keypoint of this
        view; returns the updated answers, or None when nothing was asked."""
        ask = [i for i, est in enumerate(regions) if doubtful[est.individual, est.keypoints].any()]
        self.last_calls = 0
        if not ask:
            return None
        asked = self.vlm.ask(ctx, [regions[i] for i in ask], [answers[i] for i in ask])
        self.last_calls = self.vlm.last_calls
        out = list(answers)
        for i, a in zip(ask, asked):
            out[i] = a
        return out
