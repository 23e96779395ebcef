"""Ask an OpenAI-compatible chat endpoint for JSON answers, safely and economically.

:class:`VLMClient` wraps ``openai.OpenAI`` (its own retries off) and adds:

- a retry loop on 429, 408, 409, 5xx, timeouts and connection errors with exponential backoff
  and jitter that honours ``Retry-After`` (counted in :attr:`VLMClient.usage`);
- immediate, clear :class:`VLMRequestError` on other refusals (400, 401, 403, 404, ...);
- structured output: ``response_format={"type": "json_schema", ...}``, falling back to JSON mode
  and then to plain instructions when a server rejects it (remembered per client);
- strict checking of every answer (it is untrusted input): JSON parse, JSON schema, then the
  caller's ``validate``; a bad answer is asked again with the error fed back, and after
  ``answer_retries`` re-asks :class:`VLMAnswerError` says so (callers flag, never trust);
- a content-addressed on-disk cache (:mod:`.cache`): a rerun costs no calls;
- :meth:`VLMClient.ask_many`: many requests with at most ``concurrency`` in flight, in order;
- accounting of calls, cache hits, retries, failures and tokens, and :func:`estimate_cost`.

The API key is read from the environment variable named by ``VLMConfig.api_key_env`` and only
handed to ``openai``; it is never logged, cached or shown in a repr or an error message.
Logs never contain image data.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

import attrs
import jsonschema
import openai

from .cache import AnswerCache, cache_key
from .config import VLMConfig
from .messages import VLMRequest, approx_tokens, build_messages

__all__ = [
    "CostEstimate",
    "MissingAPIKeyError",
    "VLMAnswer",
    "VLMAnswerError",
    "VLMCancelledError",
    "VLMClient",
    "VLMError",
    "VLMRequestError",
    "VLMUsage",
    "REASK_PREFIX",
    "estimate_cost",
    "parse_json_answer",
]

log = logging.getLogger(__name__)

REASK_PREFIX = "Your previous answer was rejected:"
"""Start of the user turn that feeds a rejected answer's error back to the model."""

_RETRY_STATUS = frozenset({408, 409, 429})
_FORMAT_MODES = ("json_schema", "json_object", "instructions")
_STATUS_HINTS = {
    400: "the server rejected the request; check that the model accepts images and JSON output",
    401: "the server refused the API key in ${env}: check the key (local servers that ignore "
         "keys accept any value)",
    403: "the key in ${env} is not allowed to use this model or endpoint",
    404: "model or URL not found: base_url usually ends in /v1 and the model name must be one "
         "the server lists at GET /v1/models",
    413: "the request is too large: send fewer or smaller images",
    422: "the server could not process the request; check the model supports this input",
}


class VLMError(Exception):
    """Base of every error of this module. ``tag`` is the failing request's tag, if any."""

    tag: Any = None


class MissingAPIKeyError(VLMError, ValueError):
    """The environment variable that should hold the API key is unset or empty."""


class VLMRequestError(VLMError, ConnectionError):
    """The endpoint refused the request or could not be reached after all retries.

    A ``ConnectionError`` (``OSError``), so the command line prints it without a traceback.

    Attributes:
        status: HTTP status of the last response, ``None`` for timeouts/connection errors.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class VLMAnswerError(VLMError, ValueError):
    """The model's answers stayed malformed or invalid after every re-ask (a ``ValueError``).

    Attributes:
        reason: Why the last answer was rejected.
        content: The last answer text (truncated to 2000 characters), for inspection.
    """

    def __init__(self, message: str, reason: str, content: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.content = content[:2000]


class VLMCancelledError(VLMError):
    """The request was not sent because the run was cancelled (``should_stop``)."""


class _InvalidAnswer(Exception):
    pass


class _Adapted(Exception):
    """The server rejected a request parameter and the client changed how it asks."""


@attrs.define
class VLMUsage:
    """What a client has spent so far (all counters are cumulative).

    Attributes:
        requests: ``ask_json`` invocations (cache hits included).
        calls: HTTP chat-completion requests sent (retries and re-asks included).
        cache_hits: Requests answered from the cache (no call).
        retries: Transport retries (429, 5xx, timeouts, connection errors).
        answer_retries: Re-asks because an answer was malformed or invalid.
        failures: Requests that ended in an error.
        prompt_tokens: Prompt tokens as reported by the server (estimated when it reports none).
        completion_tokens: Completion tokens, likewise.
        seconds: Summed wall time of requests (overlapping requests each count).
    """

    requests: int = 0
    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    answer_retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define(frozen=True)
class VLMAnswer:
    """A validated answer.

    Attributes:
        value: What ``request.validate`` returned (the parsed JSON when there is no validator).
        data: The parsed JSON answer (what is cached).
        from_cache: ``True`` when no call was made.
        prompt_tokens: Prompt tokens of the calls that produced it (also when cached: the
            original cost).
        completion_tokens: Completion tokens likewise.
        calls: HTTP calls this request made now (0 on a cache hit).
        key: Cache key of the request.
        tag: The request's tag.
    """

    value: Any
    data: Any
    from_cache: bool
    prompt_tokens: int
    completion_tokens: int
    calls: int
    key: str
    tag: Any = None


@attrs.define(frozen=True)
class CostEstimate:
    """Expected spend of a run before it starts.

    Attributes:
        requests: Requests to send (cache hits excluded).
        calls: Expected HTTP calls (= requests; retries come on top).
        prompt_tokens, completion_tokens: Expected tokens.
        cost: Money in the unit of the configured prices, ``None`` without prices.
        cached: Requests that the cache answers for free (not in the figures above).
    """

    requests: int
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    cached: int = 0

    def __str__(self) -> str:
        money = "no prices configured" if self.cost is None else f"~{self.cost:.4f}"
        cached = f" ({self.cached} more answered by the cache)" if self.cached else ""
        return (f"{self.calls} calls{cached}, ~{self.prompt_tokens} prompt + "
                f"~{self.completion_tokens} completion tokens, cost {money}")


def estimate_cost(n_requests: int, est_prompt_tokens: int, est_completion_tokens: int,
                  config: VLMConfig) -> CostEstimate:
    """Cost of ``n_requests`` requests of about the given token sizes each.

    Use :func:`approx_tokens` on one request's ``build_messages`` for ``est_prompt_tokens``, and
    subtract requests already cached (:meth:`VLMClient.is_cached`) from ``n_requests``.
    """
    if n_requests < 0 or est_prompt_tokens < 0 or est_completion_tokens < 0:
        raise ValueError("estimate_cost needs non-negative counts")
    prompt = n_requests * est_prompt_tokens
    completion = n_requests * est_completion_tokens
    return CostEstimate(n_requests, n_requests, prompt, completion,
                        _price(prompt, completion, config))


def _price(prompt_tokens: int, completion_tokens: int, config: VLMConfig) -> float | None:
    if config.price_per_1k_input is None and config.price_per_1k_output is None:
        return None
    return (prompt_tokens * (config.price_per_1k_input or 0.0)
            + completion_tokens * (config.price_per_1k_output or 0.0)) / 1000.0


def parse_json_answer(content: str) -> Any:
    """Parse a model's answer text as JSON, tolerating only surrounding Markdown code fences.

    Raises:
        ValueError: the text is not JSON (the message says where parsing failed).
    """
    text = content.strip()
    if text.startswith("```"):
        first_newline = text.find("\n")
        text = text[first_newline + 1:] if first_newline >= 0 else ""
        if text.rstrip().endswith("```"):
            text = text.rstrip()[:-3]
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the answer is not valid JSON ({exc.msg} at line {exc.lineno} "
                         f"column {exc.colno})") from None


def _retry_after_s(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


class VLMClient:
    """JSON answers from an OpenAI-compatible chat endpoint (see the module docstring).

    Thread-safe: :meth:`ask_json` may be called from several threads; :meth:`ask_many` does so.

    Raises:
        MissingAPIKeyError: the variable ``config.api_key_env`` is unset or empty.
    """

    def __init__(self, config: VLMConfig) -> None:
        key = os.environ.get(config.api_key_env, "")
        if not key:
            raise MissingAPIKeyError(
                f"no API key: set the environment variable {config.api_key_env} "
                f"(e.g. `export {config.api_key_env}=...`). For a local server that ignores "
                "keys (Ollama, vLLM or llama.cpp without --api-key, LM Studio) set it to any "
                "value, e.g. `local`."
            )
        self.config = config
        self._openai = openai.OpenAI(base_url=config.base_url, api_key=key,
                                     timeout=config.timeout_s, max_retries=0)
        self.cache = AnswerCache(config.cache_dir) if config.cache_dir is not None else None
        self.usage = VLMUsage()
        self._lock = threading.Lock()
        self._local = threading.local()
        self._format_mode = _FORMAT_MODES[0]
        self._token_param = "max_tokens"
        self._send_temperature = True

    def __repr__(self) -> str:
        return (f"VLMClient(base_url={self.config.base_url!r}, model={self.config.model!r}, "
                f"api_key_env={self.config.api_key_env!r}, cache_dir={self.config.cache_dir!r})")

    def close(self) -> None:
        """Close the HTTP connections."""
        self._openai.close()

    def __enter__(self) -> VLMClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- public API ------------------------------------------------------------------------

    @property
    def format_mode(self) -> str:
        """How answers are constrained now: ``"json_schema"`` (structured output),
        ``"json_object"`` (JSON mode) or ``"instructions"`` (schema in the system prompt);
        downgraded once when the server rejects a ``response_format``."""
        return self._format_mode

    def list_models(self) -> list[str]:
        """Model ids the server lists at ``GET /models`` (one call, with the retry policy).

        Raises:
            VLMRequestError: refused or unreachable.
        """
        page, _ = self._retrying(lambda: self._openai.models.list())
        return [model.id for model in page]

    def key_of(self, request: VLMRequest) -> str:
        """Cache key of ``request`` (see :func:`.cache.cache_key`)."""
        return self._key(request, build_messages(request, self.config.image_detail))

    def is_cached(self, request: VLMRequest) -> bool:
        """Whether ``request`` would be answered from the cache (for cost estimates)."""
        return self.cache is not None and self.cache.get(self.key_of(request)) is not None

    def estimate(self, requests: Iterable[VLMRequest],
                 est_completion_tokens: int = 100) -> CostEstimate:
        """Cost of asking ``requests`` now: cached ones are free, the others are counted with
        :func:`approx_tokens` of their messages and ``est_completion_tokens`` each."""
        to_send = cached = prompt_tokens = 0
        for request in requests:
            messages = build_messages(request, self.config.image_detail)
            key = self._key(request, messages)
            if self.cache is not None and self.cache.get(key) is not None:
                cached += 1
                continue
            to_send += 1
            prompt_tokens += approx_tokens(messages)
        per_request = prompt_tokens // to_send if to_send else 0
        estimate = estimate_cost(to_send, per_request, est_completion_tokens, self.config)
        return attrs.evolve(estimate, prompt_tokens=prompt_tokens, cached=cached,
                            cost=_price(prompt_tokens, estimate.completion_tokens, self.config))

    def ask_json(self, request: VLMRequest,
                 should_stop: Callable[[], bool] | None = None) -> VLMAnswer:
        """Ask one question; return the validated answer.

        Args:
            request: The question.
            should_stop: Polled while waiting to retry; once it returns ``True`` the request
                gives up with :class:`VLMCancelledError` (a long ``Retry-After`` does not
                hold up a cancel).

        Raises:
            VLMRequestError: refused (non-retryable status) or retries exhausted.
            VLMAnswerError: the answers stayed malformed/invalid after every re-ask.
            VLMCancelledError: ``should_stop`` said so.
        """
        start = time.monotonic()
        self._count(requests=1)
        self._local.should_stop = should_stop
        try:
            return self._ask(request)
        except VLMError as exc:
            exc.tag = request.tag
            if not isinstance(exc, VLMCancelledError):
                self._count(failures=1)
            raise
        finally:
            self._local.should_stop = None
            self._count(seconds=time.monotonic() - start)

    def ask_many(self, requests: Iterable[VLMRequest],
                 on_result: Callable[[int, VLMAnswer | VLMError], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> list[VLMAnswer | VLMError]:
        """Ask many questions with at most ``config.concurrency`` in flight.

        Args:
            requests: The questions.
            on_result: Called in the calling thread as ``on_result(index, result)`` when each one
                finishes (in completion order), e.g. to advance a progress bar.
            should_stop: Polled before each request is sent; once it returns ``True`` the
                remaining requests are not sent and come back as :class:`VLMCancelledError`.

        Returns:
            One result per request, in the order of ``requests``: a :class:`VLMAnswer` or the
            :class:`VLMError` that request ended with (errors are values here, never raised).
        """
        requests = list(requests)
        results: list[VLMAnswer | VLMError | None] = [None] * len(requests)

        def run(request: VLMRequest) -> VLMAnswer | VLMError:
            if should_stop is not None and should_stop():
                error = VLMCancelledError("cancelled before sending")
                error.tag = request.tag
                return error
            try:
                return self.ask_json(request, should_stop)
            except VLMError as exc:
                return exc

        if not requests:
            return []
        pool = ThreadPoolExecutor(max_workers=min(self.config.concurrency, len(requests)),
                                  thread_name_prefix="vlm")
        try:
            futures = {pool.submit(run, request): index for index, request in enumerate(requests)}
            for future in as_completed(futures):
                index = futures[future]
                results[index] = future.result()
                if on_result is not None:
                    on_result(index, results[index])
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return results  # type: ignore[return-value]

    # -- internals -------------------------------------------------------------------------

    def _count(self, **increments: float) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self.usage, name, getattr(self.usage, name) + value)

    def _key(self, request: VLMRequest, messages: list[dict[str, Any]]) -> str:
        return cache_key(model=self.config.model, messages=messages, schema=request.schema,
                         prompt_version=request.prompt_version,
                         temperature=self.config.temperature, max_tokens=self.config.max_tokens)

    def _ask(self, request: VLMRequest) -> VLMAnswer:
        messages = build_messages(request, self.config.image_detail)
        key = self._key(request, messages)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                try:
                    value = self._check(hit.answer, request)
                except _InvalidAnswer as exc:
                    log.warning("cached answer %s no longer validates (%s); asking again",
                                key[:12], exc)
                else:
                    self._count(cache_hits=1)
                    return VLMAnswer(value, hit.answer, True, hit.prompt_tokens,
                                     hit.completion_tokens, 0, key, request.tag)

        conversation = list(messages)
        calls = prompt_tokens = completion_tokens = 0
        for attempt in range(self.config.answer_retries + 1):
            content, finish, used_prompt, used_completion, n_calls = self._complete(
                conversation, request)
            calls += n_calls
            prompt_tokens += used_prompt
            completion_tokens += used_completion
            try:
                if finish == "length":
                    raise _InvalidAnswer("the answer was cut off at max_tokens; answer shorter")
                data = self._parse(content)
                value = self._check(data, request)
            except _InvalidAnswer as exc:
                reason = str(exc)
                if attempt == self.config.answer_retries:
                    raise VLMAnswerError(
                        f"no valid answer after {attempt + 1} attempts "
                        f"(prompt {request.prompt_version or 'unversioned'}): {reason}",
                        reason, content) from None
                log.info("invalid answer (%s); asking again (%d/%d)", reason, attempt + 1,
                         self.config.answer_retries)
                self._count(answer_retries=1)
                conversation += [
                    {"role": "assistant", "content": content},
                    {"role": "user", "content": (
                        f"{REASK_PREFIX} {reason}. Reply again with only "
                        "one JSON object that follows the instructions and the schema.")},
                ]
                continue
            if self.cache is not None:
                self.cache.put(key, data, model=self.config.model,
                               prompt_version=request.prompt_version,
                               prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
            return VLMAnswer(value, data, False, prompt_tokens, completion_tokens, calls, key,
                             request.tag)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _parse(content: str) -> Any:
        try:
            return parse_json_answer(content)
        except ValueError as exc:
            raise _InvalidAnswer(str(exc)) from None

    @staticmethod
    def _check(data: Any, request: VLMRequest) -> Any:
        if request.schema is not None:
            validator = jsonschema.Draft202012Validator(request.schema)
            error = jsonschema.exceptions.best_match(validator.iter_errors(data))
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
                raise _InvalidAnswer(f"the answer does not match the schema at {where}: "
                                     f"{error.message[:300]}")
        if request.validate is None:
            return data
        try:
            return request.validate(data)
        except Exception as exc:  # noqa: BLE001 - any failure of untrusted input is a rejection
            raise _InvalidAnswer(f"{type(exc).__name__}: {str(exc)[:300]}") from None

    def _body(self, conversation: list[dict[str, Any]], request: VLMRequest) -> dict[str, Any]:
        mode = self._format_mode
        if request.schema is None and mode == "json_schema":
            mode = "json_object"
        messages = conversation
        if mode != "json_schema":
            instruction = "\n\nReply with only one JSON object: no prose, no code fences."
            if request.schema is not None:
                instruction += " It must match this JSON schema:\n" + json.dumps(request.schema)
            messages = [dict(conversation[0], content=conversation[0]["content"] + instruction),
                        *conversation[1:]]
        body: dict[str, Any] = {"model": self.config.model, "messages": messages}
        if self._send_temperature:
            body["temperature"] = self.config.temperature
        if self.config.max_tokens is not None:
            body[self._token_param] = self.config.max_tokens
        if mode == "json_schema":
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": request.schema_name, "schema": request.schema, "strict": False}}
        elif mode == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    def _adapt(self, message: str, body: dict[str, Any]) -> bool:
        """Change how this client asks after the server rejected a parameter of ``body``
        (HTTP 400/422 saying ``message``); ``False`` when nothing applies.

        - ``max_tokens`` refused in favour of ``max_completion_tokens`` (newer OpenAI models);
        - a ``temperature`` value refused (models that only accept their default): not sent;
        - ``response_format`` refused: json_schema -> json_object -> schema in the instructions.
        """
        lowered = message.lower()
        with self._lock:
            if "max_completion_tokens" in lowered and "max_tokens" in body:
                self._token_param = "max_completion_tokens"
                change = "sending max_completion_tokens instead of max_tokens"
            elif "temperature" in lowered and "temperature" in body:
                self._send_temperature = False
                change = "not sending temperature (the model's default applies)"
            elif "response_format" in body and any(
                    word in lowered for word in ("response_format", "json", "schema")):
                mode = body["response_format"]["type"]
                if self._format_mode == mode:
                    self._format_mode = _FORMAT_MODES[_FORMAT_MODES.index(mode) + 1]
                change = f"using {self._format_mode} instead of response_format {mode}"
            else:
                return False
        log.warning("server rejected a request parameter (%s); %s", message[:200], change)
        return True

    def _complete(self, conversation: list[dict[str, Any]],
                  request: VLMRequest) -> tuple[str, str | None, int, int, int]:
        """One answer text: ``(content, finish_reason, prompt_tokens, completion_tokens, calls)``."""
        calls = 0
        while True:
            body = self._body(conversation, request)
            try:
                response, n_calls = self._create(body)
                calls += n_calls
                break
            except _Adapted as exc:
                calls += int(exc.args[0])
        content, finish = "", None
        choices = getattr(response, "choices", None)
        if choices:  # a body without choices is an empty (invalid) answer, asked again
            content = getattr(choices[0].message, "content", None) or ""
            finish = choices[0].finish_reason
        usage = getattr(response, "usage", None)
        if usage is not None and usage.prompt_tokens is not None:
            prompt_tokens, completion_tokens = usage.prompt_tokens, usage.completion_tokens or 0
        else:
            prompt_tokens = approx_tokens(body["messages"])
            completion_tokens = (len(content) + 3) // 4
        self._count(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        return content, finish, prompt_tokens, completion_tokens, calls

    def _create(self, body: dict[str, Any]) -> tuple[Any, int]:
        """POST a chat completion with retries; returns ``(ChatCompletion, calls made)``."""
        return self._retrying(lambda: self._openai.chat.completions.create(**body), body)

    def _retrying(self, send: Callable[[], Any],
                  body: dict[str, Any] | None = None) -> tuple[Any, int]:
        """``send()`` with the retry policy; returns ``(its result, calls made)``.

        Raises:
            _Adapted: the server refused a parameter of ``body`` and :meth:`_adapt` changed
                how to ask (args: calls made).
        """
        attempts = self.config.max_retries + 1
        for attempt in range(attempts):
            self._count(calls=1)
            try:
                return send(), attempt + 1
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status not in _RETRY_STATUS and status < 500:
                    message = self._server_message(exc)
                    if status in (400, 422) and body is not None and self._adapt(message, body):
                        raise _Adapted(attempt + 1) from None
                    hint = _STATUS_HINTS.get(status, "the server refused the request")
                    hint = hint.replace("${env}", self.config.api_key_env)
                    raise VLMRequestError(
                        f"HTTP {status} from {self.config.base_url} (model "
                        f"{self.config.model}): {hint}. Server said: {message}",
                        status) from None
                problem, retry_after = f"HTTP {status}", _retry_after_s(exc)
            except openai.APITimeoutError:
                status, problem, retry_after = None, f"timeout after {self.config.timeout_s}s", None
            except openai.APIConnectionError as exc:
                status, problem, retry_after = None, f"connection error ({exc})", None
            if attempt == attempts - 1:
                raise VLMRequestError(
                    f"{problem} from {self.config.base_url} (model {self.config.model}) after "
                    f"{attempts} attempts; is the server up and not overloaded? Raise "
                    "max_retries/timeout_s or lower concurrency.", status)
            delay = (retry_after if retry_after is not None else
                     self.config.backoff_base_s * 2 ** attempt * random.uniform(0.5, 1.5))
            delay = min(delay, self.config.backoff_max_s)
            log.info("%s; retry %d/%d in %.2f s", problem, attempt + 1, attempts - 1, delay)
            self._count(retries=1)
            self._wait(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds, polling the current request's ``should_stop``."""
        should_stop = getattr(self._local, "should_stop", None)
        end = time.monotonic() + delay
        while True:
            if should_stop is not None and should_stop():
                raise VLMCancelledError("cancelled while waiting to retry")
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.05))

    def _server_message(self, exc: openai.APIStatusError) -> str:
        body = exc.body
        if isinstance(body, dict):
            message = body.get("message") or body.get("error") or body
            if isinstance(message, dict):
                message = message.get("message", message)
        else:
            message = exc.message
        text = str(message)[:300]
        key = self._openai.api_key
        return text.replace(key, "***") if key else text
