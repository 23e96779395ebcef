import numpy as np
import pytest

from napari_behaviorvlm.behavior.overseg import OversegConfig, oversegment


def _steps(levels, n_each, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.full((n_each, 2), lv, dtype=float) for lv in levels])
    return x + rng.normal(0, noise, x.shape)


@pytest.mark.parametrize("method", ["kmeans", "changepoint"])
def test_clips_tile_and_find_the_changes(method):
    x = _steps([0, 3, 0, 6], 50)[:, None, :]
    clips = oversegment(x, 25.0, ["m"], OversegConfig(method=method, n_clusters=4, max_clip_s=10))
    assert clips[0].start == 0 and clips[-1].end == 199
    assert all(b.start == a.end + 1 for a, b in zip(clips, clips[1:]))
    starts = {c.start for c in clips}
    for true in (50, 100, 150):
        assert min(abs(s - true) for s in starts) <= 3


def test_clip_lengths_bounded():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 1, 3))  # noise: k-means would give tiny runs
    cfg = OversegConfig(n_clusters=10, min_clip_s=0.4, max_clip_s=2.0, smooth_s=0.0)
    clips = oversegment(x, 25.0, ["m"], cfg)
    lengths = [c.n_frames for c in clips]
    assert min(lengths) >= 10 and max(lengths) <= 50
    assert sum(lengths) == 500


def test_per_animal_and_nan_robust():
    x = _steps([0, 4], 60)
    x[10:20, 0] = np.nan
    both = np.stack([x, x[::-1]], axis=1)
    clips = oversegment(both, 25.0, ["a", "b"], OversegConfig(n_clusters=3))
    assert {c.subject for c in clips} == {"a", "b"}
    for s in ("a", "b"):
        mine = [c for c in clips if c.subject == s]
        assert sum(c.n_frames for c in mine) == 120
    with pytest.raises(ValueError, match="animals"):
        oversegment(both, 25.0, ["a"])


def test_deterministic():
    x = _steps([0, 2, 5, 1], 40, noise=0.5)[:, None, :]
    a = oversegment(x, 25.0, ["m"], OversegConfig(seed=3))
    b = oversegment(x, 25.0, ["m"], OversegConfig(seed=3))
    assert a == b
