"""``behaviorvlm bench vlm`` (client against the test double server) at a tiny size."""

from __future__ import annotations

import json

from napari_behaviorvlm.cli import main


def test_bench_vlm_cli_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "vlm", "--requests", "12", "--latency", "0.005", "--concurrency", "3",
            "--fail-rate", "0.2", "--malformed-rate", "0.2", "--json", str(out)]
    assert main(argv) == 0
    assert "TEST DOUBLE" in capsys.readouterr().out
    res = json.loads(out.read_text())
    for run in ("sequential", "concurrent", "cached_rerun"):
        assert res[run]["answered"] == res[run]["correct"] == 12
    assert res["concurrent"]["calls"] > 12  # injected faults did cost retries or re-asks
    assert res["concurrent"]["retries"] + res["concurrent"]["answer_retries"] > 0
    assert res["cached_rerun"]["server_requests"] == 0
    assert res["cached_rerun"]["cache_hits"] == 12
    assert res["max_in_flight"] <= 3
    assert main(argv) == 2  # an existing --json is not overwritten silently
