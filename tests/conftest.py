"""Shared test fixtures.

Real third-party data lives in ``../shared/datasets`` beside the repository (never copied into
it); tests that need it use the ``shared_datasets`` fixture, which skips cleanly when absent.
Set ``BEHAVIORVLM_DATASETS`` to point elsewhere.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_datasets_path() -> Path:
    env = os.environ.get("BEHAVIORVLM_DATASETS")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """Path of ``../shared/datasets``; skips the test when it is absent."""
    path = shared_datasets_path()
    if not path.is_dir():
        pytest.skip(f"shared datasets not found at {path}")
    return path


@pytest.fixture
def interrupt_labeling():
    """A context manager, ``with interrupt_labeling(after=N):``, in which every labeling run
    stops with Ctrl-C (``KeyboardInterrupt``) at its N-th finished-frame callback."""
    from napari_behaviorvlm.pose import pipeline

    @contextlib.contextmanager
    def patched(after: int) -> Iterator[None]:
        real = pipeline.run_labeling

        def run(project, *args, on_frame_done=None, **kwargs):
            count = [0]

            def done(frame: int) -> None:
                if on_frame_done is not None:
                    on_frame_done(frame)
                count[0] += 1
                if count[0] == after:
                    raise KeyboardInterrupt

            return real(project, *args, on_frame_done=done, **kwargs)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(pipeline, "run_labeling", run)
            yield

    return patched
