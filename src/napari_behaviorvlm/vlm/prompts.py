"""Versioned prompt files and their answer schemas.

A prompt lives in ``vlm/prompts/<name>_v<N>.txt`` with two sections, ``[system]`` and ``[user]``,
whose ``$placeholders`` (:class:`string.Template` syntax; ``$$`` is a literal dollar) are filled
by :meth:`Prompt.render`. Its answer schema is ``<name>_v<N>.schema.json`` beside it. Editing a
prompt means adding a new version file: the version id is part of every cache key, so answers
to an old prompt are never mistaken for answers to the new one.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any

import attrs

from .messages import FewShotExample, ImageLike, VLMRequest

__all__ = ["Prompt", "available_prompts", "load_prompt"]

_VERSIONED = re.compile(r"^(?P<name>[a-z0-9_]+?)_v(?P<number>\d+)$")
_SECTION = re.compile(r"^\[(system|user)\]\s*$", re.MULTILINE)


def _prompt_dir():
    return resources.files("napari_behaviorvlm.vlm").joinpath("prompts")


def _placeholders(template: str) -> set[str]:
    names = set()
    for match in string.Template.pattern.finditer(template):
        name = match.group("named") or match.group("braced")
        if name:
            names.add(name)
    return names


@attrs.define(frozen=True)
class Prompt:
    """A versioned prompt.

    Attributes:
        name: Prompt name without version (``"pose_assign"``).
        version: Versioned id, the file stem (``"pose_assign_v1"``); goes into cache keys.
        system: System section template.
        user: User section template.
        schema: JSON schema of the answer, or ``None`` when the prompt has none.
    """

    name: str
    version: str
    system: str
    user: str
    schema: dict[str, Any] | None = attrs.field(default=None, eq=False)

    @property
    def placeholders(self) -> set[str]:
        """Names of the ``$placeholders`` of both sections."""
        return _placeholders(self.system) | _placeholders(self.user)

    def render(self, **values: Any) -> tuple[str, str]:
        """``(system, user)`` texts with every placeholder filled (values go through ``str``).

        Raises:
            ValueError: a placeholder without a value, or a value no placeholder uses.
        """
        missing = sorted(self.placeholders - set(values))
        unused = sorted(set(values) - self.placeholders)
        if missing or unused:
            raise ValueError(f"prompt {self.version}: missing values {missing}, unknown values "
                             f"{unused}; it uses {sorted(self.placeholders)}")
        return (string.Template(self.system).substitute(values),
                string.Template(self.user).substitute(values))

    def request(self, values: dict[str, Any], *, images: Sequence[ImageLike] = (),
                examples: Sequence[FewShotExample] = (),
                validate: Callable[[Any], Any] | None = None, tag: Any = None) -> VLMRequest:
        """A :class:`VLMRequest` of this prompt filled with ``values`` (see :meth:`render`).

        Few-shot examples are built by the caller, usually with the user text of
        ``render(**example_values)[1]``.
        """
        system, user = self.render(**values)
        return VLMRequest(system=system, user=user, images=images, examples=examples,
                          schema=self.schema, schema_name=self.name, validate=validate,
                          prompt_version=self.version, tag=tag)


def available_prompts() -> list[str]:
    """Versioned ids of every prompt file shipped with the package, sorted."""
    return sorted(entry.name[:-4] for entry in _prompt_dir().iterdir()
                  if entry.name.endswith(".txt"))


def load_prompt(name: str) -> Prompt:
    """Load a prompt by versioned id (``"pose_assign_v1"``) or by name (latest version).

    Raises:
        FileNotFoundError: no such prompt (the message lists those available).
        ValueError: a malformed prompt file (missing section) or schema file (not JSON).
    """
    available = available_prompts()
    if _VERSIONED.match(name) is None:
        versions = [v for v in available if (m := _VERSIONED.match(v)) and m["name"] == name]
        if versions:
            name = max(versions, key=lambda v: int(_VERSIONED.match(v)["number"]))
    if name not in available:
        raise FileNotFoundError(f"no prompt {name!r}; available prompts: {available}")
    folder = _prompt_dir()
    text = folder.joinpath(f"{name}.txt").read_text(encoding="utf-8")
    parts = _SECTION.split(text)
    sections = {parts[i]: parts[i + 1].strip("\n") for i in range(1, len(parts) - 1, 2)}
    if set(sections) != {"system", "user"}:
        raise ValueError(f"prompt file {name}.txt needs a [system] and a [user] section, "
                         f"found {sorted(sections)}")
    schema = None
    schema_file = folder.joinpath(f"{name}.schema.json")
    if schema_file.is_file():
        try:
            schema = json.loads(schema_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"schema file {name}.schema.json is not valid JSON: {exc}") from None
    match = _VERSIONED.match(name)
    return Prompt(match["name"] if match else name, name, sections["system"], sections["user"],
                  schema)
