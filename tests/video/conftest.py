"""Fixtures: small generated test-pattern videos (``pattern_index(frame i) == i``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_behaviorvlm.video.writer import write_pattern_video


@pytest.fixture
def make_video(tmp_path: Path):
    """``make_video(name, n_frames=40, gray=False, **write_video_kwargs) -> Path`` under tmp_path
    (64x48 px, 30 fps, GOP 12 with 2 B-frames unless overridden)."""

    def make(name: str, n_frames: int = 40, gray: bool = False, **kwargs) -> Path:
        kwargs.setdefault("gop", 12)
        kwargs.setdefault("b_frames", 2)
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_pattern_video(path, n_frames, gray=gray, **kwargs)

    return make
