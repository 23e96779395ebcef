"""VLMConfig settings, cost estimates, prompt files and the answer parser."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from napari_behaviorvlm.vlm import (
    FewShotExample,
    VLMConfig,
    approx_tokens,
    available_prompts,
    build_messages,
    estimate_cost,
    load_prompt,
    parse_json_answer,
)


def test_config_settings_roundtrip_without_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-never-be-stored")
    config = VLMConfig(base_url="http://localhost:11434/v1", model="llava",
                       cache_dir="~/vlm-cache", price_per_1k_input=0.15)
    settings = config.to_settings()
    text = json.dumps(settings)
    assert "sk-should-never-be-stored" not in text
    assert settings["api_key_env"] == "OPENAI_API_KEY"
    assert VLMConfig.from_settings(json.loads(text)) == config
    assert config.cache_dir == Path("~/vlm-cache").expanduser()


@pytest.mark.parametrize("overrides, match", [
    ({"base_url": "localhost:8000"}, "http://"),
    ({"model": " "}, "model is empty"),
    ({"api_key_env": "sk-abc123xyz"}, "NAME of an environment variable"),
    ({"concurrency": 0}, "concurrency must be > 0"),
    ({"max_retries": -1}, "max_retries must be >= 0"),
])
def test_config_rejects_bad_values(overrides, match):
    settings = dict(base_url="http://127.0.0.1:8000/v1", model="m")
    settings.update(overrides)
    with pytest.raises(ValueError, match=match) as info:
        VLMConfig(**settings)
    assert "sk-abc123xyz" not in str(info.value)  # a pasted key is not echoed back


def test_from_settings_rejects_unknown_names():
    with pytest.raises(ValueError, match=r"unknown VLM settings \['api_key'\]"):
        VLMConfig.from_settings({"base_url": "http://x/v1", "model": "m", "api_key": "sk-1"})


def test_estimate_cost():
    config = VLMConfig(base_url="http://x/v1", model="m", price_per_1k_input=0.5,
                       price_per_1k_output=2.0)
    estimate = estimate_cost(100, 1200, 50, config)
    assert (estimate.calls, estimate.prompt_tokens, estimate.completion_tokens) == (
        100, 120_000, 5000)
    assert estimate.cost == pytest.approx(120 * 0.5 + 5 * 2.0)
    assert "100 calls" in str(estimate)
    free = estimate_cost(3, 10, 10, VLMConfig(base_url="http://x/v1", model="m"))
    assert free.cost is None and "no prices" in str(free)
    with pytest.raises(ValueError):
        estimate_cost(-1, 1, 1, config)


def test_approx_tokens_counts_text_and_image_tiles():
    import numpy as np

    from napari_behaviorvlm.vlm import VLMRequest

    text_only = approx_tokens(build_messages(VLMRequest(system="a" * 400, user="b" * 40)))
    assert text_only == 2 * 4 + 100 + 10
    small = VLMRequest(system="", user="", images=[np.zeros((100, 100, 3), np.uint8)])
    large = VLMRequest(system="", user="", images=[np.zeros((1024, 1024, 3), np.uint8)])
    assert approx_tokens(build_messages(small)) == 8 + 85 + 170
    assert approx_tokens(build_messages(large)) == 8 + 85 + 170 * 4  # 768x768 -> 2x2 tiles


def test_every_shipped_prompt_loads_with_a_valid_schema():
    names = available_prompts()
    assert {"pose_assign_v1", "caption_clip_v1", "merge_segments_v1"} <= set(names)
    for name in names:
        prompt = load_prompt(name)
        assert prompt.version == name and prompt.system and prompt.user
        jsonschema.Draft202012Validator.check_schema(prompt.schema)
        assert "$" not in prompt.render(**{p: "X" for p in prompt.placeholders})[0]


def test_load_prompt_by_name_gives_latest_version_and_unknown_is_clear():
    assert load_prompt("caption_clip").version == "caption_clip_v1"
    with pytest.raises(FileNotFoundError, match="available prompts"):
        load_prompt("nonexistent_v9")


def test_prompt_request_fills_placeholders_and_checks_them():
    prompt = load_prompt("pose_assign_v1")
    values = dict(frame=12, camera="cam3", region="ears", keypoints="left_ear, right_ear",
                  candidates="0, 1, 2")
    request = prompt.request(values, tag=(12, "cam3", "ears"),
                             examples=[FewShotExample(user="ex", answer={"assignments": []})])
    assert "Frame 12, camera cam3" in request.user and 'region "ears"' in request.user
    assert request.prompt_version == "pose_assign_v1" and request.schema == prompt.schema
    assert request.schema_name == "pose_assign"
    with pytest.raises(ValueError, match=r"missing values \['region'\]"):
        prompt.render(**{k: v for k, v in values.items() if k != "region"})
    with pytest.raises(ValueError, match=r"unknown values \['regoin'\]"):
        prompt.render(**values, regoin="x")


@pytest.mark.parametrize("text, expected", [
    ('{"a": 1}', {"a": 1}),
    ('```json\n{"a": 1}\n```', {"a": 1}),
    ("  [1, 2] ", [1, 2]),
])
def test_parse_json_answer(text, expected):
    assert parse_json_answer(text) == expected


@pytest.mark.parametrize("text", ['{"a": 1', "Sure! {\"a\": 1}", ""])
def test_parse_json_answer_rejects_non_json(text):
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json_answer(text)


def test_docs_show_every_prompt_and_schema_verbatim():
    from importlib import resources

    docs = (Path(__file__).resolve().parents[2] / "docs" / "vlm.md").read_text(encoding="utf-8")
    folder = resources.files("napari_behaviorvlm.vlm").joinpath("prompts")
    for version in available_prompts():
        text = folder.joinpath(f"{version}.txt").read_text(encoding="utf-8").rstrip()
        schema = folder.joinpath(f"{version}.schema.json").read_text(encoding="utf-8").rstrip()
        assert f"### `{version}`" in docs and text in docs and schema in docs, (
            f"docs/vlm.md is out of date for prompt {version}: include it verbatim")
