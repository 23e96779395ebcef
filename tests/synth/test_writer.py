"""Writing a synthetic session: videos, calibration, truth, seeds, and reading them back."""

from __future__ import annotations

import av
import numpy as np
import pandas as pd
import pytest

from napari_behaviorvlm.cli import main
from napari_behaviorvlm.core.pose import PoseTable, Source
from napari_behaviorvlm.geometry.camera import load_calibration
from napari_behaviorvlm.io.labels_csv import read_labels_csv
from napari_behaviorvlm.synth import SynthConfig, load_truth, simulate, write_synthetic_session
from napari_behaviorvlm.video.session_io import load_session


def _decode(path):
    frames, keyframes = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        for i, frame in enumerate(container.decode(stream)):
            frames.append(frame)
            if frame.key_frame:
                keyframes.append(i)
    return frames, keyframes


def test_layout_and_videos_decode(written_session, small_sim):
    folder, paths = written_session
    top = sorted(p.name for p in folder.iterdir())
    assert top == ["calibration.toml", "cam0.mp4", "cam1.mp4", "cam2.mp4", "seeds.csv",
                   "session.toml", "truth"]
    for c, name in enumerate(small_sim.camera_names):
        frames, _ = _decode(paths[name])
        assert len(frames) == 30
        assert (frames[0].width, frames[0].height) == (320, 240)
        assert frames[0].format.name == "yuv420p"
        yuv = frames[10].to_ndarray()  # planar Y then U, V: grey content has neutral chroma
        assert np.abs(yuv[240:].astype(int) - 128).max() <= 2
        gray = frames[10].to_ndarray(format="gray").astype(float)
        rendered = small_sim.render(c, 10).astype(float)
        assert np.abs(gray - rendered).mean() < 3.0  # the video shows the rendered frame


def test_dots_in_the_decoded_video_sit_on_the_truth(written_session, small_sim):
    """After H.264 (with sensor noise and distractors), glow centroids still sit on the truth:
    the median error of isolated visible dots is well under a pixel."""
    _, paths = written_session
    errors = []
    for c, name in enumerate(small_sim.camera_names):
        frames, _ = _decode(paths[name])
        for f in range(0, 30, 3):
            decoded = frames[f].to_ndarray(format="gray").astype(float)
            diff = decoded - small_sim.render(c, f, noise=False, distractors=False, dots=False)
            pts = small_sim.points2d[c, f][small_sim.visible[c, f]]
            for x, y in pts:
                near = np.sort(np.hypot(*(pts - (x, y)).T))[1:2]
                if near.min(initial=99) < 9 or not (5 < x < 314 and 5 < y < 234):
                    continue
                iy, ix = int(round(y)), int(round(x))
                ys, xs = np.mgrid[iy - 3: iy + 4, ix - 3: ix + 4]
                weight = np.clip(diff[ys, xs] - 8.0, 0, None)  # above the noise floor
                assert weight.sum() > 0, (c, f, x, y)
                cx, cy = (weight * xs).sum() / weight.sum(), (weight * ys).sum() / weight.sum()
                errors.append(np.hypot(cx - x, cy - y))
    errors = np.array(errors)
    assert len(errors) >= 40
    assert np.median(errors) < 0.25 and np.quantile(errors, 0.9) < 0.6, errors


def test_session_folder_loads(written_session):
    folder, _ = written_session
    session = load_session(folder)
    assert session.camera_names == ["cam0", "cam1", "cam2"]
    assert session.n_frames == 30 and session.fps == 30.0
    assert session.calibration.names == session.camera_names


def test_random_access_through_the_session_reader_is_frame_exact(written_session, tmp_path):
    from napari_behaviorvlm.video.session_io import open_session_videos

    folder, paths = written_session
    videos = open_session_videos(load_session(folder), cache_dir=tmp_path)
    try:
        frames, _ = _decode(paths["cam1"])
        for f in (17, 3, 29, 0, 16):
            np.testing.assert_array_equal(np.asarray(videos[1][f]),
                                          frames[f].to_ndarray(format="gray"))
    finally:
        for video in videos:
            video.close()


def test_calibration_reprojects_truth_exactly(written_session, small_sim):
    folder, _ = written_session
    calib = load_calibration(folder / "calibration.toml")
    truth = load_truth(folder)
    assert calib.names == truth.camera_names
    np.testing.assert_allclose(calib.project(truth.points3d), truth.points2d, atol=1e-9)


def test_truth_round_trip_is_exact(written_session, small_sim):
    folder, paths = written_session
    truth = load_truth(folder)
    for name in ("points3d", "points2d", "visible", "in_image", "occluded", "missed", "brightness",
                 "behavior", "target"):
        np.testing.assert_array_equal(getattr(truth, name), getattr(small_sim, name))
    assert truth.individual_names == ["mouse0"]
    assert truth.keypoint_names == small_sim.keypoint_names
    assert truth.bouts().equals(small_sim.bouts())
    # The CSVs agree with the arrays.
    p3 = pd.read_csv(paths["points3d"])
    assert list(p3.columns) == ["frame", "individual", "keypoint", "x", "y", "z"]
    np.testing.assert_allclose(p3[["x", "y", "z"]].to_numpy().reshape(truth.points3d.shape),
                               truth.points3d, atol=1e-6)
    p2 = pd.read_csv(paths["points2d"])
    assert list(p2.columns) == ["frame", "camera", "individual", "keypoint", "x", "y", "visible",
                                "in_image", "occluded", "missed"]
    assert p2["visible"].sum() == truth.visible.sum()
    beh = pd.read_csv(paths["behavior"], keep_default_na=False)
    assert list(beh.columns) == ["frame", "time_s", "individual", "label", "target"]
    assert list(beh["label"]) == list(truth.behavior[:, 0])
    bouts = pd.read_csv(paths["bouts"])
    assert bouts["end"].iloc[-1] == 29 and bouts["start"].iloc[0] == 0


def test_seeds_hold_visible_truth_at_three_frames(written_session, small_sim):
    folder, _ = written_session
    truth = load_truth(folder)
    table = PoseTable.empty(truth.camera_names, truth.n_frames, truth.individual_names,
                            truth.keypoint_names)
    read_labels_csv(folder / "seeds.csv", table)
    assert table.seed_frames() == truth.seed_frames and len(truth.seed_frames) == 3
    labeled = table.labeled_mask()
    for f in truth.seed_frames:
        np.testing.assert_array_equal(labeled[:, f], truth.visible[:, f])
        np.testing.assert_array_equal(table.points2d[:, f][labeled[:, f]],
                                      truth.points2d[:, f][truth.visible[:, f]])
    assert labeled.sum() == truth.visible[:, truth.seed_frames].sum()
    assert (table.source[labeled] == Source.SEED).all()


def test_refuses_to_overwrite_then_replaces(tmp_path):
    sim = simulate(SynthConfig(n_cameras=2, n_frames=8, width=64, height=48))
    write_synthetic_session(sim, tmp_path / "s")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_synthetic_session(sim, tmp_path / "s")
    smaller = simulate(SynthConfig(n_cameras=1, n_frames=8, width=64, height=48, seed=9))
    write_synthetic_session(smaller, tmp_path / "s", overwrite=True, seed_frames=[1, 4])
    assert sorted(p.name for p in (tmp_path / "s").glob("*.mp4")) == ["cam0.mp4"]
    assert load_truth(tmp_path / "s").seed_frames == [1, 4]
    with pytest.raises(ValueError, match="seed frames"):
        write_synthetic_session(smaller, tmp_path / "t", seed_frames=[8])


def test_fixed_gop(tmp_path):
    sim = simulate(SynthConfig(n_cameras=1, n_frames=64, width=96, height=64, gop=30))
    paths = write_synthetic_session(sim, tmp_path / "s")
    frames, keyframes = _decode(paths["cam0"])
    assert len(frames) == 64
    assert keyframes == [0, 30, 60]


def test_synth_command(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["synth", str(out), "--cameras", "2", "--frames", "6", "--width", "64", "--height", "48",
            "--mice", "2", "--difficulty", "hard", "--noise", "2.5", "--seed", "4"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "cam1.mp4" in printed and "seeds.csv" in printed and "difficulty hard" in printed
    assert (out / "truth" / "config.toml").read_text().count("noise_sigma = 2.5") == 1
    truth = load_truth(out)
    assert truth.individual_names == ["mouse0", "mouse1"]
    assert main(args) == 2  # exists: refused, printed without a traceback
    assert "overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    more = ["--overwrite", "--seed-frames", "1,4", "--click-noise", "0.5", "--dropout", "0",
            "--reflections", "0", "--no-occlusion"]
    assert main(args + more) == 0
    truth = load_truth(out)
    assert truth.seed_frames == [1, 4] and not truth.missed.any()
    np.testing.assert_array_equal(truth.visible, truth.in_image)
    assert main(args + ["--overwrite", "--seed-frames", "1,x"]) == 2
    assert "--seed-frames" in capsys.readouterr().err


def test_seed_click_noise_and_seed_frame_choice(small_sim):
    from napari_behaviorvlm.synth import choose_seed_frames, seed_pose_table

    frames = choose_seed_frames(small_sim)
    assert len(frames) == 3 and frames == sorted(frames)
    assert frames[0] < 10 <= frames[1] < 20 <= frames[2]  # one per third of the session
    exact = seed_pose_table(small_sim, frames)
    noisy = seed_pose_table(small_sim, frames, click_noise=0.5)
    np.testing.assert_array_equal(exact.labeled_mask(), noisy.labeled_mask())
    delta = (noisy.points2d - exact.points2d)[exact.labeled_mask()]
    assert 0.3 < delta.std() < 0.7
