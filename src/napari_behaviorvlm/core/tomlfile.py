"""Reading TOML files (calibrations, boards, sessions) with errors that name the file."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["read_toml"]


def read_toml(path: str | os.PathLike, what: str, error: type[Exception] = ValueError,
              missing: type[Exception] | None = None) -> dict[str, Any]:
    """Parse the TOML file ``path``.

    Args:
        what: What the file should be, for messages (e.g. ``"calibration"``).
        error: Raised (with the file name and the parser's reason) when the file is not TOML.
        missing: Raised when the file does not exist (default: ``error``).
    """
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise (missing or error)(f"{what} file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is not a valid TOML {what} file: {exc}") from None
