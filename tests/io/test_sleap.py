"""SLEAP round trips, read back with sleap-io's and movement's own readers."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import sleap_io as sio

from napari_behaviorvlm.core.pose import Source
from napari_behaviorvlm.io.sleap import (
    export_sleap_analysis_h5, export_slp, import_slp, import_slp_segments,
)
from tests.movement_reader import read_with_movement


def _instances(labels, video, frame_idx, kind):
    lf = labels.find(video, frame_idx)
    return [] if not lf else [i for i in lf[0].instances if type(i) is kind]


def test_slp_read_by_sleap_io(small_project, tmp_path):
    path = export_slp(small_project, tmp_path / "out.slp")
    labels = sio.load_slp(str(path), open_videos=False)
    poses, session = small_project.poses, small_project.session

    # cameras: a RecordingSession with the calibration under the same names
    assert len(labels.sessions) == 1
    rs = labels.sessions[0]
    assert [c.name for c in rs.camera_group.cameras] == session.camera_names
    for cam, ours in zip(rs.camera_group.cameras, session.calibration):
        np.testing.assert_allclose(cam.matrix, ours.matrix)
        np.testing.assert_allclose(cam.rvec, ours.rvec)
        np.testing.assert_allclose(cam.tvec, ours.tvec)
    assert [rs.get_camera(v).name for v in labels.videos] == session.camera_names
    assert [t.name for t in labels.tracks] == poses.individual_names
    sk = labels.skeletons[0]
    assert sk.node_names == poses.keypoint_names
    assert {tuple(n.name for n in e) for e in sk.edges} == set(small_project.skeleton.edges)
    assert {frozenset(n.name for n in s.nodes) for s in sk.symmetries} == {
        frozenset(p) for p in small_project.skeleton.symmetry}

    # instance kinds: seeds -> user instances (video frame = session frame + offset)
    vid_b, off_b = labels.videos[1], session.cameras[1].frame_offset
    user = _instances(labels, vid_b, 0 + off_b, sio.Instance)
    assert len(user) == 2 and not _instances(labels, vid_b, 0 + off_b, sio.PredictedInstance)
    np.testing.assert_allclose(user[0].numpy(), poses.points2d[1, 0, 0])
    # model labels -> predicted instances with point scores and an instance score
    pred = _instances(labels, vid_b, 2 + off_b, sio.PredictedInstance)
    assert len(pred) == 2 and not _instances(labels, vid_b, 2 + off_b, sio.Instance)
    by_track = {p.track.name: p for p in pred}
    arr = by_track["mouse1"].numpy(scores=True)
    np.testing.assert_allclose(arr[:, :2], poses.points2d[1, 2, 1])
    np.testing.assert_allclose(arr[:, 2], poses.confidence[1, 2, 1], rtol=1e-6)
    assert by_track["mouse1"].score == pytest.approx(float(np.mean(poses.confidence[1, 2, 1])),
                                                     rel=1e-6)
    # a human correction: user instance linked to the prediction it corrected
    corrected = [u for u in _instances(labels, vid_b, 7 + off_b, sio.Instance)
                 if u.track.name == "mouse0"]
    assert len(corrected) == 1 and corrected[0].from_predicted is not None
    assert isinstance(corrected[0].from_predicted, sio.PredictedInstance)
    np.testing.assert_allclose(corrected[0].numpy()[0], [10.25, 20.5])
    assert np.isnan(corrected[0].numpy()[1:]).all()
    np.testing.assert_allclose(corrected[0].from_predicted.numpy()[1:], poses.points2d[1, 7, 0, 1:])
    # suggestions: seed frames first, then the frames still flagged for review
    sugg = [(labels.videos.index(sf.video), sf.frame_idx) for sf in labels.suggestions]
    offsets = [c.frame_offset for c in session.cameras]
    assert sorted(sugg[:6]) == sorted((c, f + offsets[c]) for f in (0, 5) for c in range(3))
    assert sugg[6:] == [(0, 4), (1, 4 + offsets[1]), (2, 13 + offsets[2])]
    # a frame without any label has no labeled frame
    assert not labels.find(labels.videos[0], 15)
    # 3D: frame groups link views and carry the triangulated points
    fg = rs.frame_groups[3]
    groups = {g.metadata.get("individual"): g for g in fg.instance_groups}
    assert set(groups) == {"mouse0", "mouse1"}
    assert len(groups["mouse0"].instances) == 3
    np.testing.assert_allclose(groups["mouse1"].instance_3d.points, poses.points3d[3, 1])

    # events: human segments -> UserEvent, model segments -> PredictedEvent with a score
    events = sorted(labels.events, key=lambda e: (e.subject.name, e.start_frame))
    assert [(type(e).__name__, e.type.name, e.start_frame, e.end_frame, e.subject.name)
            for e in events] == [
        ("PredictedEvent", "walk", 0, 6, "mouse0"), ("UserEvent", "rear", 7, 7, "mouse0"),
        ("PredictedEvent", "chase", 3, 12, "mouse1"), ("UserEvent", "groom", 13, 19, "mouse1")]
    assert events[0].score == pytest.approx(0.8)
    assert events[2].target.name == "mouse0"
    assert events[3].metadata["caption"] == "face wash"


def test_slp_round_trip_through_import(small_project, tmp_path):
    path = export_slp(small_project, tmp_path / "out.slp")
    poses = small_project.poses
    back = import_slp(path, small_project, source=Source.HUMAN, include_predictions=True)
    assert back.names() == poses.names()
    np.testing.assert_array_equal(back.points2d, poses.points2d)
    np.testing.assert_array_equal(back.source, poses.source)  # seeds kept apart from human
    np.testing.assert_allclose(back.confidence, poses.confidence, rtol=1e-6)
    user_only = import_slp(path, small_project, source=Source.HUMAN)
    human = poses.human_mask()
    np.testing.assert_array_equal(user_only.labeled_mask(), human)
    assert import_slp_segments(path, small_project).equals(small_project.segments)


def test_slp_import_without_project(small_project, tmp_path):
    path = export_slp(small_project, tmp_path / "out.slp")
    table = import_slp(path)  # camera names from the file's RecordingSession
    assert table.camera_names == small_project.session.camera_names
    # without a project the frames are video frames: camB's seed frame 0 is video frame 2
    np.testing.assert_array_equal(table.points2d[1, 2], small_project.poses.points2d[1, 0])
    assert (table.source[1, 2] == Source.SEED).all()


def test_slp_read_by_movement(small_project, tmp_path):
    small_project.poses.points2d[1:] = np.nan  # movement reads the first video only
    path = export_slp(small_project, tmp_path / "out.slp")
    ds = read_with_movement(path, source_software="SLEAP")
    poses = small_project.poses
    assert list(ds.individuals.values) == poses.individual_names
    assert list(ds.keypoints.values) == poses.keypoint_names
    pos = ds.position.values  # (time, space, keypoints, individuals)
    np.testing.assert_allclose(pos[:, :, :, :].transpose(0, 3, 2, 1)[:poses.n_frames],
                               poses.points2d[0], rtol=1e-6)


def test_analysis_h5(small_project, tmp_path):
    paths = export_sleap_analysis_h5(small_project, tmp_path)
    poses = small_project.poses
    assert [p.name for p in paths] == [f"tiny.{c}.analysis.h5" for c in poses.camera_names]
    off = small_project.session.cameras[1].frame_offset
    with h5py.File(paths[1]) as f:
        tracks = f["tracks"][:]
        assert tracks.shape == (2, 2, 4, poses.n_frames + off)
        assert [n.decode() for n in f["track_names"][:]] == poses.individual_names
        assert [n.decode() for n in f["node_names"][:]] == poses.keypoint_names
        np.testing.assert_allclose(tracks[..., off:].transpose(3, 0, 2, 1), poses.points2d[1])
        assert np.isnan(tracks[..., :off]).all()
        scores = f["point_scores"][:]
        expected = np.where(poses.human_mask()[1], 1.0, poses.confidence[1])
        expected[~poses.labeled_mask()[1]] = np.nan
        np.testing.assert_allclose(scores[..., off:].transpose(2, 0, 1), expected, rtol=1e-6)
    ds = read_with_movement(paths[1], source_software="SLEAP")
    np.testing.assert_allclose(ds.position.values[off:].transpose(0, 3, 2, 1), poses.points2d[1],
                               rtol=1e-6)


def test_embedded_frames_and_overwrite(small_project, tmp_path):
    path = export_slp(small_project, tmp_path / "pkg.slp", embed_frames=True)
    labels = sio.load_slp(str(path))
    seed_lf = labels.find(labels.videos[1], 0 + small_project.session.cameras[1].frame_offset)[0]
    img = seed_lf.image  # read from the embedded frames, not the video
    assert abs(float(np.mean(img)) - 10 * 2) < 3
    rs = labels.sessions[0]  # cameras stay linked to the (embedded) videos
    assert [rs.get_camera(v).name for v in labels.videos] == small_project.session.camera_names
    assert len(rs.frame_groups) == small_project.poses.labeled_mask().any(axis=(0, 2, 3)).sum()
    with pytest.raises(FileExistsError):
        export_slp(small_project, path)
    export_slp(small_project, path, overwrite=True)


def test_import_real_sleap_file(shared_datasets):
    """A real SLEAP project (sleap-anipose minimal session, proofread predictions) comes in with
    the same points as its own analysis HDF5."""
    folder = shared_datasets / "sleap-anipose-minimal-session" / "top"
    table = import_slp(folder / "minimal_top_proofread.slp", include_predictions=True)
    assert table.n_frames == 120 and table.n_keypoints == 15 and table.n_individuals == 1
    assert table.keypoint_names[:3] == ["Nose", "Ear_R", "Ear_L"]
    assert table.labeled_mask().all()
    assert (table.source == Source.MODEL).all()
    with h5py.File(folder / "minimal_top_proofread.analysis.h5") as f:
        tracks = f["tracks"][:]  # (1, 2, 15, 120)
    np.testing.assert_allclose(table.points2d[0, :, 0], tracks[0].transpose(2, 1, 0), rtol=1e-5)
    assert not import_slp(folder / "minimal_top_proofread.slp").labeled_mask().any()
