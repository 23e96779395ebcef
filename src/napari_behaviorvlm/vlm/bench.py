"""``behaviorvlm bench vlm``: the client's robustness, concurrency and cache, measured end to
end over HTTP against :class:`~napari_behaviorvlm.vlm.testing.TestDoubleChatServer`.

The server is a TEST DOUBLE with a fixed latency and injected faults (429s, malformed JSON); the
figures measure the client (retries, re-asks, concurrency, cache), never a model.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import numpy as np

from napari_behaviorvlm.vlm.client import VLMAnswer, VLMClient
from napari_behaviorvlm.vlm.config import VLMConfig
from napari_behaviorvlm.vlm.messages import VLMRequest
from napari_behaviorvlm.vlm.testing import TestDoubleChatServer, request_text

__all__ = ["bench_vlm"]

_KEY_ENV = "BEHAVIORVLM_TEST_DOUBLE_KEY"
_SCHEMA = {
    "type": "object",
    "properties": {"index": {"type": "integer"}, "label": {"type": "string"}},
    "required": ["index", "label"],
    "additionalProperties": False,
}


def _responder(body: dict[str, Any]) -> dict[str, Any]:
    index = int(request_text(body).rsplit(" ", 1)[1])
    return {"index": index, "label": "rear" if index % 3 == 0 else "walk"}


def _requests(n: int, image_px: int, seed: int) -> list[VLMRequest]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image = rng.integers(0, 256, (image_px, image_px, 3), dtype=np.uint8)

        def validate(obj: dict[str, Any], i: int = i) -> dict[str, Any]:
            if obj["index"] != i:
                raise ValueError(f"answer is about item {obj['index']}, expected {i}")
            return obj

        out.append(VLMRequest(system="Label the clip.", user=f"clip {i}", images=[image],
                              schema=_SCHEMA, validate=validate, prompt_version="bench_v1",
                              tag=i))
    return out


def _run(config: VLMConfig, requests: list[VLMRequest]) -> dict[str, Any]:
    with VLMClient(config) as client:
        start = time.perf_counter()
        results = client.ask_many(requests)
        wall = time.perf_counter() - start
        ok = [r for r in results if isinstance(r, VLMAnswer)]
        correct = sum(r.value["index"] == r.tag for r in ok)
        return {"wall_s": wall, "answered": len(ok), "correct": correct,
                "requests_per_s": len(requests) / wall, **client.usage.as_dict()}


def bench_vlm(n_requests: int = 100, latency_s: float = 0.05, concurrency: int = 4,
              fail_rate: float = 0.1, malformed_rate: float = 0.1, image_px: int = 96,
              seed: int = 0) -> dict[str, Any]:
    """Measure the client against the test double.

    Runs the same ``n_requests`` (each with one ``image_px`` square RGB image) three times: with
    one request in flight (baseline), with ``concurrency`` in flight, and again with the cache
    filled by the second run. The test double sleeps ``latency_s`` per request, fails a share
    ``fail_rate`` of calls with 429 (``Retry-After: 0``) and garbles ``malformed_rate`` of the
    answers.

    Returns:
        ``{"config": ..., "sequential": ..., "concurrent": ..., "cached_rerun": ...,
        "speedup_concurrent": float}``; each run holds wall time, answered/correct counts and the
        client's usage counters.
    """
    os.environ.setdefault(_KEY_ENV, "test-double")  # the test double ignores keys
    requests = _requests(n_requests, image_px, seed)
    report: dict[str, Any] = {"config": {
        "requests": n_requests, "latency_s": latency_s, "concurrency": concurrency,
        "fail_rate": fail_rate, "malformed_rate": malformed_rate, "image_px": image_px,
        "seed": seed, "server": "TestDoubleChatServer (test double, not a model)"}}
    with TestDoubleChatServer(_responder, delay_s=latency_s, fail_rate=fail_rate,
                              retry_after_s=0, malformed_rate=malformed_rate,
                              seed=seed) as server, \
            tempfile.TemporaryDirectory(prefix="bvlm-bench-cache-") as cache:
        base = dict(base_url=server.base_url, model="test-double-model", api_key_env=_KEY_ENV,
                    max_retries=6, answer_retries=3, backoff_base_s=0.01, backoff_max_s=0.5)
        report["sequential"] = _run(VLMConfig(**base, concurrency=1), requests)
        config = VLMConfig(**base, concurrency=concurrency, cache_dir=cache)
        report["concurrent"] = _run(config, requests)
        calls_before = server.request_count
        report["cached_rerun"] = _run(config, requests)
        report["cached_rerun"]["server_requests"] = server.request_count - calls_before
        report["max_in_flight"] = server.max_in_flight
    report["speedup_concurrent"] = (report["sequential"]["wall_s"]
                                    / report["concurrent"]["wall_s"])
    return report
