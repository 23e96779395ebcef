"""Rendering of synthetic near-infrared (NIR) camera images.

Each image (grayscale, ``uint8 (H, W)``) is built from:

1. a static background per camera: dark surroundings, the arena floor (ray-cast onto
   ``z = 0`` through the exact, distorted camera model) with uneven illumination, a brighter
   rim, vignetting;
2. tails (thick polylines) and body silhouettes: every body ellipsoid is ray-cast per pixel in
   its bounding box with a depth buffer and Lambertian shading (light from the camera side);
3. QD glows: a Gaussian blob at each *visible* dot's exact projection (sigma from the glow's
   physical radius and depth, peak from the dot's brightness in that view and frame), smeared
   along the dot's image motion during the exposure (symmetric about the frame time);
4. distractors: eye shine, fixed specular spots, transient reflections near the mice, hot
   pixels;
5. Gaussian sensor noise, then clipping to 0..255 and rounding.

Everything is deterministic for a given session config, camera and frame.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["Renderer"]

BODY_LEVELS = (72.0, 60.0)  # grey level of each mouse's fur at normal incidence
BACKGROUND_LEVEL = 12.0
FLOOR_LEVEL = 34.0
RIM_LEVEL = 22.0  # added on the arena's edge
_NOISE_BANK = 3
_NOISE_PAD = 32


class Renderer:
    """Renders frames of a :class:`~napari_behaviorvlm.synth.simulate.SyntheticSession`.

    Per-camera pixel rays and backgrounds are computed on first use and cached.
    """

    def __init__(self, sim) -> None:
        self.sim = sim
        cfg = sim.config
        self.width, self.height = cfg.width, cfg.height
        self._cams: dict[int, dict] = {}
        rng = np.random.default_rng([cfg.seed, 9001])
        shape = (_NOISE_BANK, self.height + _NOISE_PAD, self.width + _NOISE_PAD)
        self._noise = rng.standard_normal(shape, dtype=np.float32)

    # ------------------------------------------------------------------ per-camera cache
    def _camera(self, c: int) -> dict:
        if c not in self._cams:
            self._cams[c] = self._prepare_camera(c)
        return self._cams[c]

    def _prepare_camera(self, c: int) -> dict:
        cfg = self.sim.config
        cam = self.sim.calibration[c]
        h, w = self.height, self.width
        ys, xs = np.mgrid[0:h, 0:w]
        pix = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float64)
        norm = cam.undistort(pix)
        dirs_cam = np.concatenate([norm, np.ones((norm.shape[0], 1))], axis=1)
        rays = (dirs_cam @ cam.rotation).reshape(h, w, 3)  # world directions, camera z = 1
        center = cam.center
        rng = np.random.default_rng([cfg.seed, 9002, c])

        # Background: floor under uneven light, rim, dark surroundings, vignetting.
        dz = rays[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(dz < -1e-9, -center[2] / dz, np.inf)
        fx = center[0] + t * rays[..., 0]
        fy = center[1] + t * rays[..., 1]
        half = cfg.arena_size / 2.0
        edge = np.maximum(np.abs(fx), np.abs(fy))
        r2 = (fx**2 + fy**2) / half**2
        phases = rng.uniform(0, 2 * math.pi, 4)
        texture = (np.sin(fx / 37.0 + phases[0]) * np.sin(fy / 53.0 + phases[1])
                   + 0.5 * np.sin((fx + fy) / 19.0 + phases[2]))
        floor = FLOOR_LEVEL * (1.0 - 0.35 * np.clip(r2, 0, 2)) + 1.5 * texture
        floor += RIM_LEVEL * np.exp(-(((edge - half) / 3.0) ** 2))
        outside = BACKGROUND_LEVEL * (0.6 + 0.4 * ys / h + 0.1 * math.sin(phases[3]))
        with np.errstate(invalid="ignore"):
            background = np.where(np.isfinite(t) & (edge <= half + 6.0), floor, outside)
        k = cam.matrix
        rn2 = ((xs - k[0, 2]) ** 2 + (ys - k[1, 2]) ** 2) / (0.25 * (w**2 + h**2))
        background = (background * (1.0 - 0.3 * rn2)).astype(np.float32)

        # Fixed distractors: hot pixels and specular spots near the arena rim.
        hot = (rng.integers(0, h, cfg.hot_pixels), rng.integers(0, w, cfg.hot_pixels),
               rng.uniform(60.0, 200.0, cfg.hot_pixels).astype(np.float32))
        n_spec = cfg.static_reflections
        angle = rng.uniform(0, 2 * math.pi, n_spec)
        rim_pts = np.stack([np.clip(half * 1.1 * np.cos(angle), -half, half),
                            np.clip(half * 1.1 * np.sin(angle), -half, half),
                            rng.uniform(0.0, 5.0, n_spec)], axis=-1)
        spec_xy = cam.project(rim_pts).reshape(-1, 2)
        spec = {
            "xy": spec_xy,
            "sigma": rng.uniform(1.0, 2.2, n_spec),
            "amp": rng.uniform(0.3, 0.9, n_spec) * cfg.dot_peak,
        }
        return {"index": c, "rays": rays.astype(np.float32), "center": center, "background": background,
                "hot": hot, "spec": spec, "focal": float(k[0, 0])}

    # ------------------------------------------------------------------ frames
    def render(self, c: int, f: int, *, noise: bool = True, dots: bool = True,
               distractors: bool = True) -> np.ndarray:
        """Image ``uint8 (H, W)`` of camera index ``c`` at frame ``f``.

        ``noise``, ``dots`` and ``distractors`` (eye shine, reflections, hot pixels) can be
        switched off, e.g. to measure rendered dot centroids exactly.
        """
        sim, cfg = self.sim, self.sim.config
        if not 0 <= f < cfg.n_frames:
            raise IndexError(f"frame {f} is outside 0..{cfg.n_frames - 1}")
        if not 0 <= c < cfg.n_cameras:
            raise IndexError(f"camera index {c} is outside 0..{cfg.n_cameras - 1}")
        info = self._camera(c)
        cam = sim.calibration[c]
        img = info["background"].copy()
        rng = np.random.default_rng([cfg.seed, 9003, c, f])

        self._draw_tails(img, cam, info, f)
        self._draw_bodies(img, info, f)
        if dots:
            self._draw_dots(img, cam, info, c, f)
        if distractors:
            self._draw_distractors(img, cam, info, f, rng)
        if noise and cfg.noise_sigma > 0:
            k = int(rng.integers(_NOISE_BANK))
            oy, ox = (int(v) for v in rng.integers(0, _NOISE_PAD, 2))
            img += cfg.noise_sigma * self._noise[k, oy:oy + self.height, ox:ox + self.width]
        np.clip(img, 0.0, 255.0, out=img)
        return (img + 0.5).astype(np.uint8)

    def _draw_dots(self, img: np.ndarray, cam, info: dict, c: int, f: int) -> None:
        """QD glows of the visible dots, smeared along their image motion during the exposure
        (``config.exposure`` of the frame interval, centred on the frame time)."""
        sim, cfg = self.sim, self.sim.config
        vis = sim.visible[c, f]
        if not vis.any():
            return
        xy = sim.points2d[c, f][vis]
        depth = cam.world_to_camera(sim.points3d[f][vis])[:, 2]
        sigma = np.maximum(cfg.min_dot_sigma, cfg.dot_radius * info["focal"] / depth)
        amp = sim.brightness[c, f][vis]
        lo, hi = max(f - 1, 0), min(f + 1, cfg.n_frames - 1)
        if cfg.exposure > 0 and hi > lo:
            velocity = (sim.points2d[c, hi][vis] - sim.points2d[c, lo][vis]) / (hi - lo)
            smear = np.nan_to_num(velocity) * cfg.exposure  # px travelled during the exposure
            n_sub = np.clip(np.ceil(np.linalg.norm(smear, axis=1) / (0.5 * sigma)), 1, 8).astype(int)
            for n in np.unique(n_sub):
                sel = n_sub == n
                steps = np.linspace(-0.5, 0.5, n) if n > 1 else np.zeros(1)
                pts = xy[sel, None, :] + steps[None, :, None] * smear[sel, None, :]
                _add_blobs(img, pts.reshape(-1, 2), np.repeat(sigma[sel], n),
                           np.repeat(amp[sel] / n, n))
        else:
            _add_blobs(img, xy, sigma, amp)

    def _draw_tails(self, img: np.ndarray, cam, info: dict, f: int) -> None:
        tails = self.sim.tail3d[f]  # (M, T, 3)
        xy = cam.project(tails)
        depth = cam.world_to_camera(tails)[..., 2]
        for m in range(tails.shape[0]):
            ok = np.isfinite(xy[m]).all(axis=1)
            if ok.sum() < 2:
                continue
            thick = max(1, int(round(3.0 * info["focal"] / float(np.median(depth[m][ok])))))
            pts = np.round(xy[m][ok] * 16).astype(np.int32)
            cv2.polylines(img, [pts], False, BODY_LEVELS[m % 2] * 0.7, thick, cv2.LINE_8, 4)

    def _draw_bodies(self, img: np.ndarray, info: dict, f: int) -> None:
        sim = self.sim
        centers = sim.ellipsoid_centers[f].reshape(-1, 3)
        rotations = sim.ellipsoid_rotations[f].reshape(-1, 3, 3)
        axes = sim.ellipsoid_axes[f].reshape(-1, 3)
        n_parts = sim.ellipsoid_centers.shape[2]
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        corners = centers[:, None, :] + np.einsum("eij,ekj->eki", rotations,
                                                  signs[None, :, :] * axes[:, None, :])
        cam = sim.calibration[info["index"]]
        uv = cam.project(corners)  # (E, 8, 2)
        h, w = self.height, self.width
        depth = np.full((h, w), np.inf, dtype=np.float32)
        rays, origin = info["rays"], info["center"]
        for e in range(centers.shape[0]):
            box = uv[e]
            if not np.isfinite(box).all():
                continue
            x0, y0 = (int(max(0, math.floor(v) - 2)) for v in box.min(axis=0))
            x1 = int(min(w, math.ceil(box[:, 0].max()) + 3))
            y1 = int(min(h, math.ceil(box[:, 1].max()) + 3))
            if x1 <= x0 or y1 <= y0:
                continue
            r, a = rotations[e], axes[e]
            o = ((origin - centers[e]) @ r / a).astype(np.float32)
            d = rays[y0:y1, x0:x1] @ (r / a[None, :]).astype(np.float32)
            qa = (d * d).sum(-1)
            qb = d @ o
            qc = float(o @ o) - 1.0
            disc = qb * qb - qa * qc
            hit = disc > 0
            if not hit.any():
                continue
            t = (-qb - np.sqrt(np.maximum(disc, 0.0))) / qa
            sub = depth[y0:y1, x0:x1]
            hit &= (t > 0) & (t < sub)
            if not hit.any():
                continue
            th = t[hit]
            unit = o[None, :] + th[:, None] * d[hit]  # point on the unit sphere = normal there
            normal = (unit / a[None, :]) @ r.T
            view = rays[y0:y1, x0:x1][hit]
            lambert = np.abs((normal * view).sum(-1)) / (
                np.linalg.norm(normal, axis=-1) * np.linalg.norm(view, axis=-1) + 1e-12)
            sub[hit] = th
            img[y0:y1, x0:x1][hit] = BODY_LEVELS[(e // n_parts) % 2] * (0.35 + 0.65 * lambert)

    def _draw_distractors(self, img: np.ndarray, cam, info: dict, f: int,
                          rng: np.random.Generator) -> None:
        sim, cfg = self.sim, self.sim.config
        # Eye shine: the eyes reflect the infrared light when they face the camera.
        if cfg.eye_shine > 0:
            vis = sim.eyes_visible[info["index"], f]
            if vis.any():
                eyes = sim.eyes3d[f][vis]
                xy = cam.project(eyes)
                depth = cam.world_to_camera(eyes)[:, 2]
                amp = cfg.eye_shine * cfg.dot_peak * rng.uniform(0.7, 1.0, len(xy))
                sigma = np.maximum(cfg.min_dot_sigma, 0.6 * cfg.dot_radius * info["focal"] / depth)
                _add_blobs(img, xy, sigma, amp)
        spec = info["spec"]
        if len(spec["xy"]):
            flicker = rng.uniform(0.6, 1.0, len(spec["xy"]))
            _add_blobs(img, spec["xy"], spec["sigma"], spec["amp"] * flicker)
        n = int(rng.poisson(cfg.reflection_rate)) if cfg.reflection_rate > 0 else 0
        if n:
            m = rng.integers(0, sim.points3d.shape[1], n)
            part = rng.integers(0, sim.ellipsoid_centers.shape[2], n)
            centers = sim.ellipsoid_centers[f, m, part]
            spread = sim.ellipsoid_axes[f, m, part] * 1.4
            pts = centers + rng.uniform(-1.0, 1.0, (n, 3)) * spread
            pts[:, 2] = np.maximum(pts[:, 2], 0.5)
            xy = cam.project(pts)
            _add_blobs(img, xy, rng.uniform(0.8, 2.5, n), rng.uniform(0.25, 1.0, n) * cfg.dot_peak)
        rows, cols, values = info["hot"]
        img[rows, cols] += values


def _add_blobs(img: np.ndarray, xy: np.ndarray, sigma: np.ndarray, amp: np.ndarray) -> None:
    """Add Gaussian blobs in place: centres ``xy (N, 2)`` px, ``sigma (N,)`` px, peaks ``amp (N,)``."""
    h, w = img.shape
    for (x, y), s, a in zip(np.asarray(xy, dtype=np.float64), sigma, amp):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        r = int(math.ceil(3.5 * s))
        x0, x1 = max(0, int(x) - r), min(w, int(x) + r + 2)
        y0, y1 = max(0, int(y) - r), min(h, int(y) + r + 2)
        if x1 <= x0 or y1 <= y0:
            continue
        gx = np.exp(-((np.arange(x0, x1) - x) ** 2) / (2.0 * s * s)).astype(np.float32)
        gy = np.exp(-((np.arange(y0, y1) - y) ** 2) / (2.0 * s * s)).astype(np.float32)
        img[y0:y1, x0:x1] += np.float32(a) * gy[:, None] * gx[None, :]
