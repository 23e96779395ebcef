"""Vision-language-model layer shared by the pose and behavior pipelines.

An OpenAI-compatible client with JSON answers validated as untrusted input, retries with
backoff, a concurrency limit, a content-addressed answer cache, call/token accounting and cost
estimates; versioned prompts; and a test double of an OpenAI-compatible server
(:mod:`napari_behaviorvlm.vlm.testing`, imported explicitly, never by the pipelines).
No Qt, no napari.
"""

from napari_behaviorvlm.vlm.cache import AnswerCache, cache_key
from napari_behaviorvlm.vlm.client import (
    CostEstimate,
    MissingAPIKeyError,
    VLMAnswer,
    VLMAnswerError,
    VLMCancelledError,
    VLMClient,
    VLMError,
    VLMRequestError,
    VLMUsage,
    estimate_cost,
    parse_json_answer,
)
from napari_behaviorvlm.vlm.config import VLMConfig
from napari_behaviorvlm.vlm.messages import (
    FewShotExample,
    VLMRequest,
    approx_tokens,
    build_messages,
    encode_image,
)
from napari_behaviorvlm.vlm.prompts import Prompt, available_prompts, load_prompt

__all__ = [
    "AnswerCache", "CostEstimate", "Prompt", "available_prompts", "load_prompt", "FewShotExample", "MissingAPIKeyError", "VLMAnswer",
    "VLMAnswerError", "VLMCancelledError", "VLMClient", "VLMConfig", "VLMError", "VLMRequest",
    "VLMRequestError", "VLMUsage", "approx_tokens", "build_messages", "cache_key",
    "encode_image", "estimate_cost", "parse_json_answer",
]
