"""VLMClient end to end over real HTTP (openai package) against the test double server."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time

import numpy as np
import openai
import pytest

from napari_behaviorvlm.vlm import (
    FewShotExample,
    MissingAPIKeyError,
    VLMAnswerError,
    VLMCancelledError,
    VLMClient,
    VLMConfig,
    VLMRequest,
    VLMRequestError,
    approx_tokens,
    build_messages,
    encode_image,
)
from napari_behaviorvlm.vlm.testing import TestDoubleChatServer, request_images, request_text

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string"}, "n": {"type": "integer", "minimum": 0}},
    "required": ["label", "n"],
    "additionalProperties": False,
}


def echo_responder(request_json):
    """Answers {"label": "echo:<user text>", "n": <number of images in the question>}."""
    return {"label": "echo:" + request_text(request_json),
            "n": len(request_images(request_json))}


def ask(user="hello", **kwargs) -> VLMRequest:
    return VLMRequest(system="You answer in JSON.", user=user, schema=SCHEMA,
                      prompt_version="test_v1", **kwargs)


def test_json_answer_parsed_validated_and_sent_with_schema(make_config, api_key):
    seen = []

    def validate(obj):
        seen.append(obj)
        return obj["label"].upper()

    with TestDoubleChatServer(echo_responder) as server, \
            VLMClient(make_config(server)) as client:
        answer = client.ask_json(ask("walk", validate=validate, tag=("frame", 7)))
        assert answer.value == "ECHO:WALK"
        assert answer.data == {"label": "echo:walk", "n": 0}
        assert seen == [answer.data]
        assert answer.tag == ("frame", 7) and not answer.from_cache and answer.calls == 1
        body = server.requests[0]
        assert body["model"] == "test-double-model"
        assert body["temperature"] == 0
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["schema"] == SCHEMA
        assert server.headers[0]["authorization"] == f"Bearer {api_key}"
        # token accounting follows what the server reported
        assert client.usage.prompt_tokens == approx_tokens(body["messages"]) > 0
        assert client.usage.completion_tokens == answer.completion_tokens > 0
        assert client.usage.calls == 1 and client.usage.requests == 1


def test_invalid_answer_is_asked_again_with_the_error_fed_back(make_config):
    answers = iter([{"label": "run", "n": 0}, {"label": "walk", "n": 0}])

    def validate(obj):
        if obj["label"] not in ("walk", "rest"):
            raise ValueError(f"label {obj['label']!r} is not one of walk, rest")
        return obj

    with TestDoubleChatServer(lambda r: next(answers)) as server, \
            VLMClient(make_config(server)) as client:
        answer = client.ask_json(ask(validate=validate))
        assert answer.value["label"] == "walk" and answer.calls == 2
        second = server.requests[1]["messages"]
        assert second[-2] == {"role": "assistant", "content": json.dumps({"label": "run", "n": 0})}
        assert "'run' is not one of walk, rest" in second[-1]["content"]
        assert client.usage.answer_retries == 1 and client.usage.failures == 0


def test_malformed_json_is_retried_then_succeeds(make_config):
    with TestDoubleChatServer(echo_responder, malformed_first=1) as server, \
            VLMClient(make_config(server)) as client:
        answer = client.ask_json(ask("x"))
        assert answer.data["label"] == "echo:x"
        assert server.request_count == 2
        assert "not valid JSON" in server.requests[1]["messages"][-1]["content"]


def test_always_malformed_ends_in_answer_error_and_is_not_cached(make_config, tmp_path):
    with TestDoubleChatServer(echo_responder, malformed_first=100) as server, \
            VLMClient(make_config(server, answer_retries=2)) as client:
        with pytest.raises(VLMAnswerError, match="no valid answer after 3 attempts") as info:
            client.ask_json(ask(tag="t1"))
        assert server.request_count == 3
        assert "not valid JSON" in info.value.reason and info.value.content
        assert info.value.tag == "t1"
        assert client.usage.failures == 1 and client.usage.answer_retries == 2
        assert not list((tmp_path / "cache").rglob("*.json"))


def test_schema_violation_is_rejected_with_its_location(make_config):
    with TestDoubleChatServer(lambda r: {"label": "walk", "n": -3}) as server, \
            VLMClient(make_config(server, answer_retries=1)) as client:
        with pytest.raises(VLMAnswerError) as info:
            client.ask_json(ask())
        assert "schema at n" in info.value.reason
        assert server.request_count == 2


def test_429_then_success_honours_retry_after(make_config):
    with TestDoubleChatServer(echo_responder, fail_first=2, retry_after_s=0.15) as server, \
            VLMClient(make_config(server, backoff_max_s=1.0)) as client:
        start = time.monotonic()
        answer = client.ask_json(ask("a"))
        elapsed = time.monotonic() - start
        assert answer.data["label"] == "echo:a"
        assert server.request_count == 3 and answer.calls == 3
        assert client.usage.retries == 2 and client.usage.calls == 3
        assert elapsed >= 0.3  # two Retry-After waits of 0.15 s, not the 1 ms backoff


def test_backoff_is_capped_by_backoff_max(make_config):
    with TestDoubleChatServer(echo_responder, fail_first=1, retry_after_s=30) as server, \
            VLMClient(make_config(server, backoff_max_s=0.05)) as client:
        start = time.monotonic()
        client.ask_json(ask())
        assert time.monotonic() - start < 5


def test_500_exhausting_retries_raises_clear_error(make_config):
    with TestDoubleChatServer(echo_responder, fail_first=100, fail_status=500) as server, \
            VLMClient(make_config(server, max_retries=2)) as client:
        with pytest.raises(VLMRequestError, match="HTTP 500.*after 3 attempts") as info:
            client.ask_json(ask())
        assert info.value.status == 500
        assert server.request_count == 3
        assert client.usage.retries == 2 and client.usage.failures == 1


def test_timeout_is_retried_then_reported(make_config):
    with TestDoubleChatServer(echo_responder, delay_s=0.6) as server, \
            VLMClient(make_config(server, timeout_s=0.15, max_retries=1)) as client:
        with pytest.raises(VLMRequestError, match="timeout after 0.15s.*after 2 attempts") as info:
            client.ask_json(ask())
        assert info.value.status is None
        assert server.request_count == 2


@pytest.mark.parametrize("status, words", [(401, "refused the API key in BEHAVIORVLM_TEST_KEY"),
                                           (403, "not allowed"),
                                           (404, "GET /v1/models")])
def test_refusal_fails_immediately_with_a_hint(make_config, api_key, status, words):
    with TestDoubleChatServer(echo_responder, refuse_status=status) as server, \
            VLMClient(make_config(server)) as client:
        with pytest.raises(VLMRequestError, match=f"HTTP {status}") as info:
            client.ask_json(ask())
        assert words in str(info.value)
        assert info.value.status == status
        assert server.request_count == 1 and client.usage.retries == 0
        assert api_key not in str(info.value)


def test_server_without_json_schema_falls_back_to_json_mode(make_config):
    with TestDoubleChatServer(echo_responder, reject_json_schema=True) as server, \
            VLMClient(make_config(server)) as client:
        assert client.ask_json(ask("one")).data["label"] == "echo:one"
        assert server.request_count == 2
        fallback = server.requests[1]
        assert fallback["response_format"] == {"type": "json_object"}
        assert json.dumps(SCHEMA) in fallback["messages"][0]["content"]
        client.ask_json(ask("two"))  # the client remembers: no second rejected call
        assert server.request_count == 3


def test_missing_api_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("MY_VLM_KEY", raising=False)
    config = VLMConfig(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="MY_VLM_KEY")
    with pytest.raises(MissingAPIKeyError, match="set the environment variable MY_VLM_KEY"):
        VLMClient(config)
    monkeypatch.setenv("MY_VLM_KEY", "")
    with pytest.raises(MissingAPIKeyError, match="any value"):
        VLMClient(config)


def test_cache_hit_costs_no_call_and_survives_a_new_client(make_config, tmp_path):
    with TestDoubleChatServer(echo_responder) as server:
        config = make_config(server)
        with VLMClient(config) as client:
            first = client.ask_json(ask("cached"))
            assert client.is_cached(ask("cached")) and not client.is_cached(ask("other"))
        with VLMClient(config) as fresh:
            again = fresh.ask_json(ask("cached"))
            assert server.request_count == 1
            assert again.from_cache and again.calls == 0 and again.data == first.data
            assert again.prompt_tokens == first.prompt_tokens
            assert fresh.usage.cache_hits == 1 and fresh.usage.calls == 0
            # another prompt version, model or image is another question
            fresh.ask_json(VLMRequest(system="You answer in JSON.", user="cached",
                                      schema=SCHEMA, prompt_version="test_v2"))
            fresh.ask_json(ask("cached", images=[np.zeros((4, 4), np.uint8)]))
            assert server.request_count == 3
        with VLMClient(make_config(server, model="another-model")) as other:
            other.ask_json(ask("cached"))
            assert server.request_count == 4
        files = list((tmp_path / "cache").rglob("*.json"))
        assert len(files) == len(other.cache) == 4
        assert all(f.parent.name == f.stem[:2] for f in files)


def test_corrupt_cache_entry_is_ignored_and_rewritten(make_config):
    with TestDoubleChatServer(echo_responder) as server, \
            VLMClient(make_config(server)) as client:
        client.ask_json(ask())
        path = client.cache.path(client.key_of(ask()))
        path.write_text('{"key": "trunc', encoding="utf-8")
        answer = client.ask_json(ask())
        assert not answer.from_cache and server.request_count == 2
        assert json.loads(path.read_text())["answer"] == answer.data
        assert client.ask_json(ask()).from_cache


def test_cached_answer_that_no_longer_validates_is_asked_again(make_config):
    with TestDoubleChatServer(echo_responder) as server, \
            VLMClient(make_config(server)) as client:
        client.ask_json(ask())

        def stricter(obj):
            raise ValueError("new rule")

        with pytest.raises(VLMAnswerError):
            client.ask_json(ask(validate=stricter))
        assert server.request_count == 1 + 3


def test_ask_many_respects_concurrency_and_keeps_order(make_config):
    done, threads = [], set()

    def on_result(index, result):
        done.append(index)
        threads.add(threading.current_thread())

    with TestDoubleChatServer(echo_responder, delay_s=0.15) as server, \
            VLMClient(make_config(server, concurrency=3)) as client:
        requests = [ask(f"q{i}") for i in range(9)]
        results = client.ask_many(requests, on_result=on_result)
        assert [r.data["label"] for r in results] == [f"echo:q{i}" for i in range(9)]
        assert server.max_in_flight == 3  # never more than the limit, and it was used
        assert sorted(done) == list(range(9))
        assert threads == {threading.current_thread()}  # progress callbacks in the caller


def test_ask_many_returns_errors_as_values(make_config):
    def validate(obj):
        if obj["label"] == "echo:bad":
            raise ValueError("bad answer")
        return obj

    with TestDoubleChatServer(echo_responder) as server, \
            VLMClient(make_config(server, answer_retries=0)) as client:
        results = client.ask_many([ask(u, validate=validate, tag=u) for u in ("a", "bad", "c")])
        assert results[0].data["label"] == "echo:a" and results[2].data["label"] == "echo:c"
        assert isinstance(results[1], VLMAnswerError) and results[1].tag == "bad"
        assert client.usage.failures == 1 and server.request_count == 3


def test_ask_many_stops_when_asked(make_config):
    stop = threading.Event()
    with TestDoubleChatServer(echo_responder) as server, \
            VLMClient(make_config(server, concurrency=1)) as client:
        results = client.ask_many([ask(f"q{i}") for i in range(6)],
                                  on_result=lambda i, r: stop.set(), should_stop=stop.is_set)
        cancelled = [r for r in results if isinstance(r, VLMCancelledError)]
        assert server.request_count <= 2 and len(cancelled) == 6 - server.request_count
        assert not isinstance(results[0], VLMCancelledError)


def test_images_and_examples_arrive_as_data_urls(make_config):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    example_image = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    png = base64.b64decode(encode_image(gray).split(",", 1)[1])
    request = ask("look", images=[rgb, png], examples=[
        FewShotExample(user="example", images=[example_image], answer={"label": "x", "n": 1})])
    with TestDoubleChatServer(echo_responder) as server, \
            VLMClient(make_config(server)) as client:
        answer = client.ask_json(request)
        assert answer.data == {"label": "echo:look", "n": 2}
        body = server.requests[0]
        roles = [m["role"] for m in body["messages"]]
        assert roles == ["system", "user", "assistant", "user"]
        parts = body["messages"][-1]["content"]
        assert [p["type"] for p in parts] == ["text", "image_url", "image_url"]
        assert all(p["image_url"]["url"].startswith("data:image/png;base64,") for p in parts[1:])
        sent = request_images(body)
        np.testing.assert_array_equal(sent[0], rgb)
        np.testing.assert_array_equal(sent[1], gray)
        np.testing.assert_array_equal(request_images(body, last_user_only=False)[0],
                                      example_image)
        assert json.loads(body["messages"][2]["content"]) == {"label": "x", "n": 1}


def test_bad_images_are_refused_before_sending():
    with pytest.raises(ValueError, match="uint8"):
        build_messages(ask(images=[np.zeros((4, 4), np.float32)]))
    with pytest.raises(ValueError, match="neither PNG nor JPEG"):
        build_messages(ask(images=[b"GIF89a..."]))
    with pytest.raises(ValueError, match="shape"):
        build_messages(ask(images=[np.zeros((4, 4, 2), np.uint8)]))


def test_key_never_in_cache_repr_errors_or_logs(make_config, api_key, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    image = np.full((8, 8, 3), 200, np.uint8)
    data_url = encode_image(image)
    with TestDoubleChatServer(echo_responder, fail_first=1, malformed_first=1) as server:
        config = make_config(server)
        with VLMClient(config) as client:
            client.ask_json(ask(images=[image]))
            texts = [repr(client), repr(config), json.dumps(config.to_settings()),
                     repr(ask(images=[image])), repr(client.usage)]
        server.refuse_status = 401
        with VLMClient(make_config(server, cache_dir=None)) as client:
            with pytest.raises(VLMRequestError) as info:
                client.ask_json(ask("refused"))
            texts.append(str(info.value))
    for text in texts:
        assert api_key not in text
    cache_bytes = b"".join(p.read_bytes() for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert cache_bytes and api_key.encode() not in cache_bytes
    assert api_key not in caplog.text
    ours = "\n".join(r.getMessage() for r in caplog.records
                     if r.name.startswith("napari_behaviorvlm"))
    assert "retry" in ours  # our logs did say something about the run ...
    assert data_url.split(",", 1)[1][:40] not in ours  # ... without image data


def test_models_endpoint_lists_the_test_double_model(api_key):
    with TestDoubleChatServer(echo_responder, model="double-1") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key=api_key, max_retries=0)
        assert [m.id for m in client.models.list()] == ["double-1"]


def test_responder_failure_is_a_500_and_recorded(make_config):
    def broken(request_json):
        raise KeyError("frame")

    with TestDoubleChatServer(broken) as server, \
            VLMClient(make_config(server, max_retries=0)) as client:
        with pytest.raises(VLMRequestError, match="HTTP 500"):
            client.ask_json(ask())
        assert isinstance(server.responder_errors[0], KeyError)


def test_cli_vlm_check_against_the_test_double(api_key, key_env, capsys):
    from napari_behaviorvlm.cli import main

    with TestDoubleChatServer(lambda r: {"ok": True, "animal": "mouse"},
                              reject_json_schema=True) as server:
        argv = ["vlm", "check", "--base-url", server.base_url, "--model", "test-double-model",
                "--api-key-env", key_env]
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert "test-double-model is listed" in out and "'animal': 'mouse'" in out
        assert "structured output: json_object" in out and api_key not in out
        server.refuse_status = 401
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "HTTP 401" in err and key_env in err and "Traceback" not in err


def test_estimate_before_a_run_counts_only_uncached_requests(make_config):
    requests = [ask(f"q{i}", images=[np.zeros((64, 64, 3), np.uint8)]) for i in range(4)]
    with TestDoubleChatServer(echo_responder) as server, \
            VLMClient(make_config(server, price_per_1k_input=1.0,
                                  price_per_1k_output=2.0)) as client:
        before = client.estimate(requests, est_completion_tokens=10)
        assert (before.requests, before.cached, before.completion_tokens) == (4, 0, 40)
        client.ask_many(requests[:3])
        # the estimate matches what the server then counted for the same messages
        assert before.prompt_tokens == pytest.approx(4 / 3 * client.usage.prompt_tokens)
        after = client.estimate(requests, est_completion_tokens=10)
        assert (after.requests, after.cached) == (1, 3)
        assert after.cost == pytest.approx((after.prompt_tokens + 2 * 10) / 1000)
        assert server.request_count == 3


def test_answer_cut_at_max_tokens_is_asked_again(make_config):
    with TestDoubleChatServer(echo_responder, truncated_first=1) as server, \
            VLMClient(make_config(server)) as client:
        assert client.ask_json(ask("long")).data["label"] == "echo:long"
        assert server.request_count == 2
        assert "cut off at max_tokens" in server.requests[1]["messages"][-1]["content"]


def test_image_detail_low_is_sent_and_counted(make_config):
    image = np.zeros((1024, 1024, 3), np.uint8)
    with TestDoubleChatServer(echo_responder) as server, \
            VLMClient(make_config(server, image_detail="low")) as client:
        client.ask_json(ask(images=[image]))
        part = server.requests[0]["messages"][-1]["content"][1]
        assert part["image_url"]["detail"] == "low"
        text_only = approx_tokens(build_messages(ask()))
        assert client.usage.prompt_tokens == text_only + 85


def test_cancel_interrupts_a_long_retry_after(make_config):
    stop = threading.Event()
    with TestDoubleChatServer(echo_responder, fail_first=100, retry_after_s=30) as server, \
            VLMClient(make_config(server, backoff_max_s=60)) as client:
        threading.Timer(0.3, stop.set).start()
        start = time.monotonic()
        with pytest.raises(VLMCancelledError):
            client.ask_json(ask(), should_stop=stop.is_set)
        assert time.monotonic() - start < 5
        assert server.request_count == 1 and client.usage.failures == 0


def test_client_adapts_to_models_refusing_max_tokens_and_temperature(make_config):
    with TestDoubleChatServer(echo_responder,
                              reject_params=("max_tokens", "temperature")) as server, \
            VLMClient(make_config(server, max_tokens=300)) as client:
        assert client.ask_json(ask("a")).data["label"] == "echo:a"
        assert server.request_count == 3
        last = server.requests[-1]
        assert last["max_completion_tokens"] == 300 and "max_tokens" not in last
        assert "temperature" not in last
        client.ask_json(ask("b"))  # remembered: one call
        assert server.request_count == 4 and client.usage.calls == 4


def test_unrelated_400_is_not_mistaken_for_a_parameter_problem(make_config):
    with TestDoubleChatServer(echo_responder, refuse_status=400) as server, \
            VLMClient(make_config(server)) as client:
        with pytest.raises(VLMRequestError, match="HTTP 400.*accepts images"):
            client.ask_json(ask())
        assert server.request_count == 1 and client.format_mode == "json_schema"
