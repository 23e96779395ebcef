"""Shared test fixtures.

Real third-party data lives in ``../shared/datasets`` beside the repository (never copied into
it); tests that need it use the ``shared_datasets`` fixture, which skips cleanly when absent.
Set ``BEHAVIORVLM_DATASETS`` to point elsewhere.
"""

from __future__ import annotations

import os
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
