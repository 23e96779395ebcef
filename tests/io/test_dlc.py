"""DeepLabCut round trips, read back as DeepLabCut, sleap-io and movement read them."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
import sleap_io as sio
import yaml

from napari_behaviorvlm.core.pose import PoseTable, Source
from napari_behaviorvlm.io.dlc import export_dlc_project, image_name, import_dlc
from tests.movement_reader import MOVEMENT_READS_LABEL_FILES, read_with_movement


def _single_animal(project):
    p = project.poses
    project.poses = PoseTable.from_arrays(
        {**p.names(), "individual_names": ["mouse0"]},
        {"points2d": p.points2d[:, :, :1], "confidence": p.confidence[:, :, :1],
         "source": p.source[:, :, :1], "reproj_error": p.reproj_error[:, :, :1],
         "flags": p.flags[:, :, :1], "points3d": p.points3d[:, :1], "n_views": p.n_views[:, :1]})
    return project


def test_image_names_follow_dlc_padding():
    assert image_name(7, 994) == "img007.png"
    assert image_name(7, 1000) == "img007.png"  # DLC: ceil(log10(n)) digits
    assert image_name(12, 1001) == "img0012.png"


def test_multi_animal_project_read_like_deeplabcut(small_project, tmp_path):
    out = tmp_path / "dlc"
    files = export_dlc_project(small_project, out)
    poses, session = small_project.poses, small_project.session
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["multianimalproject"] is True and cfg["bodyparts"] == "MULTI!"
    assert cfg["individuals"] == poses.individual_names
    assert cfg["multianimalbodyparts"] == poses.keypoint_names
    assert cfg["uniquebodyparts"] == []
    assert cfg["skeleton"] == [list(e) for e in small_project.skeleton.edges]
    assert cfg["scorer"] == "behaviorvlm" and cfg["Task"] == "tiny"
    assert len(cfg["video_sets"]) == 3
    for key in ("date", "project_path", "numframes2pick", "pcutoff", "dotsize", "TrainingFraction",
                "iteration", "snapshotindex", "batch_size", "cropping", "engine"):
        assert key in cfg

    human = poses.human_mask()
    for c, cam in enumerate(session.cameras):
        folder = out / "labeled-data" / f"rec_{cam.name}"
        df = pd.read_hdf(folder / "CollectedData_behaviorvlm.h5", "df_with_missing")
        assert list(df.columns.names) == ["scorer", "individuals", "bodyparts", "coords"]
        assert set(df.columns.get_level_values("coords")) == {"x", "y"}
        frames = np.nonzero(human[c].any(axis=(1, 2)))[0]
        n_video = session.n_frames + cam.frame_offset
        assert list(df.index) == [("labeled-data", f"rec_{cam.name}",
                                   image_name(f + cam.frame_offset, n_video)) for f in frames]
        values = df.to_numpy().reshape(len(frames), 2, 4, 2)
        expected = np.where(human[c][frames][..., None], poses.points2d[c][frames], np.nan)
        np.testing.assert_array_equal(values, expected)  # model labels never become truth
        csv = pd.read_csv(folder / "CollectedData_behaviorvlm.csv", header=[0, 1, 2, 3],
                          index_col=[0, 1, 2])
        np.testing.assert_allclose(csv.to_numpy(float), df.to_numpy(), equal_nan=True)
        for f in frames:  # the image is the right video frame
            img = cv2.imread(str(folder / image_name(f + cam.frame_offset, n_video)))
            assert abs(float(img.mean()) - 10 * (f + cam.frame_offset)) < 2
    assert all(p.exists() for p in files)

    # machine labels: flagged model frames with likelihood, for DLC's refine step
    folder = out / "labeled-data" / "rec_camB"
    ml = pd.read_hdf(folder / "machinelabels-iter0.h5", "df_with_missing")
    assert list(ml.index.get_level_values(2)) == [image_name(4 + 2, 22)]
    lik = ml.xs("likelihood", axis=1, level="coords").to_numpy().reshape(2, 4)
    np.testing.assert_allclose(lik, poses.confidence[1, 4], rtol=1e-6)

    small_project.poses.flags[1, 6:9, 0, 0] = 1  # 3 more flagged frames, 1 label each
    small_project.poses.flags[1, 8, 1, 0] = 1  # frame 8: 2 labels
    few = export_dlc_project(small_project, tmp_path / "few", images=False, max_machine_frames=2)
    ml2 = pd.read_hdf(next(p for p in few if p.name == "machinelabels-iter0.h5"
                           and "rec_camB" in str(p)), "df_with_missing")
    assert list(ml2.index.get_level_values(2)) == [image_name(f + 2, 22) for f in (4, 8)]
    machine = import_dlc(folder / "machinelabels-iter0.h5", small_project)
    assert (machine.source[1, 4] == Source.MODEL).all()
    np.testing.assert_allclose(machine.confidence[1, 4], poses.confidence[1, 4], rtol=1e-6)
    np.testing.assert_array_equal(machine.points2d[1, 4], poses.points2d[1, 4])

    # our importer gets exactly the human labels back
    back = import_dlc(out, small_project, source=Source.HUMAN)
    np.testing.assert_array_equal(back.labeled_mask(), human)
    np.testing.assert_array_equal(back.points2d[human], poses.points2d[human])
    assert (back.source[human] == Source.HUMAN).all()


def test_sleap_io_and_movement_read_the_export(small_project, tmp_path):
    out = tmp_path / "dlc"
    export_dlc_project(small_project, out)
    poses = small_project.poses
    folder = out / "labeled-data" / "rec_camC"
    frames = np.nonzero(poses.human_mask()[2].any(axis=(1, 2)))[0]
    labels = sio.load_dlc(str(folder / "CollectedData_behaviorvlm.csv"))
    assert [t.name for t in labels.tracks] == poses.individual_names
    nodes = labels.skeletons[0].node_names  # sleap-io sorts node names
    assert sorted(nodes) == sorted(poses.keypoint_names)
    order = [nodes.index(k) for k in poses.keypoint_names]
    assert len(labels.labeled_frames) == len(frames)
    lf = sorted(labels.labeled_frames, key=lambda x: x.frame_idx)[list(frames).index(9)]
    inst = {i.track.name: i for i in lf.instances}["mouse1"]
    np.testing.assert_allclose(inst.numpy()[order], poses.points2d[2, 9, 1])

    if MOVEMENT_READS_LABEL_FILES:
        ds = read_with_movement(folder / "CollectedData_behaviorvlm.h5", "DeepLabCut")
        assert list(ds.individuals.values) == poses.individual_names
        pos = ds.position.values.transpose(0, 3, 2, 1)  # (frames, individuals, keypoints, xy)
        expected = np.where(poses.human_mask()[2][frames][..., None], poses.points2d[2][frames],
                            np.nan)
        np.testing.assert_allclose(pos, expected)
    ds = read_with_movement(out / "labeled-data" / "rec_camA" / "machinelabels-iter0.h5",
                            source_software="DeepLabCut")
    np.testing.assert_allclose(ds.confidence.values[0].T, poses.confidence[0, 4], rtol=1e-6)


def test_single_animal_layout(small_project, tmp_path):
    project = _single_animal(small_project)
    out = tmp_path / "dlc1"
    export_dlc_project(project, out, scorer="me", images=False)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["multianimalproject"] is False and cfg["bodyparts"] == project.poses.keypoint_names
    path = out / "labeled-data" / "rec_camA" / "CollectedData_me.h5"
    df = pd.read_hdf(path, "df_with_missing")
    assert list(df.columns.names) == ["scorer", "bodyparts", "coords"]
    assert not list((out / "labeled-data" / "rec_camA").glob("*.png"))
    if MOVEMENT_READS_LABEL_FILES:
        ds = read_with_movement(path, source_software="DeepLabCut")
        np.testing.assert_allclose(ds.position.values[:, :, :, 0].transpose(0, 2, 1),
                                   project.poses.points2d[0, [0, 5], 0])
    back = import_dlc(out / "labeled-data" / "rec_camA" / "CollectedData_me.csv", project)
    np.testing.assert_array_equal(back.points2d[0, [0, 5]], project.poses.points2d[0, [0, 5]])
    assert (back.source[0, [0, 5]] == Source.SEED).all()


def test_existing_files_are_not_overwritten(small_project, tmp_path):
    out = tmp_path / "dlc"
    out.mkdir()
    (out / "config.yaml").write_text("mine")
    with pytest.raises(FileExistsError, match="config.yaml"):
        export_dlc_project(small_project, out)
    assert (out / "config.yaml").read_text() == "mine"
    assert not (out / "labeled-data").exists()  # refused before writing anything
    export_dlc_project(small_project, out, overwrite=True, images=False)
    assert yaml.safe_load((out / "config.yaml").read_text())["Task"] == "tiny"


def test_import_lightning_pose_collected_data(shared_datasets):
    path = shared_datasets / "lp-mirror-mouse" / "CollectedData.csv"
    table = import_dlc(path, source=Source.HUMAN)
    raw = pd.read_csv(path, header=[0, 1, 2], index_col=0)
    labeled_frames = np.nonzero(table.labeled_mask()[0].any(axis=(1, 2)))[0]
    assert len(labeled_frames) == 90 and table.n_keypoints == 17
    assert table.keypoint_names[0] == "paw1LH_top" and table.keypoint_names[-1] == "obsLow_bot"
    assert np.isnan(table.points2d[0, labeled_frames]).sum() == raw.isna().to_numpy().sum()
    np.testing.assert_allclose(table.points2d[0, 1, 0, 6], raw.iloc[0, 12:14].to_numpy(float))
    assert (table.source[table.labeled_mask()] == Source.HUMAN).all()
