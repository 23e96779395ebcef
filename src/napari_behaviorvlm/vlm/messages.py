"""What is asked: :class:`VLMRequest` and its translation to OpenAI chat ``messages``.

Images travel as base64 ``data:`` URLs in OpenAI vision ``image_url`` content parts, so any
OpenAI-compatible server (OpenAI, vLLM, Ollama, LM Studio, llama.cpp server) reads them without
a file server. Few-shot examples become earlier user/assistant turns.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import cv2
import numpy as np

__all__ = ["FewShotExample", "ImageLike", "VLMRequest", "approx_tokens", "build_messages",
           "decode_data_url", "encode_image", "image_to_png"]

ImageLike = np.ndarray | bytes
"""An image: ``uint8`` array of shape ``(H, W)`` (gray), ``(H, W, 3)`` (RGB) or ``(H, W, 4)``
(RGBA), or already-encoded PNG/JPEG bytes."""

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


def image_to_png(image: ImageLike) -> tuple[bytes, str]:
    """Encode an image for sending; returns ``(bytes, mime type)``.

    Args:
        image: ``uint8`` array ``(H, W)``, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA; or PNG/JPEG
            bytes, passed through unchanged.

    Raises:
        ValueError: wrong dtype, shape, or bytes that are neither PNG nor JPEG.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if data.startswith(_PNG_MAGIC):
            return data, "image/png"
        if data.startswith(_JPEG_MAGIC):
            return data, "image/jpeg"
        raise ValueError("image bytes are neither PNG nor JPEG; pass a uint8 array instead")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"image must be uint8 (convert and scale to 0-255), got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    elif array.ndim != 2:
        raise ValueError(f"image must have shape (H, W), (H, W, 3) or (H, W, 4); got {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"image is empty: shape {array.shape}")
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:  # pragma: no cover - OpenCV refuses only on exotic inputs
        raise ValueError(f"could not encode image of shape {array.shape} as PNG")
    return buffer.tobytes(), "image/png"


def encode_image(image: ImageLike) -> str:
    """A ``data:image/...;base64,...`` URL for an OpenAI ``image_url`` content part."""
    data, mime = image_to_png(image)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@attrs.define(frozen=True)
class FewShotExample:
    """One worked example: what was shown (text + images) and the right answer.

    Attributes:
        user: The user text of the example (usually the same template as the real question).
        answer: The correct answer (a JSON-serialisable object, sent as the assistant turn).
        images: Images of the example (see :data:`ImageLike`).
    """

    user: str
    answer: Any
    images: Sequence[ImageLike] = attrs.field(default=(), converter=tuple)


@attrs.define(frozen=True)
class VLMRequest:
    """One question to the model, answered with one JSON object.

    Attributes:
        system: System instructions (usually a versioned prompt, see :func:`load_prompt`).
        user: The question text.
        images: Images shown with the question (see :data:`ImageLike`).
        examples: Few-shot examples, sent before the question as user/assistant turns.
        schema: JSON schema of the answer; sent to the server when it supports structured
            output and always checked locally (``jsonschema``) before ``validate``.
        schema_name: Name of the schema for ``response_format`` (letters, digits, ``_-``).
        validate: ``validate(obj) -> value`` for the parsed answer; raises (any exception, best
            ``ValueError``) with a message the model can act on when the answer is wrong. What it
            returns becomes :attr:`VLMAnswer.value`. Not part of the cache key.
        prompt_version: Version id of the prompt (e.g. ``"pose_assign_v1"``); part of the cache
            key so that editing a prompt file and bumping its version invalidates old answers.
        tag: Caller's bookkeeping (e.g. ``(frame, camera, region)``); never sent, not cached.
    """

    system: str
    user: str
    images: Sequence[ImageLike] = attrs.field(default=(), converter=tuple)
    examples: Sequence[FewShotExample] = attrs.field(default=(), converter=tuple)
    schema: dict[str, Any] | None = None
    schema_name: str = "answer"
    validate: Callable[[Any], Any] | None = attrs.field(default=None, eq=False)
    prompt_version: str = ""
    tag: Any = attrs.field(default=None, eq=False)

    def __repr__(self) -> str:  # images can be megabytes: never print them
        return (f"VLMRequest(prompt_version={self.prompt_version!r}, user={self.user[:60]!r}, "
                f"images={len(self.images)}, examples={len(self.examples)}, tag={self.tag!r})")


def _user_content(text: str, images: Sequence[ImageLike],
                  image_detail: str | None) -> str | list[dict[str, Any]]:
    if not images:
        return text  # plain string: accepted by every text-only server
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for image in images:
        image_url = {"url": encode_image(image)}
        if image_detail is not None:
            image_url["detail"] = image_detail
        parts.append({"type": "image_url", "image_url": image_url})
    return parts


def build_messages(request: VLMRequest, image_detail: str | None = None
                   ) -> list[dict[str, Any]]:
    """OpenAI chat messages for ``request``: system, few-shot turns, then the question.

    Args:
        request: The question.
        image_detail: OpenAI's ``detail`` of every image part (``"low"``, ``"high"``,
            ``"auto"``), or ``None`` to leave it out (the server's default).
    """
    messages: list[dict[str, Any]] = [{"role": "system", "content": request.system}]
    for example in request.examples:
        messages.append({"role": "user",
                         "content": _user_content(example.user, example.images, image_detail)})
        answer = example.answer if isinstance(example.answer, str) else json.dumps(
            example.answer, sort_keys=True, separators=(",", ":"))
        messages.append({"role": "assistant", "content": answer})
    messages.append({"role": "user",
                     "content": _user_content(request.user, request.images, image_detail)})
    return messages


def decode_data_url(url: str) -> np.ndarray:
    """Image of a ``data:image/...;base64,...`` URL as ``uint8`` ``(H, W)``/``(H, W, 3)`` RGB.

    Raises:
        ValueError: not a base64 image data URL, or undecodable image bytes.
    """
    if not url.startswith("data:image/") or ";base64," not in url:
        raise ValueError(f"not a base64 image data URL: {url[:40]!r}")
    data = base64.b64decode(url.split(";base64,", 1)[1], validate=True)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("data URL holds bytes OpenCV cannot decode as an image")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def _image_tokens(width: int, height: int) -> int:
    """OpenAI's published high-detail image cost: 85 + 170 per 512-px tile after rescaling the
    image to fit 2048x2048 and then its short side to at most 768 px."""
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    tiles = int(np.ceil(width / 512) * np.ceil(height / 512))
    return 85 + 170 * tiles


def approx_tokens(messages: list[dict[str, Any]]) -> int:
    """Rough prompt token count of chat ``messages``: ~4 characters per text token, 4 tokens of
    overhead per message, and OpenAI's tile formula per image (85 for ``detail: low``). Used for
    cost estimates and when a server reports no ``usage``; real tokenizers differ by tens of
    percent."""
    total = 0
    for message in messages:
        total += 4
        content = message.get("content") or ""
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for part in parts:
            if part.get("type") == "text":
                total += (len(part.get("text", "")) + 3) // 4
            elif part.get("type") == "image_url":
                if part.get("image_url", {}).get("detail") == "low":
                    total += 85
                    continue
                try:
                    height, width = decode_data_url(part["image_url"]["url"]).shape[:2]
                    total += _image_tokens(width, height)
                except (ValueError, KeyError, TypeError):
                    total += 85  # an image URL we cannot size: count the base cost
    return total
