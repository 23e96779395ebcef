"""A TEST DOUBLE of an OpenAI-compatible chat server, for tests and benchmarks.

:class:`TestDoubleChatServer` is **not a model**. It speaks the OpenAI HTTP protocol on
127.0.0.1 and answers every ``POST /v1/chat/completions`` through a Python ``responder``
callback written by the test (e.g. one that answers from the simulator's ground truth with
injected errors). Whatever accuracy a pipeline reaches against it measures the pipeline's
handling of the injected errors, never a vision-language model's accuracy.

It exercises the real client path end to end (``openai`` package, HTTP, JSON, retries) and can
inject faults: the first N calls failing with 429 (with ``Retry-After``) or 5xx, a delay to
trigger client timeouts, malformed JSON content at a rate or for the first N answers, a refusal
of every call (401/400/...), and a 400 for ``response_format`` ``json_schema`` (a server without
structured output). It records the requests it received and the most requests it had in flight.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .client import REASK_PREFIX
from .messages import approx_tokens, decode_data_url

__all__ = ["TestDoubleChatServer", "request_images", "request_text"]

Responder = Callable[[dict[str, Any]], "str | dict[str, Any]"]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content or () if p.get("type") == "text")


def _questions(request_json: dict[str, Any]) -> list[dict[str, Any]]:
    """User turns that are not the client's re-ask feedback."""
    return [m for m in request_json.get("messages", []) if m.get("role") == "user"
            and not _text(m.get("content")).startswith(REASK_PREFIX)]


def request_text(request_json: dict[str, Any]) -> str:
    """Text of the question of a recorded chat-completion request: the last user turn that
    is not the client's re-ask feedback (so a re-asked question reads the same)."""
    questions = _questions(request_json)
    return _text(questions[-1].get("content")) if questions else ""


def request_images(request_json: dict[str, Any], last_user_only: bool = True) -> list:
    """Images (``uint8`` arrays, RGB) sent as data URLs in a recorded request.

    Args:
        request_json: The request body.
        last_user_only: Only the question's images (not the few-shot examples'); re-ask
            feedback turns are skipped.
    """
    messages = _questions(request_json)
    if last_user_only:
        messages = messages[-1:]
    images = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            images.extend(decode_data_url(part["image_url"]["url"]) for part in content
                          if part.get("type") == "image_url")
    return images


class TestDoubleChatServer:
    """TEST DOUBLE of an OpenAI-compatible endpoint (not a model; see the module docstring).

    Use as a context manager; ``base_url`` is ``http://127.0.0.1:<free port>/v1``.

    Args:
        responder: ``responder(request_json) -> str | dict``: the assistant message content
            (a dict is sent as JSON text). An exception in it becomes an HTTP 500 and is kept
            in :attr:`responder_errors`.
        model: Model id listed by ``GET /v1/models``.
        fail_first: The first ``fail_first`` chat requests fail with ``fail_status``.
        fail_status: Status of those failures (429 or 5xx).
        retry_after_s: ``Retry-After`` header (seconds) sent with those failures, if not None.
        fail_rate: Probability that a later chat request fails with ``fail_status`` (seeded).
        delay_s: Sleep before answering each chat request (to trigger client timeouts).
        malformed_first: The first N answers (after failures) are malformed JSON.
        malformed_rate: Probability that a later answer is malformed JSON (seeded by ``seed``).
        truncated_first: The first N answers are cut in half with ``finish_reason`` "length"
            (as when ``max_tokens`` is too small).
        refuse_status: When set (401, 400, 403...), every chat request is refused with it.
        reject_json_schema: Answer 400 to ``response_format`` ``{"type": "json_schema"}``.
        reject_params: Answer 400, with OpenAI's wording, to requests holding these parameters:
            ``"max_tokens"`` (use ``max_completion_tokens``) and/or ``"temperature"`` (only the
            default is supported), as newer OpenAI models do.
        seed: Seed of the random failure and malformed-answer draws. Each draw is fixed by the
            seed, the request's content and how many times the same content came before, not
            by the arrival order: concurrent clients meet the same faults on every run.

    Attributes:
        requests: Bodies of the chat requests received (in arrival order), failures included.
        headers: Their HTTP headers (lower-case names), same order.
        max_in_flight: Most chat requests handled at the same time.
        responder_errors: Exceptions raised by ``responder``.
    """

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, responder: Responder, *, model: str = "test-double-model",
                 fail_first: int = 0, fail_status: int = 429, retry_after_s: float | None = None,
                 fail_rate: float = 0.0,
                 delay_s: float = 0.0, malformed_first: int = 0, malformed_rate: float = 0.0,
                 truncated_first: int = 0,
                 refuse_status: int | None = None, reject_json_schema: bool = False,
                 reject_params: tuple[str, ...] = (),
                 seed: int = 0) -> None:
        self.responder = responder
        self.model = model
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after_s = retry_after_s
        self.fail_rate = fail_rate
        self.delay_s = delay_s
        self.malformed_first = malformed_first
        self.malformed_rate = malformed_rate
        self.truncated_first = truncated_first
        self.refuse_status = refuse_status
        self.reject_json_schema = reject_json_schema
        self.reject_params = tuple(reject_params)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.max_in_flight = 0
        self.responder_errors: list[BaseException] = []
        self.seed = seed
        self._draws: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._answered = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> TestDoubleChatServer:
        """Start serving on 127.0.0.1 on a free port (in a daemon thread)."""
        handler = type("_Handler", (_Handler,), {"double": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        name="test-double-chat-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> TestDoubleChatServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        if self._httpd is None:
            raise RuntimeError("TestDoubleChatServer is not running: use it as a context manager")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    @property
    def request_count(self) -> int:
        """Chat requests received so far (failed ones included)."""
        with self._lock:
            return len(self.requests)

    # -- request handling (called by the handler threads) -------------------------------------

    def _chat(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict, dict]:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            index = len(self.requests) - 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            if self.delay_s:
                time.sleep(self.delay_s)
            return self._answer(body, index)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _draw(self, kind: str, body: dict[str, Any]) -> float:
        """A uniform draw in [0, 1) for the fault ``kind`` of the request ``body``, fixed by the
        seed, the body and how many times this body was drawn for ``kind`` before (called with
        the lock held)."""
        content = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        nth = self._draws[(kind, content)]
        self._draws[(kind, content)] += 1
        digest = hashlib.sha256(f"{self.seed}:{kind}:{content}:{nth}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2.0 ** 64

    def _answer(self, body: dict[str, Any], index: int) -> tuple[int, dict, dict]:
        if self.refuse_status is not None:
            return self.refuse_status, {}, _error(self.refuse_status, "refused by the test double")
        with self._lock:
            fail = index < self.fail_first or (
                self.fail_rate > 0 and self._draw("fail", body) < self.fail_rate)
        if fail:
            extra = {} if self.retry_after_s is None else {"Retry-After": str(self.retry_after_s)}
            return self.fail_status, extra, _error(self.fail_status, "injected failure")
        if "max_tokens" in self.reject_params and "max_tokens" in body:
            return 400, {}, _error(400, "Unsupported parameter: 'max_tokens' is not supported "
                                        "with this model. Use 'max_completion_tokens' instead.")
        if "temperature" in self.reject_params and "temperature" in body:
            return 400, {}, _error(400, "Unsupported value: 'temperature' does not support "
                                        f"{body['temperature']} with this model. Only the "
                                        "default (1) value is supported.")
        response_format = body.get("response_format") or {}
        if self.reject_json_schema and response_format.get("type") == "json_schema":
            return 400, {}, _error(400, "response_format type json_schema is not supported")
        try:
            content = self.responder(body)
        except Exception as exc:  # noqa: BLE001 - reported to the client as a server error
            with self._lock:
                self.responder_errors.append(exc)
            return 500, {}, _error(500, f"test double responder failed: {exc!r}")
        if not isinstance(content, str):
            content = json.dumps(content)
        with self._lock:
            answered = self._answered
            self._answered += 1
            malformed = answered < self.malformed_first or (
                self.malformed_rate > 0 and self._draw("malformed", body) < self.malformed_rate)
        finish_reason = "stop"
        if answered < self.truncated_first:
            content, finish_reason = content[: max(1, len(content) // 2)], "length"
        elif malformed:
            content = content[: max(1, len(content) // 2)] + ' "oops'
        completion = {
            "id": f"chatcmpl-testdouble-{index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": approx_tokens(body.get("messages", [])),
                      "completion_tokens": (len(content) + 3) // 4,
                      "total_tokens": 0},
        }
        usage = completion["usage"]
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return 200, {}, completion


def _error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "test_double_error", "code": status}}


class _Handler(BaseHTTPRequestHandler):
    double: TestDoubleChatServer
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # headers and body leave in one write: no Nagle/delayed-ACK stall

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # silence per-request logging
        pass

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
              ) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        try:
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # client gave up (timeout)
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [
                {"id": self.double.model, "object": "model", "owned_by": "test-double"}]})
        else:
            self._send(404, _error(404, f"no route {self.path}"))

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, _error(404, f"no route {self.path}"))
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._send(400, _error(400, "request body is not JSON"))
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, extra, payload = self.double._chat(body, headers)
        self._send(status, payload, extra)
