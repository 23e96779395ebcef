"""Behavior schedule and kinematics of the synthetic mice.

One pass over the frames drives every mouse with a small state machine: solitary bouts of
walk, run, rear, groom and rest (1-5 s each), and with two mice social episodes: *chase* (one
mouse runs, the other follows its tail) and *sniff* (one mouse walks up to the other, which
rests or grooms, and holds its nose at the other's head or rear). Labels follow what the body
does: a sniffer is labeled ``walk`` (or ``run``) while approaching and ``sniff`` once its nose
is within :data:`SNIFF_DISTANCE` mm of the sniffed point (:data:`SNIFF_OFFSET` mm beyond the
other's nose tip or rear end). Speeds and postures change through
first-order smoothing, so trajectories are smooth; mice steer away from the arena walls and
are pushed apart so their bodies never interpenetrate.
"""

from __future__ import annotations

import math

import numpy as np

from napari_behaviorvlm.synth.body import PART_AXES, Posture, body_ellipsoids, sphere_cover
from napari_behaviorvlm.synth.config import SynthConfig

__all__ = [
    "BEHAVIORS", "SNIFF_DISTANCE", "SNIFF_OFFSET", "SOCIAL_BEHAVIORS", "SOLO_BEHAVIORS",
    "simulate_motion",
]

SOLO_BEHAVIORS = ("walk", "run", "rear", "groom", "rest")
SOCIAL_BEHAVIORS = ("chase", "sniff")
BEHAVIORS = SOLO_BEHAVIORS + SOCIAL_BEHAVIORS
SNIFF_DISTANCE = 15.0  # mm between the sniffer's nose and the sniffed point
BODY_GAP = 1.0  # mm kept between the bodies of two mice (beyond the sphere cover)
SNIFF_OFFSET = 8.0  # mm outside the other's body where the sniffer aims its nose
NOSE_FORWARD = 67.0  # mm from the rear-body centre to the nose at pitch 0 (scale 1)

_SOLO_WEIGHTS = {"walk": 3.0, "run": 1.5, "rear": 1.5, "groom": 1.5, "rest": 1.0}
_POSTURE_FIELDS = ("x", "y", "heading", "pitch", "head_yaw", "head_pitch", "crouch", "groom",
                   "gait_phase", "stride", "groom_phase", "tail_phase", "tail_sway")


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


class _BoutSource:
    """Solitary bouts of one mouse: first every behavior once (random order), then random
    choices that avoid repeating the previous one.

    A bout is never shorter than ``min_s`` unless its episode ends first: :meth:`restart` drops
    what was left of a bout that a social episode interrupted (no remnant of a few frames after
    it), and :meth:`next` does not start a bout that its episode has no room for (the current
    one goes on instead)."""

    def __init__(self, rng: np.random.Generator, fps: float, min_s: float, max_s: float) -> None:
        self.rng, self.fps, self.min_s, self.max_s = rng, fps, min_s, max_s
        self.queue = list(rng.permutation(SOLO_BEHAVIORS))
        self.label = ""
        self.left = 0

    def duration(self, lo: float | None = None, hi: float | None = None) -> int:
        lo = self.min_s if lo is None else lo
        hi = self.max_s if hi is None else hi
        return max(1, int(round(self.rng.uniform(lo, hi) * self.fps)))

    def restart(self) -> None:
        """Start a fresh bout at the next frame (a new solitary episode begins)."""
        self.left = 0

    def next(self, room: int | None = None) -> str:
        """The label of the next frame; ``room``: frames left in the current episode."""
        if self.left <= 0 and self.label and room is not None and room < self.min_s * self.fps:
            return self.label
        if self.left <= 0:
            if self.queue:
                self.label = str(self.queue.pop(0))
            else:
                options = [b for b in SOLO_BEHAVIORS if b != self.label]
                weights = np.array([_SOLO_WEIGHTS[b] for b in options])
                self.label = str(self.rng.choice(options, p=weights / weights.sum()))
            self.left = self.duration()
        self.left -= 1
        return self.label


class _Mouse:
    """Kinematic state of one mouse (scalars updated once per frame)."""

    def __init__(self, rng: np.random.Generator, scale: float, x: float, y: float) -> None:
        self.rng = rng
        self.scale = scale
        self.state = {name: 0.0 for name in _POSTURE_FIELDS}
        self.state.update(x=x, y=y, heading=rng.uniform(-math.pi, math.pi),
                          tail_phase=rng.uniform(0, 2 * math.pi), tail_sway=0.3)
        self.v = 0.0
        self.omega = 0.0
        self.params: dict[str, float] = {}
        self.last_label = ""
        self.sniffing = False
        self.sniff_engaged = False  # the nose reached the other during this sniff bout
        self.approach_label = "walk"
        offsets, radii = zip(*(sphere_cover(np.array(PART_AXES[part]) * scale)
                               for part in ("rear", "front", "head")))
        self.sphere_offsets = offsets
        self.sphere_radii = radii

    def posture(self) -> Posture:
        return Posture.stack([self.state])

    def nose(self, ahead: float = 0.0) -> np.ndarray:
        """Floor position of the nose tip (``ahead`` mm further forward)."""
        s = self.state
        reach = NOSE_FORWARD * self.scale * math.cos(s["pitch"]) + ahead
        return np.array([s["x"] + reach * math.cos(s["heading"]),
                         s["y"] + reach * math.sin(s["heading"])])

    def rear_point(self, behind: float = 0.0) -> np.ndarray:
        """Floor position of the rear end of the body (``behind`` mm further back)."""
        s = self.state
        back = PART_AXES["rear"][0] * self.scale + behind
        return np.array([s["x"] - back * math.cos(s["heading"]),
                         s["y"] - back * math.sin(s["heading"])])

    def spheres(self) -> tuple[np.ndarray, np.ndarray]:
        """Centres ``(S, 3)`` and radii ``(S,)`` of spheres that together contain the body."""
        centers, rotations, _ = body_ellipsoids(self.posture(), self.scale)
        out_c, out_r = [], []
        for e in range(3):
            axis = rotations[0, e, :, 0]
            out_c.append(centers[0, e] + np.outer(self.sphere_offsets[e], axis))
            out_r.append(self.sphere_radii[e])
        return np.concatenate(out_c), np.concatenate(out_r)


def _bout_params(rng: np.random.Generator) -> dict[str, float]:
    return {
        "walk_speed": rng.uniform(60.0, 120.0),
        "run_speed": rng.uniform(220.0, 320.0),
        "rear_pitch": rng.uniform(0.85, 1.15),
        "rest_yaw": rng.uniform(-0.4, 0.4),
    }


def simulate_motion(config: SynthConfig, rng: np.random.Generator) -> dict:
    """Run the behavior state machine and kinematics for every frame.

    Returns:
        ``postures``: one :class:`Posture` (arrays ``(F,)``) per mouse; ``scales``: body scale per
        mouse; ``behavior``: object array ``(F, M)`` of labels from :data:`BEHAVIORS`;
        ``target``: int array ``(F, M)``, index of the other mouse in a chase/sniff, else -1.
    """
    n_f, n_m, fps = config.n_frames, config.n_mice, config.fps
    dt = 1.0 / fps
    half = config.arena_size / 2.0
    keep_in = half - 60.0
    hard_in = half - 35.0
    scales = [1.0, 1.07][:n_m]
    starts = _start_positions(rng, n_m, keep_in)
    mice = [_Mouse(rng, scales[i], *starts[i]) for i in range(n_m)]
    bouts = [_BoutSource(rng, fps, config.min_bout_s, config.max_bout_s) for _ in range(n_m)]
    behavior = np.empty((n_f, n_m), dtype=object)
    target = np.full((n_f, n_m), -1, dtype=np.int64)
    records: list[list[dict[str, float]]] = [[] for _ in range(n_m)]
    episodes = _EpisodeScheduler(rng, fps, bouts[0]) if n_m == 2 else None

    for f in range(n_f):
        # ------------------------------------------------------------------ decide intents
        if episodes is None:
            intents = [(bouts[0].next(), -1, None)]
        else:
            intents = episodes.step(mice, bouts)
        labels = []
        for i, (mouse, (label, tgt, goal)) in enumerate(zip(mice, intents)):
            labels.append(_drive(mouse, label, tgt, goal, mice, dt, keep_in, hard_in))
            target[f, i] = tgt if labels[-1] in SOCIAL_BEHAVIORS else -1
        if episodes is not None:
            episodes.observe(labels)
            _separate(mice, hard_in)
        behavior[f] = labels
        for i, mouse in enumerate(mice):
            records[i].append(dict(mouse.state))
    return {
        "postures": [Posture.stack(r) for r in records],
        "scales": scales,
        "behavior": behavior,
        "target": target,
    }


def _start_positions(rng: np.random.Generator, n_m: int, keep_in: float) -> list[tuple[float, float]]:
    for _ in range(1000):
        pts = rng.uniform(-keep_in * 0.8, keep_in * 0.8, size=(n_m, 2))
        if n_m == 1 or np.linalg.norm(pts[0] - pts[1]) > min(180.0, 1.2 * keep_in):
            return [tuple(p) for p in pts]
    raise RuntimeError("could not place the mice apart; the arena is too small")


class _EpisodeScheduler:
    """Alternates solitary episodes with chase and sniff episodes for two mice."""

    def __init__(self, rng: np.random.Generator, fps: float, timing: _BoutSource) -> None:
        self.rng, self.fps, self.timing = rng, fps, timing
        self.plan = ["solo", "chase", "solo", "sniff"]
        self.kind = ""
        self.left = 0
        self.actor = 0
        self.other_label = "rest"
        self.engaged = False
        self.approach_left = 0
        self.sniff_rear = True
        self.restart_solo = False

    def _next_episode(self) -> None:
        if self.plan:
            self.kind = self.plan.pop(0)
        else:
            self.kind = str(self.rng.choice(["solo", "chase", "sniff"], p=[0.6, 0.2, 0.2]))
        self.actor = int(self.rng.integers(2))
        self.engaged = False
        if self.kind == "solo":
            self.left = self.timing.duration(0.7 if not self.plan else 1.0, 3.0)
            self.restart_solo = True
        elif self.kind == "chase":
            self.left = self.timing.duration(2.0, 4.0)
        else:
            self.left = self.timing.duration(1.5, 3.0)  # counted once the nose is there
            self.approach_left = int(round(6.0 * self.fps))
            self.other_label = str(self.rng.choice(["rest", "groom"]))
            self.sniff_rear = bool(self.rng.integers(2))

    def step(self, mice: list[_Mouse], bouts: list[_BoutSource]) -> list[tuple[str, int, object]]:
        if self.left <= 0 or (self.kind == "sniff" and not self.engaged and self.approach_left <= 0):
            self._next_episode()
            for mouse in mice:
                mouse.sniffing = mouse.sniff_engaged = False
        a, b = self.actor, 1 - self.actor
        intents: list[tuple[str, int, object]] = [("", -1, None), ("", -1, None)]
        if self.kind == "solo":
            if self.restart_solo:
                for source in bouts:
                    source.restart()
                self.restart_solo = False
            self.left -= 1
            return [(bouts[i].next(room=self.left + 1), -1, None) for i in range(2)]
        if self.kind == "chase":
            self.left -= 1
            intents[a] = ("chase", b, mice[b].rear_point(6.0))
            intents[b] = ("run", -1, None)
            return intents
        goal = mice[b].rear_point(SNIFF_OFFSET) if self.sniff_rear else mice[b].nose(SNIFF_OFFSET)
        if self.engaged:
            self.left -= 1
        else:
            self.approach_left -= 1
        intents[a] = ("sniff", b, goal)
        intents[b] = (self.other_label, -1, None)
        return intents

    def observe(self, labels: list[str]) -> None:
        if self.kind == "sniff" and labels[self.actor] == "sniff":
            self.engaged = True


def _smooth(current: float, target: float, dt: float, tau: float) -> float:
    return current + (target - current) * (1.0 - math.exp(-dt / tau))


def _drive(mouse: _Mouse, label: str, tgt: int, goal, mice: list[_Mouse], dt: float,
           keep_in: float, hard_in: float) -> str:
    """Advance ``mouse`` by one frame towards what ``label`` asks; return the frame's label."""
    s, rng = mouse.state, mouse.rng
    if label != "sniff":
        mouse.sniffing = mouse.sniff_engaged = False
    if label != mouse.last_label:
        mouse.params = _bout_params(rng)
        mouse.last_label = label
    prm = mouse.params
    out_label = label
    pitch_t, crouch_t, groom_t, head_pitch_t, head_yaw_t = 0.0, 0.0, 0.0, -0.1, None
    v_t = 0.0
    steer_to = None
    wander = 0.0
    if label == "walk":
        v_t, wander, pitch_t = prm["walk_speed"], 1.2, 0.05
    elif label == "run":
        v_t, wander, head_pitch_t = prm["run_speed"], 0.8, -0.05
    elif label == "rear":
        pitch_t, head_pitch_t = prm["rear_pitch"], -0.35
    elif label == "groom":
        pitch_t, head_pitch_t, groom_t = 0.55, -0.9, 1.0
    elif label == "rest":
        crouch_t, head_pitch_t, head_yaw_t = 1.0, -0.15, prm["rest_yaw"]
    elif label == "chase":
        leader = mice[tgt]
        dist = float(np.linalg.norm(goal - np.array([s["x"], s["y"]])))
        v_t = float(np.clip(leader.v * 1.05 + 1.5 * (dist - 90.0), 80.0, 380.0))
        steer_to = goal
    elif label == "sniff":
        gap = float(np.linalg.norm(goal - mouse.nose()))
        # Engage within SNIFF_DISTANCE; once engaged, stay until the gap grows by half again.
        mouse.sniffing = gap <= SNIFF_DISTANCE * (1.5 if mouse.sniffing else 1.0)
        mouse.sniff_engaged |= mouse.sniffing
        if mouse.sniffing:
            v_t, head_pitch_t = 0.0, -0.25
            rel = goal - np.array([s["x"], s["y"]])
            head_yaw_t = float(np.clip(_wrap(math.atan2(rel[1], rel[0]) - s["heading"]), -0.6, 0.6))
        else:
            v_t = float(np.clip(2.0 * gap, 40.0, 160.0))
            steer_to = goal
            # A step back to the nose while sniffing is still sniffing; the approach is labeled
            # by its speed, with hysteresis so it does not flicker between walk and run.
            if mouse.v > 170.0:
                mouse.approach_label = "run"
            elif mouse.v < 140.0:
                mouse.approach_label = "walk"
            out_label = "sniff" if mouse.sniff_engaged else mouse.approach_label
    else:  # pragma: no cover - labels come from this module
        raise ValueError(f"unknown behavior {label!r}")

    # Speed and heading.
    mouse.v = _smooth(mouse.v, v_t, dt, 0.25)
    heading = s["heading"]
    if steer_to is not None:
        rel = np.asarray(steer_to) - np.array([s["x"], s["y"]])
        desired = math.atan2(rel[1], rel[0])
        heading += float(np.clip(6.0 * _wrap(desired - heading), -6.0, 6.0)) * dt
    elif mouse.v > 5.0:
        mouse.omega += -mouse.omega * dt / 0.5 + wander * math.sqrt(dt) * rng.normal() * 2.0
        heading += mouse.omega * dt
    look = 40.0 + 0.6 * mouse.v
    ahead = (s["x"] + look * math.cos(heading), s["y"] + look * math.sin(heading))
    if mouse.v > 5.0 and (abs(ahead[0]) > keep_in or abs(ahead[1]) > keep_in):
        desired = math.atan2(-s["y"], -s["x"])
        heading += float(np.clip(4.0 * _wrap(desired - heading), -5.0, 5.0)) * dt
        mouse.omega *= 0.5
    s["heading"] = _wrap(heading)
    s["x"] = float(np.clip(s["x"] + mouse.v * math.cos(s["heading"]) * dt, -hard_in, hard_in))
    s["y"] = float(np.clip(s["y"] + mouse.v * math.sin(s["heading"]) * dt, -hard_in, hard_in))

    # Posture.
    s["pitch"] = _smooth(s["pitch"], pitch_t, dt, 0.25)
    s["crouch"] = _smooth(s["crouch"], crouch_t, dt, 0.4)
    s["groom"] = _smooth(s["groom"], groom_t, dt, 0.3)
    s["head_pitch"] = _smooth(s["head_pitch"], head_pitch_t, dt, 0.2)
    if head_yaw_t is None:
        head_yaw_t = float(np.clip(s["head_yaw"] + rng.normal() * 0.08, -0.5, 0.5)) * 0.97
    s["head_yaw"] = _smooth(s["head_yaw"], head_yaw_t, dt, 0.2)
    moving = mouse.v > 5.0
    s["stride"] = _smooth(s["stride"], min(14.0, mouse.v / 20.0) if moving else 0.0, dt, 0.15)
    if moving:
        s["gait_phase"] = (s["gait_phase"] + 2.0 * math.pi * (1.5 + mouse.v / 40.0) * dt) % (2 * math.pi)
    s["groom_phase"] = (s["groom_phase"] + 2.0 * math.pi * 5.0 * dt) % (2 * math.pi)
    s["tail_phase"] = (s["tail_phase"] + 2.0 * math.pi * (0.4 + mouse.v / 150.0) * dt) % (2 * math.pi)
    s["tail_sway"] = _smooth(s["tail_sway"], 0.15 + 0.25 * min(1.0, mouse.v / 200.0), dt, 0.5)
    return out_label


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else np.zeros_like(v)


def _separate(mice: list[_Mouse], hard_in: float, iterations: int = 60) -> None:
    """Push two mice apart in the floor plane until their covering spheres keep ``BODY_GAP``.

    Each iteration moves the pair of spheres that overlap most; a crowded contact can take
    several (up to 7 seen), so the cap is generous: 6 left a mouse's head inside the other's
    body in a 900-frame session on one BLAS kernel."""
    a, b = mice
    for _ in range(iterations):
        if math.hypot(a.state["x"] - b.state["x"], a.state["y"] - b.state["y"]) > 260.0:
            return
        ca, ra = a.spheres()
        cb, rb = b.spheres()
        diff = ca[:, None, :] - cb[None, :, :]
        dist = np.linalg.norm(diff, axis=-1)
        overlap = ra[:, None] + rb[None, :] + BODY_GAP - dist
        i, j = np.unravel_index(np.argmax(overlap), overlap.shape)
        if overlap[i, j] <= 0.0:
            return
        direction = diff[i, j, :2]
        if np.linalg.norm(direction) < 1e-6:
            direction = np.array([a.state["x"] - b.state["x"], a.state["y"] - b.state["y"]])
        direction = _unit(direction)
        if not direction.any():
            direction = np.array([1.0, 0.0])
        # The faster mouse yields more; a resting mouse is barely moved.
        wa = (a.v + 10.0) / (a.v + b.v + 20.0)
        step = overlap[i, j] + 0.5
        for mouse, sign, w in ((a, 1.0, wa), (b, -1.0, 1.0 - wa)):
            for axis, key in enumerate(("x", "y")):
                moved = mouse.state[key] + sign * w * step * direction[axis]
                mouse.state[key] = float(np.clip(moved, -hard_in, hard_in))
