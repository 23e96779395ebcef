"""The pose benchmark's record of the BLAS kernels its figures depend on."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from threadpoolctl import threadpool_info

from napari_behaviorvlm.cli import main
from napari_behaviorvlm.pose.benchmark import (
    blas_kernel,
    format_sessions_table,
    format_table,
    pool_sessions,
)


def _numpy_openblas() -> bool:
    """numpy (loaded with the benchmark module) runs on OpenBLAS."""
    return any(i.get("internal_api") == "openblas" and "numpy" in i.get("filepath", "")
               for i in threadpool_info())


def test_the_table_names_the_blas_kernels_of_the_run():
    result = {"config": {"cameras": 6, "frames": 10, "mice": 1, "seed": 0,
                         "difficulty": "default", "backend": "local", "seed_frames": [1, 5, 8],
                         "blas": blas_kernel()},
              "variants": {}}
    header = format_table(result).splitlines()[0]
    assert header.endswith(f"BLAS {result['config']['blas']}")


@pytest.mark.skipif(not _numpy_openblas(), reason="numpy does not run on OpenBLAS here")
def test_the_kernel_chosen_by_openblas_coretype_is_the_one_recorded():
    code = "from napari_behaviorvlm.pose.benchmark import blas_kernel; print(blas_kernel())"
    env = os.environ | {"OPENBLAS_CORETYPE": "Haswell"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    numpy_part = next(p for p in out.strip().split("; ") if p.startswith("numpy "))
    assert numpy_part.startswith("numpy openblas ") and numpy_part.endswith(" Haswell")


def _session(mice, seed, **counts):
    metrics = {"n_located": 0, "n_evaluated": 0, "n_swapped": 0, "n_swapped_flagged": 0,
               "n_bad": 0, "n_flagged": 0, "n_flagged_bad": 0, "n_located_bad": 0,
               "n_located_flagged_bad": 0, "sum_3d_error_mm": 0.0, "individual_exchange_frames": 0,
               "frames_per_second": 0.0} | counts
    return {"config": {"mice": mice, "seed": seed, "blas": "test"}, "variants": {"full": metrics}}


def test_pooling_counts_every_keypoint_once():
    a = _session(1, 0, n_located=100, n_evaluated=110, n_swapped=1, n_swapped_flagged=1,
                 n_bad=20, n_flagged=25, n_flagged_bad=19, n_located_bad=8,
                 n_located_flagged_bad=7, sum_3d_error_mm=30.0, frames_per_second=30.0)
    b = _session(2, 0, n_located=300, n_evaluated=320, n_swapped=9, n_swapped_flagged=5,
                 n_bad=80, n_flagged=90, n_flagged_bad=60, n_located_bad=12,
                 n_located_flagged_bad=3, sum_3d_error_mm=150.0, individual_exchange_frames=2,
                 frames_per_second=20.0)
    c = _session(2, 1, n_located=100, n_evaluated=100, n_swapped=0, n_bad=0, n_flagged=5,
                 n_flagged_bad=0, sum_3d_error_mm=20.0, frames_per_second=25.0)
    pooled = pool_sessions([a, b, c])["full"]
    assert pooled["sessions"] == 3
    assert pooled["identity_swap_rate"] == pytest.approx(10 / 500)  # not the mean of the rates
    assert pooled["swap_flag_share"] == pytest.approx(6 / 10)
    assert pooled["mean_3d_error_mm"] == pytest.approx(200 / 500)
    assert pooled["coverage"] == pytest.approx(500 / 530)
    assert pooled["flag_recall"] == pytest.approx(79 / 100)
    assert pooled["flag_precision"] == pytest.approx(79 / 120)
    assert pooled["located_flag_recall"] == pytest.approx(10 / 20)
    assert pooled["individual_exchange_frames"] == 2
    assert pooled["frames_per_second"] == 25.0
    table = format_sessions_table([a, b, c], {"full": pooled})
    assert table.splitlines()[0] == "bench pose, 3 sessions; BLAS test"
    assert len(table.splitlines()) == 2 + 3 + 1 and "pooled" in table.splitlines()[-1]


def test_bench_pose_over_several_sessions_pools_the_counts_it_reports(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "pose", "--cameras", "3", "--frames", "24", "--seeds", "0-1",
                 "--variants", "full", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    sessions = [s["variants"]["full"] for s in data["sessions"]]
    assert [s["config"]["seed"] for s in data["sessions"]] == [0, 1]
    for m in sessions:  # the counts behind each session's ratios
        assert m["n_swapped"] / max(m["n_located"], 1) == pytest.approx(m["identity_swap_rate"])
        assert m["sum_3d_error_mm"] / m["n_located"] == pytest.approx(m["mean_3d_error_mm"])
        assert m["n_flagged_bad"] <= min(m["n_bad"], m["n_flagged"])
    pooled = data["pooled"]["full"]
    located = sum(m["n_located"] for m in sessions)
    assert pooled["mean_3d_error_mm"] == pytest.approx(
        sum(m["sum_3d_error_mm"] for m in sessions) / located)
    assert "pooled" in capsys.readouterr().out
    assert main(["bench", "pose", "--mice", "3"]) == 2


def test_the_tables_print_the_swap_rate_in_percent():
    a = _session(1, 0, n_located=2000, n_swapped=1, n_evaluated=2000, identity_swap_rate=0.0005)
    b = _session(1, 1, n_located=1000, n_swapped=1, n_evaluated=1000, identity_swap_rate=0.001)
    lines = format_sessions_table([a, b], pool_sessions([a, b])).splitlines()
    assert lines[1].split()[-8:-6] == ["swap", "%"]
    swap = [line.split("(")[0].split()[-7] for line in lines[2:]]  # 7th cell from the end
    assert swap == ["0.05", "0.10", "0.07"]  # the pooled row: 2 / 3000


def test_an_interrupted_multi_session_bench_keeps_the_sessions_it_finished(tmp_path, monkeypatch,
                                                                           capsys):
    from napari_behaviorvlm.pose import benchmark

    calls = []

    def one_session(cameras, frames, mice, seed, *args):
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return _session(mice, seed, n_located=10, n_evaluated=10, n_swapped=1)

    monkeypatch.setattr(benchmark, "run_pose_benchmark", one_session)
    monkeypatch.setattr(benchmark, "format_table", lambda result: "")
    out = tmp_path / "bench.json"
    assert main(["bench", "pose", "--seeds", "3-5", "--json", str(out)]) == 130  # interrupted
    assert f"the sessions finished so far are in {out}" in capsys.readouterr().err
    data = json.loads(out.read_text())
    assert [s["config"]["seed"] for s in data["sessions"]] == [3]
    assert data["pooled"]["full"]["identity_swap_rate"] == pytest.approx(0.1)
    calls.clear()
    assert main(["bench", "pose", "--seeds", "3-5"]) == 130
    assert "nothing was kept (with --json FILE" in capsys.readouterr().err
    for bad in (["--mice", "3"], ["--mice", "1,x"], ["--seeds", "5-2"]):
        assert main(["bench", "pose", *bad]) == 2
        assert "--" in capsys.readouterr().err
