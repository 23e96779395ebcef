"""Fixtures for the VLM layer: a fake API key and configs pointing at the test double server.

Every test talks real HTTP on 127.0.0.1 through the ``openai`` package to
:class:`TestDoubleChatServer`, a test double (not a model).
"""

from __future__ import annotations

import pytest

from napari_behaviorvlm.vlm import VLMConfig

FAKE_KEY = "sk-test-FAKE-9f3c1b7e2d"
KEY_ENV = "BEHAVIORVLM_TEST_KEY"


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """Put a fake key in ``BEHAVIORVLM_TEST_KEY`` and return it."""
    monkeypatch.setenv(KEY_ENV, FAKE_KEY)
    return FAKE_KEY


@pytest.fixture
def key_env() -> str:
    """Name of the variable that holds the fake key in these tests."""
    return KEY_ENV


@pytest.fixture
def make_config(api_key: str, tmp_path):
    """``make_config(server, **overrides)``: a fast config for ``server`` with a cache dir."""

    def make(server, **overrides) -> VLMConfig:
        settings = dict(base_url=server.base_url, model="test-double-model",
                        api_key_env=KEY_ENV, timeout_s=5.0, max_retries=3,
                        backoff_base_s=0.001, backoff_max_s=0.05, concurrency=2,
                        answer_retries=2, cache_dir=tmp_path / "cache")
        settings.update(overrides)
        return VLMConfig(**settings)

    return make
