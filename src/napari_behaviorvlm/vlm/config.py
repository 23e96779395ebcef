"""Settings of an OpenAI-compatible vision-language-model endpoint.

The API key itself is never part of the configuration: only the *name* of the environment
variable that holds it (``api_key_env``). A :class:`VLMConfig` can therefore be stored in a
project file, printed or logged without leaking a secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

__all__ = ["VLMConfig"]


def _positive(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"VLMConfig.{attribute.name} must be > 0, got {value!r}")


def _non_negative(instance: Any, attribute: attrs.Attribute, value: float) -> None:
    if value is not None and value < 0:
        raise ValueError(f"VLMConfig.{attribute.name} must be >= 0, got {value!r}")


def _check_url(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value.startswith(("http://", "https://")):
        raise ValueError(
            f"VLMConfig.base_url must start with http:// or https://, got {value!r} "
            "(e.g. https://api.openai.com/v1 or http://localhost:11434/v1 for Ollama)"
        )


def _check_model(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value.strip():
        raise ValueError("VLMConfig.model is empty: name the model the server should use "
                         "(e.g. gpt-4o-mini, Qwen/Qwen2.5-VL-7B-Instruct, llava)")


def _check_env_name(instance: Any, attribute: attrs.Attribute, value: str) -> None:
    if not value or not value.replace("_", "a").isalnum() or value[0].isdigit():
        raise ValueError(
            f"VLMConfig.api_key_env must be the NAME of an environment variable (e.g. "
            f"OPENAI_API_KEY), not {value[:4] + '...' if len(value) > 4 else value!r}; "
            "the key itself is read from the environment and never stored."
        )


def _optional_path(value: Any) -> Path | None:
    return None if value is None or value == "" else Path(value).expanduser()


@attrs.define(frozen=True)
class VLMConfig:
    """Where and how to ask a vision-language model.

    Attributes:
        base_url: OpenAI-compatible API root, ending in ``/v1`` for most servers
            (``https://api.openai.com/v1``, ``http://localhost:8000/v1`` for vLLM,
            ``http://localhost:11434/v1`` for Ollama, ``http://localhost:1234/v1`` for LM Studio,
            ``http://localhost:8080/v1`` for llama.cpp server).
        model: Model name as the server knows it.
        api_key_env: NAME of the environment variable holding the key (never the key).
        timeout_s: Per-request timeout in seconds.
        max_retries: Retries after a 429, 408/409, 5xx, timeout or connection error.
        backoff_base_s: First backoff delay in seconds; doubles each retry, with jitter
            (x0.5-1.5), capped at ``backoff_max_s``. A server's ``Retry-After`` wins when given.
        backoff_max_s: Upper bound of one backoff delay (and of an honoured Retry-After).
        concurrency: Requests in flight at once in :meth:`VLMClient.ask_many`.
        answer_retries: How many times a malformed or invalid answer is asked again (with the
            error fed back) before :class:`VLMAnswerError`.
        cache_dir: Folder of the content-addressed answer cache; ``None`` disables caching.
        temperature: Sampling temperature (0: as deterministic as the server allows).
        max_tokens: Upper bound of completion tokens per answer (``None``: server default).
        image_detail: OpenAI's image ``detail`` (``"low"``: 85 tokens per image whatever its size,
            enough for small crops; ``"high"``; ``"auto"``), or ``None`` to send none.
        price_per_1k_input: Price per 1000 prompt tokens (any currency) for cost estimates.
        price_per_1k_output: Price per 1000 completion tokens.
    """

    base_url: str = attrs.field(validator=_check_url)
    model: str = attrs.field(validator=_check_model)
    api_key_env: str = attrs.field(default="OPENAI_API_KEY", validator=_check_env_name)
    timeout_s: float = attrs.field(default=60.0, converter=float, validator=_positive)
    max_retries: int = attrs.field(default=4, converter=int, validator=_non_negative)
    backoff_base_s: float = attrs.field(default=0.5, converter=float, validator=_non_negative)
    backoff_max_s: float = attrs.field(default=30.0, converter=float, validator=_non_negative)
    concurrency: int = attrs.field(default=4, converter=int, validator=_positive)
    answer_retries: int = attrs.field(default=2, converter=int, validator=_non_negative)
    cache_dir: Path | None = attrs.field(default=None, converter=_optional_path)
    temperature: float = attrs.field(default=0.0, converter=float, validator=_non_negative)
    max_tokens: int | None = attrs.field(default=1024, validator=_positive)
    image_detail: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(
            attrs.validators.in_(("low", "high", "auto"))))
    price_per_1k_input: float | None = attrs.field(default=None, validator=_non_negative)
    price_per_1k_output: float | None = attrs.field(default=None, validator=_non_negative)

    def to_settings(self) -> dict[str, Any]:
        """JSON-serialisable settings (safe to store in a project: holds no key)."""
        out = attrs.asdict(self)
        out["cache_dir"] = None if self.cache_dir is None else str(self.cache_dir)
        return out

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> VLMConfig:
        """Inverse of :meth:`to_settings`.

        Raises:
            ValueError: an unknown setting name (a typo, or a key pasted where a variable name
                belongs) or an invalid value.
        """
        known = {field.name for field in attrs.fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(
                f"unknown VLM settings {unknown}; known settings: {sorted(known)}"
            )
        return cls(**settings)
