"""Reading the package's small JSON and text files with errors that name the file (one home for it).

Every reader of a user-facing file (lens profiles, stacks, chart specs, calibration sessions, export sidecars,
configs) goes through :func:`read_text_file` / :func:`read_json_object`, so an unreadable or malformed file
always gives the same kind of message: ``"<file>: cannot read: <reason>"`` or
``"<file>: not valid JSON (<reason> at line <n>)"``, never a traceback.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from model.errors import FormatError


def read_text_file(path: str | os.PathLike[str], error: type[FormatError] = FormatError) -> str:
    """The UTF-8 text of ``path``; raises ``error`` (a :class:`FormatError`) naming the file if it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise error(path, None, f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise error(path, None, f"cannot read: not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_json_object(path: str | os.PathLike[str], error: type[FormatError] = FormatError) -> dict[str, Any]:
    """The JSON object in ``path``; raises ``error`` naming the file if it is unreadable, not JSON or not an object."""
    text = read_text_file(path, error)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise error(path, None, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(obj, dict):
        raise error(path, None, f"expected a JSON object, got {type(obj).__name__}")
    return obj
