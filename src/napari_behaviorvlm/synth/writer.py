"""Write a synthetic session to disk (videos, calibration, ground truth, seeds) and read the
truth back.

Folder layout (see docs/synthetic.md for every column)::

    OUT_DIR/
      cam0.mp4 ... cam{C-1}.mp4   H.264, yuv420p, grayscale content, fixed GOP
      calibration.toml            anipose format, cameras cam0..cam{C-1}, mm
      session.toml                cameras, videos, fps, n_frames (video.session_io format)
      seeds.csv                   3 seed frames' labels (visible dots only), io.labels_csv format
      truth/ground_truth.npz      every truth array (exact), see load_truth
      truth/points3d.csv          frame,individual,keypoint,x,y,z (mm)
      truth/points2d.csv          frame,camera,individual,keypoint,x,y,visible,in_image,occluded,missed
      truth/behavior.csv          frame,time_s,individual,label,target
      truth/bouts.csv             start,end,subject,target,label,caption,source,score (inclusive)
      truth/config.toml           the SynthConfig that made the session

Only the ``.mp4`` files are at the top level, so the folder also loads as "a folder of camera
videos + calibration.toml".
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import numpy as np
import pandas as pd
import tomli_w

from napari_behaviorvlm.core.atomic import atomic_path, atomic_write_text, check_overwrite
from napari_behaviorvlm.core.pose import PoseTable, Source
from napari_behaviorvlm.core.session import CameraSource, Session
from napari_behaviorvlm.geometry.camera import save_calibration
from napari_behaviorvlm.io.labels_csv import write_labels_csv
from napari_behaviorvlm.synth.simulate import SyntheticSession, TruthViews

__all__ = ["SyntheticTruth", "choose_seed_frames", "load_truth", "seed_pose_table",
           "write_synthetic_session"]

TRUTH_DIR = "truth"
TRUTH_NPZ = "ground_truth.npz"


def choose_seed_frames(sim: SyntheticSession, n: int = 3) -> list[int]:
    """``n`` seed frames spread over the session (one per equal slice), each the frame nearest
    its slice's centre whose behavior (of mouse0) is not yet covered by an earlier seed, so the
    seeds show different postures when the session allows it. Ascending."""
    n_f = sim.n_frames
    n = max(1, min(n, n_f))
    labels = sim.behavior[:, 0]
    seen: set[str] = set()
    chosen: list[int] = []
    for i in range(n):
        lo, hi = i * n_f // n, max(i * n_f // n + 1, (i + 1) * n_f // n)
        centre = (lo + hi - 1) / 2.0
        frames = sorted(range(lo, hi), key=lambda f: (abs(f - centre), f))
        pick = next((f for f in frames if labels[f] not in seen), frames[0])
        seen.add(str(labels[pick]))
        chosen.append(int(pick))
    return sorted(chosen)


def seed_pose_table(sim: SyntheticSession, seed_frames: list[int], click_noise: float = 0.0,
                    rng: np.random.Generator | None = None) -> PoseTable:
    """A pose table holding seed labels (source SEED) at ``seed_frames``: the true 2D position
    of every *visible* dot, plus Gaussian click noise of ``click_noise`` px (sigma)."""
    table = PoseTable.empty(sim.camera_names, sim.n_frames, sim.individual_names, sim.keypoint_names)
    rng = np.random.default_rng([sim.config.seed, 4242]) if rng is None else rng
    for f in seed_frames:
        vis = sim.visible[:, f]
        xy = sim.points2d[:, f] + (rng.normal(0.0, click_noise, sim.points2d[:, f].shape)
                                   if click_noise > 0 else 0.0)
        for c, m, k in zip(*np.nonzero(vis)):
            table.set_label(int(c), int(f), int(m), int(k), xy[c, m, k], source=Source.SEED)
    return table


def write_synthetic_session(sim: SyntheticSession, out_dir: str | os.PathLike,
                            seed_frames: list[int] | None = None, overwrite: bool = False,
                            click_noise: float = 0.0, workers: int | None = None) -> dict[str, Path]:
    """Render and write the session to ``out_dir`` (layout in the module docstring).

    Args:
        sim: From :func:`~napari_behaviorvlm.synth.simulate.simulate`.
        out_dir: Session folder (created). An existing non-empty folder needs ``overwrite``.
        seed_frames: Frames whose visible dots go to ``seeds.csv``; default
            :func:`choose_seed_frames` (3 frames).
        overwrite: Replace the files of an earlier synthetic session in ``out_dir`` (videos of
            cameras it had but this one lacks are removed); other files are left alone.
        click_noise: Sigma (px) of Gaussian noise added to seed positions (a human's clicks).
        workers: Cameras encoded in parallel (default: up to 4, at most the CPU count).

    Returns:
        Paths by kind: ``cam0``.. (videos), ``calibration``, ``session``, ``seeds``,
        ``truth``, ``points3d``, ``points2d``, ``behavior``, ``bouts``, ``config``.

    Raises:
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is False.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another output path")
    if out.is_dir() and any(out.iterdir()):
        check_overwrite(out, overwrite)
        _remove_stale_videos(out, sim.camera_names)
    out.mkdir(parents=True, exist_ok=True)
    cfg = sim.config
    seed_frames = choose_seed_frames(sim) if seed_frames is None else [int(f) for f in seed_frames]
    bad = [f for f in seed_frames if not 0 <= f < cfg.n_frames]
    if bad:
        raise ValueError(f"seed frames {bad} are outside the session's frames 0..{cfg.n_frames - 1}")

    paths: dict[str, Path] = {}
    workers = workers or max(1, min(4, os.cpu_count() or 1, cfg.n_cameras))
    sim.renderer()  # shared by the encoding threads
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = {name: pool.submit(_write_camera, sim, c, out / f"{name}.mp4")
                for c, name in enumerate(sim.camera_names)}
        for name, job in jobs.items():
            paths[name] = job.result()

    paths["calibration"] = out / "calibration.toml"
    save_calibration(sim.calibration, paths["calibration"])
    paths["session"] = _write_session_file(sim, out, overwrite=True)
    paths["seeds"] = write_labels_csv(out / "seeds.csv", seed_pose_table(sim, seed_frames, click_noise),
                                      overwrite=True)
    paths.update(_write_truth(sim, out / TRUTH_DIR, seed_frames))
    return paths


def _write_camera(sim: SyntheticSession, c: int, path: Path) -> Path:
    from napari_behaviorvlm.video.writer import write_video

    cfg = sim.config
    frames = (sim.render(c, f) for f in range(cfg.n_frames))
    return write_video(path, frames, fps=cfg.fps, gop=cfg.gop, b_frames=cfg.bframes, crf=cfg.crf,
                       preset=cfg.encoder_preset, overwrite=True)


def _remove_stale_videos(out: Path, camera_names: list[str]) -> None:
    old = out / TRUTH_DIR / TRUTH_NPZ
    if not old.is_file():
        return
    with np.load(old, allow_pickle=False) as data:
        previous = [str(n) for n in data["camera_names"]]
    for name in previous:
        if name not in camera_names:
            (out / f"{name}.mp4").unlink(missing_ok=True)


def _write_session_file(sim: SyntheticSession, out: Path, overwrite: bool) -> Path:
    from napari_behaviorvlm.video.session_io import save_session_file

    session = Session(
        cameras=[CameraSource(name, f"{name}.mp4") for name in sim.camera_names],
        fps=sim.config.fps, n_frames=sim.n_frames, calibration=sim.calibration, root=out,
    )
    return save_session_file(session, out / "session.toml", overwrite=overwrite)


def _csv_text(df: pd.DataFrame) -> str:
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n", float_format="%.6f")
    return buf.getvalue()


def _write_truth(sim: SyntheticSession, folder: Path, seed_frames: list[int]) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    n_c, n_f, n_m, n_k = sim.visible.shape
    cams, inds, kps = sim.camera_names, sim.individual_names, sim.keypoint_names
    paths = {"truth": folder / TRUTH_NPZ}
    with atomic_path(paths["truth"]) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(
                handle,
                points3d=sim.points3d, points2d=sim.points2d, visible=sim.visible,
                in_image=sim.in_image, occluded=sim.occluded, missed=sim.missed,
                brightness=sim.brightness, behavior=sim.behavior.astype(str), target=sim.target,
                camera_names=np.array(cams), individual_names=np.array(inds),
                keypoint_names=np.array(kps), fps=np.float64(sim.config.fps),
                seed_frames=np.array(seed_frames, dtype=np.int64),
            )

    f, m, k = np.meshgrid(np.arange(n_f), np.arange(n_m), np.arange(n_k), indexing="ij")
    p3 = pd.DataFrame({
        "frame": f.ravel(), "individual": np.array(inds)[m.ravel()],
        "keypoint": np.array(kps)[k.ravel()],
        "x": sim.points3d[..., 0].ravel(), "y": sim.points3d[..., 1].ravel(),
        "z": sim.points3d[..., 2].ravel(),
    })
    paths["points3d"] = folder / "points3d.csv"
    atomic_write_text(paths["points3d"], _csv_text(p3))

    c, f, m, k = np.meshgrid(np.arange(n_c), np.arange(n_f), np.arange(n_m), np.arange(n_k),
                             indexing="ij")
    order = np.lexsort((k.ravel(), m.ravel(), c.ravel(), f.ravel()))
    p2 = pd.DataFrame({
        "frame": f.ravel(), "camera": np.array(cams)[c.ravel()],
        "individual": np.array(inds)[m.ravel()], "keypoint": np.array(kps)[k.ravel()],
        "x": sim.points2d[..., 0].ravel(), "y": sim.points2d[..., 1].ravel(),
        "visible": sim.visible.ravel().astype(int), "in_image": sim.in_image.ravel().astype(int),
        "occluded": sim.occluded.ravel().astype(int), "missed": sim.missed.ravel().astype(int),
    }).iloc[order]
    paths["points2d"] = folder / "points2d.csv"
    atomic_write_text(paths["points2d"], _csv_text(p2))

    f, m = np.meshgrid(np.arange(n_f), np.arange(n_m), indexing="ij")
    names = np.array(inds + [""])
    beh = pd.DataFrame({
        "frame": f.ravel(), "time_s": f.ravel() / sim.config.fps,
        "individual": np.array(inds)[m.ravel()], "label": sim.behavior.ravel().astype(str),
        "target": names[sim.target.ravel()],
    })
    paths["behavior"] = folder / "behavior.csv"
    atomic_write_text(paths["behavior"], _csv_text(beh))

    paths["bouts"] = folder / "bouts.csv"
    atomic_write_text(paths["bouts"], _csv_text(sim.bouts().to_dataframe()))
    paths["config"] = folder / "config.toml"
    atomic_write_text(paths["config"], tomli_w.dumps(sim.config.to_dict()))
    return paths


@attrs.define(eq=False)
class SyntheticTruth(TruthViews):
    """Ground truth read back from a session folder (exactly as simulated).

    Attributes:
        camera_names, individual_names, keypoint_names: Axis names (C, M, K).
        fps: Frames per second.
        points3d: float64 ``(F, M, K, 3)`` mm. points2d: float64 ``(C, F, M, K, 2)`` px.
        visible, in_image, occluded, missed: bool ``(C, F, M, K)`` (see SyntheticSession).
        brightness: float32 ``(C, F, M, K)`` peak grey level of each glow.
        behavior: object ``(F, M)`` labels; target: int ``(F, M)`` (-1 none).
        seed_frames: The frames written to ``seeds.csv``.
    """

    camera_names: list[str]
    individual_names: list[str]
    keypoint_names: list[str]
    fps: float
    points3d: np.ndarray
    points2d: np.ndarray
    visible: np.ndarray
    in_image: np.ndarray
    occluded: np.ndarray
    missed: np.ndarray
    brightness: np.ndarray
    behavior: np.ndarray
    target: np.ndarray
    seed_frames: list[int]

    @property
    def n_frames(self) -> int:
        return int(self.points3d.shape[0])



def load_truth(out_dir: str | os.PathLike) -> SyntheticTruth:
    """Read ``out_dir/truth/ground_truth.npz`` written by :func:`write_synthetic_session`.

    Raises:
        FileNotFoundError: the folder has no synthetic ground truth.
        ValueError: the file lacks an array (names it).
    """
    path = Path(out_dir) / TRUTH_DIR / TRUTH_NPZ
    if not path.is_file():
        raise FileNotFoundError(f"no synthetic ground truth at {path}; generate one with "
                                "`behaviorvlm synth OUT_DIR`")
    with np.load(path, allow_pickle=False) as data:
        try:
            return SyntheticTruth(
                camera_names=[str(n) for n in data["camera_names"]],
                individual_names=[str(n) for n in data["individual_names"]],
                keypoint_names=[str(n) for n in data["keypoint_names"]],
                fps=float(data["fps"]),
                points3d=data["points3d"], points2d=data["points2d"], visible=data["visible"],
                in_image=data["in_image"], occluded=data["occluded"], missed=data["missed"],
                brightness=data["brightness"], behavior=data["behavior"].astype(object),
                target=data["target"], seed_frames=[int(f) for f in data["seed_frames"]],
            )
        except KeyError as exc:
            raise ValueError(f"{path} lacks the array {exc.args[0]!r}; regenerate the session") from None
