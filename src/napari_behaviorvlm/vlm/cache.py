"""Content-addressed on-disk cache of validated model answers.

Key: SHA-256 of the canonical JSON of (model, messages including every image byte as base64,
answer schema, prompt version, temperature, max_tokens). The same question to the same model
is never paid for twice: a rerun or a resumed run reads the answers back. The server URL is not
part of the key (the same model behind another server gives the same kind of answer); the API
key never is.

Layout: ``<cache_dir>/<key[:2]>/<key>.json``, one file per answer holding
``{"key", "model", "prompt_version", "answer", "prompt_tokens", "completion_tokens",
"created"}``, written atomically. A file that cannot be read or does not match its key is
ignored (a miss) and rewritten by the next successful answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import attrs

from napari_behaviorvlm.core.atomic import atomic_write_text

__all__ = ["AnswerCache", "CachedAnswer", "cache_key"]

log = logging.getLogger(__name__)

CACHE_FORMAT = 1


def cache_key(*, model: str, messages: list[dict[str, Any]], schema: dict[str, Any] | None,
              prompt_version: str, temperature: float, max_tokens: int | None) -> str:
    """Hex SHA-256 identifying one question (see the module docstring for what it covers)."""
    payload = {
        "format": CACHE_FORMAT,
        "model": model,
        "messages": messages,
        "schema": schema,
        "prompt_version": prompt_version,
        "temperature": temperature,
        "max_tokens": max_tokens,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(blob.encode("ascii")).hexdigest()


@attrs.define(frozen=True)
class CachedAnswer:
    """A stored answer: the parsed JSON that passed validation, and what it cost."""

    answer: Any
    prompt_tokens: int
    completion_tokens: int


@attrs.define
class AnswerCache:
    """Answers by key under ``root`` (see the module docstring for the layout)."""

    root: Path = attrs.field(converter=Path)

    def path(self, key: str) -> Path:
        """File of ``key``: ``root/<key[:2]>/<key>.json``."""
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedAnswer | None:
        """The stored answer of ``key``, or ``None`` when absent or unreadable (corrupt)."""
        path = self.path(key)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if record["key"] != key or record.get("format") != CACHE_FORMAT:
                raise ValueError("key or format mismatch")
            return CachedAnswer(record["answer"], int(record["prompt_tokens"]),
                                int(record["completion_tokens"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable VLM cache entry %s (%s); it will be rewritten",
                        path, exc)
            return None

    def put(self, key: str, answer: Any, *, model: str, prompt_version: str,
            prompt_tokens: int, completion_tokens: int) -> Path:
        """Store a validated answer atomically; returns the file path."""
        record = {
            "format": CACHE_FORMAT,
            "key": key,
            "model": model,
            "prompt_version": prompt_version,
            "answer": answer,
            "prompt_tokens": int(prompt_tokens),
            "completion_tokens": int(completion_tokens),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        path = self.path(key)
        atomic_write_text(path, json.dumps(record, sort_keys=True, indent=1) + "\n")
        return path

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("??/*.json")) if self.root.is_dir() else 0
