"""Labels CSV: exact round trip, masks, sources, and clear errors naming the row."""

from __future__ import annotations

import numpy as np
import pytest

from napari_behaviorvlm.core.pose import PoseTable, Source
from napari_behaviorvlm.io.labels_csv import LABEL_COLUMNS, LabelsCSVError, read_labels_csv, write_labels_csv


def _table() -> PoseTable:
    return PoseTable.empty(["camA", "camB"], 10, ["mouse0", "mouse1"], ["ear_left", "paw", "tail"])


def _filled() -> PoseTable:
    table = _table()
    rng = np.random.default_rng(0)
    table.set_label("camA", 2, "mouse0", "ear_left", rng.uniform(0, 640, 2) / 3, Source.SEED)
    table.set_label("camB", 2, "mouse1", "tail", (1e-7, 479.99999999), Source.SEED)
    table.set_label("camA", 7, "mouse1", "paw", (10.5, 20.25), Source.HUMAN)
    table.set_label("camB", 9, "mouse0", "paw", (1.0, 2.0), Source.MODEL, confidence=0.4)
    return table


def test_round_trip_is_exact_with_sources(tmp_path):
    table = _filled()
    path = write_labels_csv(tmp_path / "labels.csv", table)
    lines = path.read_text().splitlines()
    assert lines[0] == ",".join(LABEL_COLUMNS)
    assert len(lines) == 5
    assert [line.split(",")[0] for line in lines[1:]] == ["2", "2", "7", "9"]  # sorted by frame
    back = read_labels_csv(path, _table(), source=None)
    np.testing.assert_array_equal(back.points2d, table.points2d)
    np.testing.assert_array_equal(back.source, table.source)
    seeds = read_labels_csv(path, _table())  # default: everything read becomes a seed
    assert (seeds.source[seeds.labeled_mask()] == Source.SEED).all()
    assert (seeds.confidence[seeds.labeled_mask()] == 1.0).all()


def test_mask_selects_rows_and_refuses_overwrite(tmp_path):
    table = _filled()
    path = write_labels_csv(tmp_path / "seeds.csv", table, mask=table.source == Source.SEED)
    back = read_labels_csv(path, _table())
    assert back.labeled_mask().sum() == 2 and back.seed_frames() == [2]
    with pytest.raises(FileExistsError):
        write_labels_csv(path, table)
    write_labels_csv(path, table, overwrite=True)
    with pytest.raises(ValueError, match="mask has shape"):
        write_labels_csv(tmp_path / "x.csv", table, mask=np.ones((2, 10), bool))


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1,camZ,mouse0,paw,1,2,seed", "line 3: unknown camera 'camZ'"),
        ("1,camA,mouse0,nose,1,2,seed", "line 3: unknown keypoint 'nose'"),
        ("1,camA,mouse7,paw,1,2,seed", "line 3: unknown individual 'mouse7'"),
        ("10,camA,mouse0,paw,1,2,seed", "line 3: frame 10 is outside"),
        ("x,camA,mouse0,paw,1,2,seed", "line 3: frame 'x' is not an integer"),
        ("1,camA,mouse0,paw,one,2,seed", "line 3: x='one'"),
        ("1,camA,mouse0,paw,nan,2,seed", "line 3: x, y must be finite"),
        ("0,camA,mouse0,paw,3,4,seed", "line 3: camA/mouse0/paw at frame 0 is already given on line 2"),
    ],
)
def test_errors_name_the_row(tmp_path, row, message):
    path = tmp_path / "bad.csv"
    path.write_text(",".join(LABEL_COLUMNS) + "\n0,camA,mouse0,paw,1,2,seed\n" + row + "\n")
    table = _table()
    with pytest.raises(LabelsCSVError, match=message.replace("(", r"\(")) as info:
        read_labels_csv(path, table)
    assert str(path) in str(info.value)
    assert not table.labeled_mask().any()  # nothing is applied from a bad file


def test_missing_columns_and_sources(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("frame,camera,keypoint,x,y\n0,camA,paw,1,2\n")
    with pytest.raises(LabelsCSVError, match=r"missing column\(s\) \['individual'\]"):
        read_labels_csv(path, _table())
    path.write_text("frame,camera,individual,keypoint,x,y\n0,camA,mouse0,paw,1,2\n")
    assert read_labels_csv(path, _table()).labeled_mask().sum() == 1  # source column optional
    with pytest.raises(LabelsCSVError, match="source"):
        read_labels_csv(path, _table(), source=None)
    path.write_text(",".join(LABEL_COLUMNS) + "\n0,camA,mouse0,paw,1,2,guess\n")
    with pytest.raises(LabelsCSVError, match="line 2: source 'guess'"):
        read_labels_csv(path, _table(), source=None)
    with pytest.raises(FileNotFoundError):
        read_labels_csv(tmp_path / "none.csv", _table())
