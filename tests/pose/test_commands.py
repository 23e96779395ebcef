"""``behaviorvlm label``: a new project from a written session, then a resumed run."""

from __future__ import annotations

import pytest

from napari_behaviorvlm.cli import main
from napari_behaviorvlm.core.pose import Source
from napari_behaviorvlm.core.project import load_project
from napari_behaviorvlm.core.review import flagged_mask
from napari_behaviorvlm.pose.commands import parse_frames
from napari_behaviorvlm.pose.pipeline import done_frames
from napari_behaviorvlm.synth.config import SynthConfig
from napari_behaviorvlm.synth.simulate import simulate
from napari_behaviorvlm.synth.writer import write_synthetic_session


def test_parse_frames():
    assert parse_frames("2-4,7", 10) == [2, 3, 4, 7]
    assert parse_frames(None, 10) is None
    for bad in ("4-2", "0-10", "a-b"):
        with pytest.raises(ValueError, match="--frames"):
            parse_frames(bad, 10)


def test_label_command_creates_then_resumes(tmp_path, capsys):
    sim = simulate(SynthConfig(n_cameras=3, n_frames=16, seed=3, width=320, height=240))
    session = tmp_path / "session"
    write_synthetic_session(sim, session, seed_frames=[2, 8, 14])
    out = tmp_path / "labels.bvlm"
    assert main(["label", str(session), "--seeds", str(session / "seeds.csv"),
                 "--frames", "0-5", "--out", str(out)]) == 0
    first = load_project(out)
    assert done_frames(first) == {0, 1, 3, 4, 5}
    assert (first.poses.source[:, 2] == Source.SEED).any()
    assert main(["label", str(session), "--out", str(out)]) == 0
    assert "resuming" in capsys.readouterr().out
    second = load_project(out)
    assert done_frames(second) == set(range(16)) - {2, 8, 14}
    # frames finished by the first run are kept as they were
    assert (second.poses.points2d[:, :6] == first.poses.points2d[:, :6]).sum() \
        == (first.poses.points2d[:, :6] == first.poses.points2d[:, :6]).sum()
    # a new project without seeds is refused with a clear message
    assert main(["label", str(session), "--out", str(tmp_path / "other.bvlm")]) == 2
    assert "--seeds" in capsys.readouterr().err
    # a model backend without its API key stops before any work, naming the variable
    before = out.read_bytes()
    assert main(["label", str(session), "--out", str(out), "--relabel", "--backend", "vlm",
                 "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                 "--api-key-env", "BVLM_TEST_UNSET_KEY"]) == 2
    err = capsys.readouterr().err
    assert "BVLM_TEST_UNSET_KEY" in err and "Traceback" not in err
    assert out.read_bytes() == before  # nothing lost or rewritten
    # a relabel run redoes the finished frames and keeps the seeds
    assert main(["label", str(session), "--out", str(out), "--relabel", "--frames", "0-5"]) == 0
    printed = capsys.readouterr().out
    assert "labeled 5 frames" in printed and "labeled again from both sides" in printed
    assert "a last time" in printed
    third = load_project(out)
    flagged = flagged_mask(third.poses)
    expected = (f"to review: {int(flagged.sum())} flagged labels on "
                f"{int(flagged.any(axis=(0, 2, 3)).sum())} frames in the project")
    assert flagged.any() and expected in printed
    assert (third.poses.points2d[third.poses.source == Source.SEED]
            == second.poses.points2d[second.poses.source == Source.SEED]).all()


def test_label_both_directions_merges_the_gaps_a_run_covers(tmp_path, capsys):
    sim = simulate(SynthConfig(n_cameras=3, n_frames=16, n_mice=2, seed=3, width=320,
                               height=240))
    session = tmp_path / "session"
    write_synthetic_session(sim, session, seed_frames=[2, 8, 14])
    out = tmp_path / "labels.bvlm"
    # frames 3-6 cover no whole stretch (0-1 before the first seed, 3-7 between the first
    # two): nothing is labeled twice
    assert main(["label", str(session), "--seeds", str(session / "seeds.csv"),
                 "--frames", "3-6", "--both-directions", "--out", str(out)]) == 0
    assert "both_directions" not in load_project(out).settings["pose_labeling"]
    assert main(["label", str(session), "--out", str(out), "--both-directions"]) == 0
    assert "keypoints taken from the labeling in the other direction" in capsys.readouterr().out
    # frame 15 after the last seed is a session end: nothing between them to label twice
    assert load_project(out).settings["pose_labeling"]["both_directions"] == [[0, 2], [2, 8],
                                                                              [8, 14]]
    # a relabel labels from the nearer seed, and says so
    assert main(["label", str(session), "--out", str(out), "--relabel", "--frames", "0-5",
                 "--both-directions"]) == 0
    assert "--both-directions applies to" in capsys.readouterr().out


def test_an_interrupted_label_run_keeps_its_frames_and_says_how_to_resume(tmp_path, capsys,
                                                                         interrupt_labeling):
    sim = simulate(SynthConfig(n_cameras=2, n_frames=10, seed=3, width=320, height=240))
    session = tmp_path / "session"
    write_synthetic_session(sim, session, seed_frames=[1, 5, 8])
    out = tmp_path / "labels.bvlm"
    args = ["label", str(session), "--seeds", str(session / "seeds.csv"), "--out", str(out),
            "--save-every", "0"]
    with interrupt_labeling(after=3):
        assert main(args) == 130
    err = capsys.readouterr().err
    assert f"interrupted: the finished frames are saved in {out}; rerun the same command" in err
    kept = done_frames(load_project(out))
    assert kept  # saved on the interrupt, not by --save-every
    assert main(["label", str(session), "--out", str(out)]) == 0
    assert f"resuming {out}: {len(kept)} frames already done" in capsys.readouterr().out
    assert done_frames(load_project(out)) == set(range(10)) - {1, 5, 8}
