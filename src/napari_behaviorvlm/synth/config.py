"""Configuration of the synthetic session simulator, with difficulty presets."""

from __future__ import annotations

from typing import Any

import attrs

__all__ = ["DIFFICULTIES", "SynthConfig"]


def _positive(instance, attribute, value) -> None:
    if not value > 0:
        raise ValueError(f"SynthConfig.{attribute.name} must be positive, got {value!r}")


def _non_negative(instance, attribute, value) -> None:
    if not value >= 0:
        raise ValueError(f"SynthConfig.{attribute.name} must be >= 0, got {value!r}")


def _fraction(instance, attribute, value) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"SynthConfig.{attribute.name} must be in [0, 1), got {value!r}")


def _brightness(instance, attribute, value) -> None:
    lo, hi = value
    if not 0.0 < lo <= hi:
        raise ValueError(f"SynthConfig.brightness_range must satisfy 0 < low <= high, got {value!r}")


def _arena(instance, attribute, value) -> None:
    if not value >= 300.0:
        raise ValueError(f"SynthConfig.arena_size must be >= 300 mm (room for two mice with "
                         f"tails), got {value!r}")


def _mice(instance, attribute, value) -> None:
    if value not in (1, 2):
        raise ValueError(f"SynthConfig.n_mice must be 1 or 2, got {value!r}")


def _size(instance, attribute, value) -> None:
    if value < 16 or value % 2:
        raise ValueError(
            f"SynthConfig.{attribute.name} must be an even number of pixels >= 16 (H.264 with "
            f"yuv420p needs even sizes), got {value!r}"
        )


#: Knob values per difficulty preset; "default" is the documented default difficulty.
DIFFICULTIES: dict[str, dict[str, Any]] = {
    "easy": {
        "noise_sigma": 1.5, "reflection_rate": 0.0, "static_reflections": 0, "eye_shine": 0.0,
        "hot_pixels": 0, "dropout_rate": 0.0, "brightness_range": (0.8, 1.0), "crf": 20,
    },
    "default": {
        "noise_sigma": 3.0, "reflection_rate": 0.6, "static_reflections": 2, "eye_shine": 0.35,
        "hot_pixels": 12, "dropout_rate": 0.04, "brightness_range": (0.35, 1.0), "crf": 23,
    },
    "hard": {
        "noise_sigma": 6.0, "reflection_rate": 1.5, "static_reflections": 4, "eye_shine": 0.6,
        "hot_pixels": 40, "dropout_rate": 0.10, "brightness_range": (0.2, 1.0), "crf": 26,
    },
}


@attrs.define(frozen=True)
class SynthConfig:
    """Everything that defines a synthetic session; the same config always gives the same session.

    Attributes:
        n_cameras: Cameras on a ring around the arena (named ``cam0`` ...).
        n_frames: Session length in frames.
        n_mice: 1 or 2 (two mice add chase and sniff and mutual occlusion).
        seed: Random seed; every array and every rendered pixel is a function of the config.
        width, height: Image size in px (even numbers).
        fps: Frames per second.
        difficulty: Name of the preset the knobs below came from (informational).
        arena_size: Side of the square arena floor, mm (centred on the world origin; >= 300).
        noise_sigma: Gaussian sensor noise, grey levels (0..255 scale).
        reflection_rate: Mean number of transient spurious reflections per camera and frame
            (QD-like glints on fur, whiskers and the floor near the mice).
        static_reflections: Fixed specular spots per camera (flickering lamp reflections).
        eye_shine: Brightness of the eyes' infrared reflection, as a fraction of ``dot_peak``
            (eyes sit just in front of the ears: a realistic distractor). 0 disables.
        hot_pixels: Stuck bright single pixels per camera.
        dropout_rate: Fraction of (camera, frame, dot) observations where a visible dot is not
            seen (QD blinking, too dim at that angle); misses come in runs of ``dropout_run``
            frames on average.
        dropout_run: Mean length of a run of misses, frames.
        brightness_range: Per-dot QD brightness (low, high) as fractions of ``dot_peak``; each
            dot also flickers and dims when seen edge-on.
        dot_peak: Peak grey level of a dot of brightness 1 (before noise; sums clip at 255).
        dot_radius: Physical radius of a QD glow, mm; the blob's Gaussian sigma in px is
            ``dot_radius * f / depth`` (at least ``min_dot_sigma``).
        min_dot_sigma: Smallest blob sigma, px.
        occlusion: When False, dots hidden behind a body still count as visible (and are drawn).
        exposure: Exposure time as a fraction of the frame interval: a moving dot's glow is
            smeared over the distance it travels meanwhile (0 = no motion blur).
        min_bout_s, max_bout_s: Range of behavior bout durations, s.
        gop: Keyframe interval of the H.264 videos, frames (fixed, no scene-cut keyframes).
        bframes: Maximum consecutive B-frames.
        crf: x264 constant rate factor (lower = better quality, bigger files).
        encoder_preset: x264 speed preset ("veryfast" keeps a 6 x 500-frame session well under a
            minute; "medium" makes ~10% smaller files, 3x slower).
    """

    n_cameras: int = attrs.field(default=6, converter=int, validator=_positive)
    n_frames: int = attrs.field(default=500, converter=int, validator=_positive)
    n_mice: int = attrs.field(default=1, converter=int, validator=_mice)
    seed: int = attrs.field(default=0, converter=int)
    width: int = attrs.field(default=640, converter=int, validator=_size)
    height: int = attrs.field(default=480, converter=int, validator=_size)
    fps: float = attrs.field(default=30.0, converter=float, validator=_positive)
    difficulty: str = "default"
    arena_size: float = attrs.field(default=400.0, converter=float, validator=_arena)
    noise_sigma: float = attrs.field(default=3.0, converter=float, validator=_non_negative)
    reflection_rate: float = attrs.field(default=0.6, converter=float, validator=_non_negative)
    static_reflections: int = attrs.field(default=2, converter=int, validator=_non_negative)
    eye_shine: float = attrs.field(default=0.35, converter=float, validator=_non_negative)
    hot_pixels: int = attrs.field(default=12, converter=int, validator=_non_negative)
    dropout_rate: float = attrs.field(default=0.04, converter=float, validator=_fraction)
    dropout_run: float = attrs.field(default=4.0, converter=float, validator=_positive)
    brightness_range: tuple[float, float] = attrs.field(
        default=(0.35, 1.0), converter=lambda v: (float(v[0]), float(v[1])), validator=_brightness
    )
    dot_peak: float = attrs.field(default=230.0, converter=float, validator=_positive)
    dot_radius: float = attrs.field(default=1.6, converter=float, validator=_positive)
    min_dot_sigma: float = attrs.field(default=0.8, converter=float, validator=_positive)
    occlusion: bool = True
    exposure: float = attrs.field(default=0.3, converter=float, validator=_fraction)
    min_bout_s: float = attrs.field(default=1.0, converter=float, validator=_positive)
    max_bout_s: float = attrs.field(default=5.0, converter=float, validator=_positive)
    gop: int = attrs.field(default=30, converter=int, validator=_positive)
    bframes: int = attrs.field(default=2, converter=int, validator=_non_negative)
    crf: int = attrs.field(default=23, converter=int, validator=_non_negative)
    encoder_preset: str = "veryfast"

    def __attrs_post_init__(self) -> None:
        if self.difficulty not in DIFFICULTIES and self.difficulty != "custom":
            raise ValueError(
                f"unknown difficulty {self.difficulty!r}; choose one of {sorted(DIFFICULTIES)}"
            )
        if self.max_bout_s < self.min_bout_s:
            raise ValueError("SynthConfig.max_bout_s must be >= min_bout_s")

    @classmethod
    def preset(cls, difficulty: str = "default", **overrides: Any) -> SynthConfig:
        """A config with the knobs of ``difficulty`` ("easy", "default", "hard"), then
        ``overrides`` (any field) on top."""
        if difficulty not in DIFFICULTIES:
            raise ValueError(f"unknown difficulty {difficulty!r}; choose one of {sorted(DIFFICULTIES)}")
        return cls(**{"difficulty": difficulty, **DIFFICULTIES[difficulty], **overrides})

    def to_dict(self) -> dict[str, Any]:
        """Plain data (TOML/JSON friendly)."""
        data = attrs.asdict(self)
        data["brightness_range"] = list(self.brightness_range)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SynthConfig:
        names = {f.name for f in attrs.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown synthetic-session settings: {unknown}")
        return cls(**data)
