"""Geometry CLI: bench triangulate (tiny sizes)."""

from __future__ import annotations

import json

from napari_behaviorvlm.cli import main


def test_bench_triangulate_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = main(["bench", "triangulate", "--points", "300", "--cameras", "4", "--repeats", "1",
               "--baseline-points", "50", "--no-aniposelib", "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["points"] == 300 and data["cameras"] == 4
    assert data["per_point_baseline"]["extrapolated"] is True
    assert data["per_point_baseline"]["max_diff_mm"] < 0.05  # same solution as the loop
    assert data["vectorized"]["median_error_to_truth_mm"] < 1.0
    assert "speed-up vs per-point loop" in capsys.readouterr().out
    # an existing output is not replaced silently
    assert main(["bench", "triangulate", "--points", "10", "--json", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
