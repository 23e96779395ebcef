"""The VLM path end to end over real HTTP against a TEST DOUBLE server (not a model).

The responder below answers captions from the scripted truth and merges by grouping equal
labels; what it returns measures the pipeline's plumbing, never a model's accuracy.
"""

import numpy as np
import pytest

from napari_behaviorvlm.behavior.pipeline import (
    SegmentationConfig,
    SegmentationInputs,
    segment_inputs,
)
from napari_behaviorvlm.behavior.vlm_backend import sample_frames
from napari_behaviorvlm.vlm import VLMConfig
from napari_behaviorvlm.vlm.testing import TestDoubleChatServer, request_images

FPS = 25.0
KEY_ENV = "BVLM_BEHAVIOR_TEST_DOUBLE_KEY"


@pytest.fixture
def vlm_inputs(scripted, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "test-double-key")
    pts, truth, names = scripted
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (len(truth), 24, 40), dtype=np.uint8)
    inputs = SegmentationInputs(n_frames=len(truth), fps=FPS, individuals=["mouse0"],
                                points=pts, keypoint_names=names,
                                frames=lambda f: [images[f], images[f]])
    return inputs, truth


def _config(server, tmp_path, **kw):
    vlm = VLMConfig(base_url=server.base_url, model="test-double-model", api_key_env=KEY_ENV,
                    cache_dir=tmp_path / "cache", backoff_base_s=0.01, concurrency=2)
    return SegmentationConfig(backend="vlm", vlm=vlm, cameras=(0, 1), max_frames_per_clip=8, **kw)


def test_sample_frames_about_10_fps():
    frames = sample_frames(0, 49, fps=25, sample_fps=10, max_frames=100)
    assert frames[0] == 0 and 19 <= len(frames) <= 21
    assert len(sample_frames(0, 249, 25, 10, max_frames=16)) == 16
    for end in range(170, 180):  # never past the clip's last frame
        assert max(sample_frames(160, end, 25, 10, 100)) <= end


def test_vlm_backend_end_to_end_and_cache(vlm_inputs, tmp_path, make_test_double_responder):
    inputs, truth = vlm_inputs
    with TestDoubleChatServer(make_test_double_responder(truth)) as server:
        result = segment_inputs(inputs, _config(server, tmp_path))
        n_clips = len(result.clips)
        assert server.request_count == n_clips + 1  # one caption per clip + one merge
        first = server.requests[0]
        imgs = request_images(first)
        assert 2 <= len(imgs) <= 16 and len(imgs) % 2 == 0  # two cameras per time point
        assert result.stats["flagged"] == 0 and result.stats["merge_fallbacks"] == 0
        pred = result.segments.frame_labels(len(truth), "mouse0")
        assert np.mean(pred == truth) > 0.8
        assert all(s.source == "model" and s.score == pytest.approx(0.9) for s in result.segments)
        # a rerun is answered from the cache: no new request
        again = segment_inputs(inputs, _config(server, tmp_path))
        assert server.request_count == n_clips + 1
        assert again.stats["usage"]["calls"] == 0
        assert again.segments.equals(result.segments)


def test_malformed_answers_retried_and_invalid_flagged(vlm_inputs, tmp_path,
                                                    make_test_double_responder):
    inputs, truth = vlm_inputs
    probe = segment_inputs(inputs, SegmentationConfig())  # same clips as the VLM run
    bad = probe.clips[1].start
    responder = make_test_double_responder(truth, bad_label_clip_start=bad)
    with TestDoubleChatServer(responder, malformed_first=2) as server:
        result = segment_inputs(inputs, _config(server, tmp_path))
    assert result.stats["usage"]["answer_retries"] >= 2
    assert result.stats["flagged"] == 1
    assert f"frames {bad}-" in result.stats["errors"][0]
    flagged = [c for c in result.captions if c.description.startswith("[flagged")]
    assert len(flagged) == 1 and flagged[0].confidence == 0.0
