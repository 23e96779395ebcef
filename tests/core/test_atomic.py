import pytest

from napari_behaviorvlm.core.atomic import atomic_path, atomic_write_text, check_overwrite


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(ZeroDivisionError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            1 / 0
    assert target.read_text() == "old"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".csv" and tmp.parent == tmp_path
        tmp.write_text("new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_check_overwrite(tmp_path):
    target = tmp_path / "a.txt"
    check_overwrite(target, overwrite=False)
    atomic_write_text(target, "x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        check_overwrite(target, overwrite=False)
    check_overwrite(target, overwrite=True)
